"""``advdyn limit`` and ``advdyn monotone``: the long-time theory of a config (THEORY 7)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from advdyn.cli._app import (
    EXIT_USER_ERROR,
    ConfigArgument,
    app,
    command_errors,
    err_console,
    fail,
    load_with_overrides,
    out_console,
    out_option,
    titled_table,
)


def _constant_gamma(cfg, gamma: float | None) -> float:
    from advdyn.errors import ConfigError
    from advdyn.workflows.limits import constant_rate

    if gamma is not None:
        if not (gamma > 0 and math.isfinite(gamma)):
            raise ConfigError("--gamma", f"must be a positive finite number, got {gamma}")
        return gamma
    return constant_rate(cfg, hint="; pass --gamma")


def _parse_rates(text: str) -> list[float]:
    from advdyn.errors import ConfigError

    try:
        rates = [float(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise ConfigError(
            "--lr", f"expected a comma-separated list of numbers, got {text!r}"
        ) from None
    if not rates or any(not (g > 0 and math.isfinite(g)) for g in rates):
        raise ConfigError("--lr", f"every rate must be a positive number, got {text!r}")
    return rates


@app.command("limit")
def limit_command(
    config: ConfigArgument = None,
    gamma: Annotated[
        float | None, typer.Option(help="Constant learning rate (default: the config's lr).")
    ] = None,
    out: Annotated[Path, out_option()] = Path("advdyn-out"),
    d: Annotated[int | None, typer.Option("--d", help="Override the dimension.")] = None,
    epsilon: Annotated[float | None, typer.Option(help="Override the attack radius.")] = None,
    no_ode_check: Annotated[
        bool, typer.Option("--no-ode-check", help="Skip the long ODE run that checks convergence.")
    ] = False,
):
    """Adversarial optimum and constant-rate limit; writes limit.json (bins with run.bins)."""
    from advdyn.io import folder_lock, write_json
    from advdyn.workflows.limits import limit_from_config

    with command_errors(out):
        cfg = load_with_overrides(config, {"problem.d": d, "problem.epsilon": epsilon})
        g = _constant_gamma(cfg, gamma)
        from advdyn.workflows.progress import progress_phase

        with folder_lock(out, "advdyn limit"), \
                progress_phase("limit (fixed point and ODE check)"):
            report = limit_from_config(cfg, g, check_with_ode=not no_ode_check)
            path = write_json(report, out / "limit.json")

    table = titled_table(
        f"constant rate gamma = {g:g}, eps = {report['epsilon']:g}, d = {report['d']}"
    )
    table.add_column("quantity")
    table.add_column("value", justify="right")
    for key in ("adv_risk_opt", "adv_risk_limit", "clean_risk_limit", "norm_opt", "norm_limit",
                "dist_to_opt_limit", "lambda_opt", "lambda_eff", "converges"):
        value = report.get(key)
        text = "-" if value is None else (str(value) if isinstance(value, bool) else f"{value:.6g}")
        table.add_row(key, text)
    out_console.print(table)
    if report.get("ode_diverged"):
        err_console.print(escape(f"the ODE check diverged: {report['ode_diverged']}"))
    out_console.print(escape(f"written {path}"), highlight=False)


@app.command("monotone")
def monotone_command(
    config: ConfigArgument = None,
    lr: Annotated[
        str, typer.Option("--lr", help="Comma-separated constant learning rates to scan.")
    ] = "0.1,0.3,1.0",
    random_inits: Annotated[
        int, typer.Option(help="Number of Gaussian initialisations (besides structured ones).")
    ] = 3,
    t_max: Annotated[float, typer.Option(help="ODE horizon.")] = 20.0,
    n_times: Annotated[int, typer.Option(help="Records along each ODE run.")] = 401,
    out: Annotated[Path, out_option()] = Path("advdyn-out"),
    d: Annotated[int | None, typer.Option("--d", help="Override the dimension.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
):
    """Scan constant rates and initialisations for monotone descent of risk and distance."""
    from advdyn.errors import ConfigError
    from advdyn.io import folder_lock, write_netcdf
    from advdyn.plot.risk import plot_monotone_scan, save_figure
    from advdyn.workflows.limits import monotone_from_config

    with command_errors(out):
        rates = _parse_rates(lr)
        if random_inits < 0:
            raise ConfigError("--random-inits", f"must be >= 0, got {random_inits}")
        if not t_max > 0:
            raise ConfigError("--t-max", f"must be > 0, got {t_max}")
        if n_times < 3:
            raise ConfigError("--n-times", f"must be >= 3, got {n_times}")
        cfg = load_with_overrides(config, {"problem.d": d})
        with folder_lock(out, "advdyn monotone"):
            ds = monotone_from_config(cfg, rates, random_inits=random_inits, t_max=t_max,
                                      n_times=n_times, progress=not quiet)
            nc = write_netcdf(ds, out / "monotone.nc")
            png = save_figure(plot_monotone_scan(ds), out / "monotone.png")

    table = titled_table(f"monotone descent along the ODE ({ds.sizes['init']} initialisations)")
    for col in ("lr", "risk monotone", "distance monotone", "both", "diverged"):
        table.add_column(col, justify="right")
    n = ds.sizes["init"]
    for g in ds.lr.values:
        row = ds.sel(lr=g)
        both = int((row.monotone_risk & row.monotone_dist).sum())
        table.add_row(
            f"{g:g}", f"{int(row.monotone_risk.sum())}/{n}", f"{int(row.monotone_dist.sum())}/{n}",
            f"{both}/{n}", f"{int(row.diverged.sum())}/{n}",
        )
    out_console.print(table)
    every = bool((ds.monotone_risk & ds.monotone_dist).all("init").any())
    out_console.print(
        "some constant rate gives monotone descent from every initialisation tried"
        if every else
        "no constant rate gives monotone descent to the minimiser from every initialisation tried"
    )
    out_console.print(escape(f"written {nc}, {png}"), highlight=False)


@app.command("figure")
def figure_command(
    name: Annotated[
        str, typer.Argument(help="agreement (a), monotone (b), adaptive (c) or limit (d).")
    ],
    out: Annotated[
        Path, out_option("Folder for the image and its numbers.")
    ] = Path("advdyn-figures"),
):
    """Build one of the figures of docs/figures.md; writes fig_NAME.png and fig_NAME.json."""
    from advdyn.io import folder_lock, write_json
    from advdyn.plot.risk import save_figure
    from advdyn.workflows.figures import ALIASES, FIGURES

    key = ALIASES.get(name, name)
    if key not in FIGURES:
        choices = ", ".join(f"{k} ({a})" for a, k in ALIASES.items())
        raise fail(f"NAME: unknown figure {name!r}; choose one of {choices}", EXIT_USER_ERROR)
    from advdyn.workflows.progress import progress_callback

    with command_errors(out):
        with folder_lock(out, "advdyn figure"):
            err_console.print(f"building figure {key} (this runs the computations behind it)...")
            with progress_callback(f"figure {key}") as report:
                fig, info = FIGURES[key](progress=report)
            png = save_figure(fig, out / f"fig_{key}.png")
            js = write_json(info, out / f"fig_{key}.json")
    out_console.print(escape(f"written {png}, {js}"), highlight=False)
