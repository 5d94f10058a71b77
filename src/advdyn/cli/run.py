"""``advdyn run`` and ``advdyn default-config``: the main job on a config file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from advdyn.cli._app import (
    ConfigArgument,
    app,
    command_errors,
    err_console,
    load_with_overrides,
    out_console,
    out_option,
    print_default,
    titled_table,
)


@app.command("run")
def run_command(
    config: ConfigArgument = None,
    method: Annotated[
        list[str] | None,
        typer.Option("--method", "-m", help="ode, sgd and/or hsgd (repeat or comma-separate)."),
    ] = None,
    out: Annotated[Path, out_option()] = Path("advdyn-out"),
    replicates: Annotated[int | None, typer.Option(help="SGD/HSGD replicates.")] = None,
    d: Annotated[int | None, typer.Option("--d", help="Override the dimension.")] = None,
    t_max: Annotated[float | None, typer.Option(help="Override the time horizon.")] = None,
    seed: Annotated[int | None, typer.Option(help="Override the seed.")] = None,
    dtype: Annotated[
        str | None, typer.Option(help="SGD/HSGD precision: float32 or float64.")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or table.")] = False,
):
    """Run the ODE, SGD and/or homogenized SGD; write NetCDF results, summary.json, risk.png."""

    with command_errors(out):
        cfg = load_with_overrides(config, {
            "run.methods": _split_methods(method),
            "run.replicates": replicates,
            "problem.d": d,
            "run.t_max": t_max,
            "problem.seed": seed,
            "run.dtype": dtype,
        })
        from advdyn.workflows.run import run

        def announce() -> None:  # after the checks, so that a refusal is the only line
            err_console.print(
                escape(
                    f"advdyn run: d = {cfg.problem.d}, loss = {cfg.problem.loss}, "
                    f"eps = {cfg.problem.epsilon}, methods = {', '.join(cfg.run.methods)}"
                ),
                highlight=False,
            )
            _compile_status()

        result = run(cfg, out, progress=not quiet, on_start=None if quiet else announce)

    if not quiet:
        _print_summary(result.summary)
    files = ", ".join(p.name for p in result.files.values())
    out_console.print(escape(f"results written to {out}/: {files}"), highlight=False)


@app.command("default-config")
def default_config_command():
    """Print the embedded default config (a starting point for your own TOML file)."""
    print_default("default.toml")


def _compile_status() -> None:
    """One status line when this run compiles from scratch (empty or no compilation cache)."""
    from advdyn.workflows.cache import active_cache_dir, is_cold

    folder = active_cache_dir()  # (None where the cache is off or its folder unusable)
    if folder is not None and folder.is_dir() and not is_cold(folder):
        return
    where = f"; later runs reuse the cache in {folder}" if folder is not None else ""
    err_console.print(escape(f"compiling the solvers (first run, a few seconds){where}"),
                      highlight=False, soft_wrap=True)


def _split_methods(method: list[str] | None) -> list[str] | None:
    if not method:
        return None
    return [m.strip() for item in method for m in item.split(",") if m.strip()]


def _print_summary(summary: dict) -> None:
    final = summary["final"]
    methods = list(final)
    averaged = [m.upper() for m in methods if m != "ode"]
    title = "final values" + (f" ({', '.join(averaged)}: mean over replicates)" if averaged
                              else "")
    table = titled_table(title)
    table.add_column("quantity")
    for m in methods:
        table.add_column(m, justify="right")
    gaps = summary.get("gap_vs_ode", {})
    for m in gaps:
        table.add_column(f"max rel. gap {m} vs ode", justify="right")
    for name in final[methods[0]]:
        row = [name] + [f"{final[m].get(name, float('nan')):.5g}" for m in methods]
        row += [f"{gaps[m][name]['max_relative_gap']:.2%}" if name in gaps[m] else "" for m in gaps]
        table.add_row(*row)
    out_console.print(table)
    if "data" in summary:
        for line in data_report(summary["data"]):
            out_console.print(escape(line), highlight=False, soft_wrap=True)
    times = ", ".join(f"{m} {t:.2f} s" for m, t in summary["wall_time_s"].items())
    out_console.print(f"wall time: {times}")


def data_report(data: dict) -> list[str]:
    """Lines that tell a user how far the data are from the surrogate, next to the gaps."""
    from advdyn.workflows.run import SPECTRUM_REL_CHANGE_WARN

    se = data["kurtosis_standard_error"]
    quadrature = ""  # a binned spectrum's error in the Lanczos steps (None: not converged)
    if data.get("spectrum_rel_change") is not None:
        quadrature = (f"; quadrature error in the Lanczos steps about "
                      f"{data['spectrum_rel_change']:.2g} (warns above "
                      f"{SPECTRUM_REL_CHANGE_WARN:g})")
    elif "spectrum_rel_change" in data:
        quadrature = "; quadrature not converged in the Lanczos steps"
    lines = [
        f"data: n = {data['n']}, d = {data['d']} (effective dimension "
        f"{data['effective_dimension']:.4g}), {data['task']}; {data['spectrum']}; "
        f"data-scaled radius {data['radius']:.4g}{quadrature}",
        f"  excess kurtosis of projections (0 for Gaussian data, +/- {se:.2g}): teacher "
        f"{data['kurtosis_teacher']:.3g}, largest over the top eigendirections "
        f"{max(map(abs, data['kurtosis_top']), default=0.0):.3g}",
    ]
    if "class_covariance_mismatch" in data:
        got = ", ".join(f"{v:.3g}" for v in data["class_covariance_mismatch"])
        gauss = ", ".join(f"{v:.3g}" for v in data["class_covariance_mismatch_gaussian"])
        lines.append(f"  class covariance mismatch |Cov_c - Sigma|_F/|Sigma|_F: {got} "
                     f"(sampling alone: {gauss})")
    if "residual_kurtosis" in data:
        lines.append(f"  excess kurtosis of the least-squares residual: "
                     f"{data['residual_kurtosis']:.3g}")
    for m, gaps in data.get("gap_over_time", {}).items():
        if "adv_risk" in gaps:
            g = gaps["adv_risk"]
            lines.append(f"  {m} vs ODE: largest relative gap of adv_risk "
                         f"{g['max_abs_relative_gap']:.3g} (fluctuation scale d^-1/2 = "
                         f"{g['fluctuation_scale']:.3g}, effective dimension^-1/2 = "
                         f"{data['effective_fluctuation_scale']:.3g})")
    return lines


