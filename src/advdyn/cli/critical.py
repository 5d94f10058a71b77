"""``advdyn critical-eps``, ``advdyn critical-eps-config``, ``advdyn critical-linear`` and
``advdyn critical-exact``: the critical attack strength eps* (paper seed 004)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from advdyn.cli._app import (
    ConfigArgument,
    app,
    command_errors,
    err_console,
    load_with_overrides,
    out_console,
    out_option,
    print_default,
)


@app.command("critical-eps")
def critical_eps_command(
    config: ConfigArgument = None,
    out: Annotated[Path, out_option()] = Path("critical-eps-out"),
    width: Annotated[int | None, typer.Option(help="Override model.width.")] = None,
    n_train: Annotated[int | None, typer.Option(help="Override data.n_train.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Override train.epochs.")] = None,
    eps: Annotated[
        str | None,
        typer.Option("--eps", help="Radius to judge against eps* (data units, or e.g. 8/255)."),
    ] = None,
    repeats: Annotated[
        int | None, typer.Option(help="Override verdict.repeats (data splits x seeds).")
    ] = None,
    loss: Annotated[
        str | None, typer.Option(help="Override train.loss: ce, trades or mart.")
    ] = None,
    optimizer: Annotated[
        str | None, typer.Option(help="Override train.optimizer: sgd or adam.")
    ] = None,
    fast_attack: Annotated[
        str | None, typer.Option(help="Override fast.attack: pgd or fgm (FGM fine-tuning).")
    ] = None,
    no_strong: Annotated[
        bool, typer.Option("--no-strong", help="Skip the strong (APGD ensemble) evaluation.")
    ] = False,
    no_fgm: Annotated[
        bool, typer.Option("--no-fgm", help="Skip the FGM catastrophic-overfitting study.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or table.")] = False,
):
    """Estimate eps* from scratch (grid + interpolation) and by fine-tuning + extrapolation
    (Algorithm A.1) under PGD and a strong evaluation (worst case over PGD, APGD-CE,
    APGD-T), with a prediction interval over data splits and seeds; with --eps, say whether
    that radius is below, near or beyond eps*. Writes critical_eps.{csv,nc,json,png}."""
    from advdyn.config.critical import default_critical_config, load_critical_config

    with command_errors(out, value_errors=True):
        cfg = load_with_overrides(config, {
            "model.width": width, "data.n_train": n_train, "train.epochs": epochs,
            "fgm.enabled": False if no_fgm else None,
            "strong.enabled": False if no_strong else None,
            "verdict.eps": eps, "verdict.repeats": repeats, "train.loss": loss,
            "train.optimizer": optimizer, "fast.attack": fast_attack,
        }, load_critical_config, default_critical_config)
        from advdyn.workflows.critical import build_data, run_critical

        build_data(cfg)  # data errors (sizes) are user errors: surface them before training
        def announce() -> None:  # after the checks, so that a refusal is the only line
            err_console.print(escape(_header(cfg)), highlight=False)

        result = run_critical(cfg, out, progress=not quiet,
                              on_start=None if quiet else announce)
    if not quiet:
        _print_summary(result)
    for w in result.warnings:
        err_console.print(escape(f"warning: {w}"), style="yellow", highlight=False)
    if result.verdict is not None:
        out_console.print(escape(result.verdict.sentence()), highlight=False)
    files = ", ".join(p.name for p in result.files.values())
    out_console.print(escape(f"results written to {out}/: {files}"), highlight=False)


def _header(cfg) -> str:
    """The first line of ``critical-eps``: the recipe being run (loss, optimizer, attacks)."""
    loss = "cross-entropy" if cfg.train.loss == "ce" else cfg.train.loss.upper()
    return (f"advdyn critical-eps: {cfg.data.kind}, {cfg.model.kind} width {cfg.model.width},"
            f" {cfg.attack.norm} attacks, {loss} training with {cfg.train.optimizer}; from "
            f"scratch: PGD, eps {cfg.scratch.eps}; fine-tuning: {cfg.fast.attack.upper()}, "
            f"eps {cfg.fast.eps}")


@app.command("critical-eps-config")
def critical_eps_config_command():
    """Print the embedded critical-eps default config (MLP on the 8x8 digits)."""
    print_default("critical_eps.toml")


@app.command("critical-linear")
def critical_linear_command(
    out: Annotated[Path, out_option()] = Path("critical-linear-out"),
    seed: Annotated[int, typer.Option(help="Seed of teachers and data.")] = 0,
    streaming: Annotated[
        bool, typer.Option(help="Also the exact streaming eps*(n/d) (ODE vs SGD, ~1-2 min).")
    ] = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No table.")] = False,
):
    """Linear-regression theory (paper section 4): figures 2 and 3 analogues, the sqrt(d/n)
    scaling of the Theorem-1 crossing and of the surrogate eps*."""
    from advdyn import checks

    with command_errors():
        checks.integer(seed, "--seed", 0)  # (before the studies' imports and the folder)
    import numpy as np

    from advdyn.critical import linear
    from advdyn.io import folder_lock, write_json, write_netcdf
    from advdyn.plot.critical import plot_linear_fig2, plot_linear_fig3, plot_scaling
    from advdyn.plot.risk import save_figure

    with command_errors(out):
        with folder_lock(out, "advdyn critical-linear"):
            traj, pv, pairs, study = _linear_studies(seed)  # float64 entry points
            ratio = study["d"].values / study["n"].values
            summary = {
                "pairs": [list(map(int, p)) for p in pairs],
                "eps_cross": study["eps_cross"].values.tolist(),
                "eps_surrogate": study["eps_surrogate"].values.tolist(),
                "slope_cross": linear.loglog_slope(ratio, study["eps_cross"].values),
                "slope_surrogate": linear.loglog_slope(ratio, study["eps_surrogate"].values),
                "p_theta": {str(p.attrs["d"]): p["p_theta"].values.tolist() for p in pv},
                "p_loss": {str(p.attrs["d"]): p["p_loss"].values.tolist() for p in pv},
                "log_ratio_pvalues": np.linspace(-3, 2, 11).tolist(),
            }
            if streaming:
                from advdyn.critical import exact
                from advdyn.simulate.sgd import time_grid

                d_s, grid_eps = 100, np.geomspace(1e-3, 1.0, 16)
                times = time_grid(d_s, 32.0, 11).times
                ode = exact.ode_critical_radius(d_s, times, grid_eps, seed=seed)
                sgd = exact.sgd_critical_radius(d_s, 32.0, 11, grid_eps, replicates=8, seed=seed)
                m = sgd["eps_star_margin"].values
                # at t = 0 (no sample yet) every replicate's eps* is inf: the sd there is
                # undefined (nan), said here instead of numpy's "invalid value" warning
                finite = np.isfinite(m).all(axis=0)
                sd = np.full(m.shape[1], np.nan)
                sd[finite] = m[:, finite].std(axis=0, ddof=1)
                summary["streaming"] = {
                    "d": d_s, "lr": "gamma_t = 1/(1 + t)", "t": times.tolist(),
                    "eps_star_paper_ode": ode["eps_star"].values.tolist(),
                    "eps_star_paper_sgd_max": sgd["eps_star"].values.max(axis=0).tolist(),
                    "eps_star_gap_matched_ode": ode["eps_star_margin"].values.tolist(),
                    "eps_star_gap_matched_sgd_mean": m.mean(axis=0).tolist(),
                    "eps_star_gap_matched_sgd_sd": sd.tolist(),
                    "slope_ode_t_ge_4": exact.scaling_slope(times, ode["eps_star_margin"].values,
                                                            4.0),
                }
            # every study is computed before a file is written (an interrupted run leaves
            # the previous files as they were)
            files = [
                save_figure(plot_linear_fig2(traj, pv), out / "linear_fig2.png"),
                save_figure(plot_linear_fig3(pv), out / "linear_fig3.png"),
                save_figure(plot_scaling(study), out / "linear_scaling.png"),
                write_netcdf(study, out / "linear_scaling.nc"),
            ]
            if streaming:
                files.append(write_netcdf(ode, out / "linear_streaming_ode.nc"))
            files.append(write_json(summary, out / "linear.json"))
    if not quiet:
        table = Table(title="linear regression, l2 attack: crossings")
        for c in ("d", "n", "sqrt(d/n)", "eps: std diff = 1", "surrogate eps*"):
            table.add_column(c, justify="right")
        for (d, n), c, s in zip(pairs, summary["eps_cross"], summary["eps_surrogate"],
                                strict=True):
            table.add_row(str(d), str(n), f"{math.sqrt(d / n):.4g}", f"{c:.4g}", f"{s:.4g}")
        out_console.print(table)
        out_console.print(f"log-log slope vs d/n: crossing {summary['slope_cross']:.3f}, "
                          f"surrogate {summary['slope_surrogate']:.3f}")
        st = summary.get("streaming")
        if st is not None:
            # the paper's eps* is 0 at every n/d in streaming (advdyn.critical.exact): a
            # column of zeros says nothing, one line says it; a nonzero value keeps the column
            paper = [st["eps_star_paper_ode"][i] for i in range(1, len(st["t"]))]
            t2 = Table(title=f"streaming least squares (d = {st['d']}, {st['lr']}): eps*(n/d)")
            columns = ["n/d", "gap-matched eps* ODE", "SGD mean +- sd"]
            if any(p != 0 for p in paper):
                columns.insert(1, "paper's eps* (ODE)")
            for c in columns:
                t2.add_column(c, justify="right")
            for i in range(1, len(st["t"])):
                row = [f"{st['t'][i]:.3g}", f"{st['eps_star_gap_matched_ode'][i]:.4g}",
                       f"{st['eps_star_gap_matched_sgd_mean'][i]:.4g} +- "
                       f"{st['eps_star_gap_matched_sgd_sd'][i]:.2g}"]
                if len(columns) == 4:
                    row.insert(1, f"{paper[i - 1]:.3g}")
                t2.add_row(*row)
            out_console.print(t2)
            if len(columns) == 3:
                out_console.print("paper's eps* (adversarial training loss <= clean test "
                                  "loss): 0 at every n/d in streaming (docs/critical_eps.md)")
            out_console.print(f"gap-matched streaming eps* ~ (n/d)^{st['slope_ode_t_ge_4']:.3f}")
    out_console.print(escape(f"results written to {out}/: "
                             + ", ".join(p.name for p in files)), highlight=False)


@app.command("critical-exact")
def critical_exact_command(
    config: Annotated[
        Path | None, typer.Argument(help="Run TOML (synthetic or \\[problem.data]), with an "
                                    "optional \\[critical] table; advdyn run's embedded "
                                    "default when omitted.")
    ] = None,
    out: Annotated[Path, out_option()] = Path("critical-exact-out"),
    eps: Annotated[
        str | None, typer.Option("--eps", help="Radii to solve, comma-separated (override "
                                 "critical.eps; default: 12 multiples of the problem's "
                                 "radius from 0.05 to 2).")
    ] = None,
    t_max: Annotated[float | None, typer.Option(help="Override run.t_max (largest n/d).")] = None,
    n_times: Annotated[int | None, typer.Option(help="Override run.n_times.")] = None,
    margin: Annotated[
        float | None, typer.Option(help="Override critical.margin (gap-matched eps*).")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No status line or table.")] = False,
):
    """eps*(n/d) of a run config's problem (synthetic, or your data's surrogate) from the
    exact ODE: the radius up to which the adversarially trained iterate's adversarial risk
    stays below the clean iterate's clean risk, at every recorded n/d. Writes
    critical_exact.{nc,json,png}."""
    from advdyn.config.critical_exact import (
        default_critical_exact_config,
        load_critical_exact_config,
        solved_radii,
    )
    from advdyn.errors import ConfigError
    from advdyn.workflows.critical_exact import write_critical_exact

    with command_errors(out):
        cfg = load_with_overrides(config, {
            "run.t_max": t_max, "run.n_times": n_times, "critical.margin": margin,
        }, load_critical_exact_config, default_critical_exact_config)
        if eps is not None:  # --eps replaces the file's radii, given either way
            radii = _radii(eps)
            try:  # refused naming the option, not the config field it overrides
                solved_radii(radii)
            except ValueError as err:
                raise ConfigError("--eps", str(err)) from None
            cfg = cfg.with_overrides(**{"critical.eps": radii,
                                        "critical.eps_over_radius": None})

        def announce(plan) -> None:  # after the checks, so that a refusal is the only line
            if quiet:
                return
            r = f"{plan.radius:.4g}" if plan.radius == plan.radius else "undefined"
            err_console.print(escape(
                f"advdyn critical-exact: d = {round(float(plan.instance.d))}, loss = "
                f"{cfg.problem.loss}, {plan.spectrum}; "
                f"{len(plan.eps)} radii from {plan.eps[0]:.4g} to {plan.eps[-1]:.4g} "
                f"({plan.radius_source} radius {r}); n/d up to {plan.times[-1]:.4g} "
                f"({len(plan.times)} records)"), highlight=False, soft_wrap=True)

        result = write_critical_exact(cfg, out, on_start=announce)
    if not quiet:
        s = result.summary
        table = Table(title="eps*(n/d) from the exact ODE")
        for c in ("n/d", "eps*", f"gap-matched eps* (m = {s['margin']:g})"):
            table.add_column(c, justify="right")
        for i in _shown_records(len(s["t"])):
            table.add_row(f"{s['t'][i]:.4g}", _star(s["eps_star"][i], s["eps"]),
                          _star(s["eps_star_margin"][i], s["eps"]))
        out_console.print(table)
    for w in result.summary["warnings"]:
        err_console.print(escape(f"warning: {w}"), style="yellow", highlight=False)
    files = ", ".join(p.name for p in result.files.values())
    out_console.print(escape(f"results written to {out}/: {files}"), highlight=False)


def _shown_records(n: int, rows: int = 10) -> list[int]:
    """Indices of at most ``rows`` records out of ``n`` for the table: spread evenly from the
    first after ``t = 0`` to the last (``t_max`` is always shown)."""
    last = n - 1
    k = min(rows, last)
    if k <= 0:
        return []
    return sorted({1 + round(j * (last - 1) / max(k - 1, 1)) for j in range(k)})


def _radii(text: str) -> list[float]:
    """``--eps "0.1,0.5"`` as floats (ConfigError naming --eps otherwise)."""
    from advdyn.errors import ConfigError

    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError("--eps", f"must be comma-separated numbers, got {text!r}") from None


def _star(value, eps: list[float]) -> str:
    """An eps* of ``critical_exact.json`` for the table (``"inf"``: beyond the largest
    radius solved; ``None``: undefined)."""
    if value is None:
        return "undefined"
    return f"> {eps[-1]:.4g}" if value == "inf" else f"{value:.4g}"


def _linear_studies(seed: int):
    import numpy as np

    from advdyn.critical import linear

    log_ratio = np.linspace(-3, 1.5, 10)
    traj = [linear.trajectory_study(20, 1000, log_ratio, steps=100, seed=seed),
            linear.trajectory_study(200, 50, log_ratio, steps=1000, seed=seed),
            linear.trajectory_study(400, 100, log_ratio, steps=1000, seed=seed)]
    pv = [linear.pvalue_study(d, 100, np.linspace(-3, 2, 11), seed=seed) for d in (2, 5, 10)]
    pairs = [(4, 1000), (8, 500), (16, 400), (32, 320), (64, 640)]
    study = linear.critical_study(pairs, reps=10, steps=800, seed=seed)
    return traj, pv, pairs, study


def _fmt(x) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, str):
        return x
    return f"{x:.4g}"


def _print_summary(result) -> None:
    s = result.summary
    table = Table(title=f"adversarial training from scratch ({s['data']}, {s['model']})")
    for c in ("eps", "adv train loss", "adv train acc", "adv test loss", "adv test acc",
              "epoch", "time s"):
        table.add_column(c, justify="right")
    t = result.scratch.table
    for i, e in enumerate(t["eps"].values):
        table.add_row(f"{e:.4g}", f"{t['adv_train_loss'].values[i]:.4f}",
                      f"{t['adv_train_acc'].values[i]:.3f}", f"{t['adv_test_loss'].values[i]:.4f}",
                      f"{t['adv_test_acc'].values[i]:.3f}", str(int(t['best_epoch'].values[i])),
                      f"{t['time'].values[i]:.1f}")
    out_console.print(table)
    c = s["compute"]
    e = s["eps_star"]
    strong = s["strong_evaluation"]
    if strong is not None:
        out_console.print(
            f"eps* under PGD / under the strong evaluation ({', '.join(strong['attacks'])}): "
            f"from scratch {_fmt(s['eps_star_scratch'])} / {_fmt(strong['eps_star_scratch'])},"
            f" fine-tune {_fmt(s['eps_star_fast'])} / {_fmt(strong['eps_star_fast'])}",
            highlight=False)
    px = e["pixel_units"] or {}
    # what the JSON says the band is: a prediction interval only over >= 2 estimates
    band = (f"{e['level']:.0%} prediction interval" if e["method"].startswith("Student-t")
            else e["method"])
    out_console.print(
        f"eps* over {len(s['repeats'])} splits/seeds ({e['evaluation']} evaluation): "
        f"{_fmt(e['mean'])} {px.get('mean') or ''}, {band} "
        f"[{_fmt(e['lower'])}, {_fmt(e['upper'])}] {px.get('lower') or ''} "
        f"{px.get('upper') or ''}", highlight=False)
    out_console.print(
        f"clean test loss {s['clean_test_loss']:.4f}; eps* from scratch "
        f"{_fmt(s['eps_star_scratch'])}, fine-tune + {s['fast_method']} extrapolation "
        f"{_fmt(s['eps_star_fast'])} (isotonic {_fmt(s['eps_star_fast_isotonic'])}); "
        f"compute fast/scratch {c['fast_over_scratch_grad_evals']:.3f} "
        f"({c['fast_grad_evals']:,} vs {c['scratch_grad_evals']:,} gradient evaluations)",
        highlight=False,
    )
    if s["fgm"] is not None:
        out_console.print(f"FGM catastrophic overfitting (PGD test acc < "
                          f"{s['fgm']['threshold']}): eps = {_fmt(s['fgm']['eps_unstable'])}",
                          highlight=False)
