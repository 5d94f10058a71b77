"""``advdyn posterior`` and ``advdyn posterior-config``: SGD's posterior covariance, the
PAC-Bayes bound on the robust risk, robust overfitting and AWP (paper seed 003)."""

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
)


@app.command("posterior")
def posterior_command(
    config: ConfigArgument = None,
    out: Annotated[Path, out_option()] = Path("posterior-out"),
    epochs: Annotated[int | None, typer.Option(help="Override robust.epochs.")] = None,
    no_robust: Annotated[
        bool, typer.Option("--no-robust", help="Skip adversarial training (AT, AWP).")
    ] = False,
    no_figures: Annotated[bool, typer.Option("--no-figures", help="Write no figures.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress or summary.")] = False,
):
    """Posterior covariance (d = 4 and high-dimensional ODE vs SGD), a tr(H Sigma) sweep and
    adversarial training with and without AWP with per-epoch PAC-Bayes terms; write
    posterior_*.nc, posterior.json and figures."""
    from advdyn.config.posterior import default_posterior_config, load_posterior_config

    with command_errors(out, value_errors=True):
        cfg = load_with_overrides(config, {
            "robust.epochs": epochs, "robust.enabled": False if no_robust else None,
        }, load_posterior_config, default_posterior_config)
        from advdyn.workflows.posterior import run_posterior

        def announce() -> None:  # after the checks, so that a refusal is the only line
            err_console.print(escape(
                f"advdyn posterior: d = 4 chains ({cfg.small.chains}), ODE d = {cfg.highdim.d} "
                f"vs {cfg.highdim.replicates} SGD replicates"
                + (f", AT/AWP on {cfg.robust.data} ({cfg.robust.epochs} epochs)"
                   if cfg.robust.enabled else "")), highlight=False)

        result = run_posterior(cfg, out, progress=not quiet, figures=not no_figures,
                               on_start=None if quiet else announce)
    if not quiet:
        s = result.summary
        out_console.print(escape(
            f"d = 4: Lyapunov (additive) vs chains, relative error "
            f"{s['small']['lyapunov_relative_error_at_eta']:.3f}; high-dim ODE vs SGD groups: "
            f"max relative gap {s['highdim']['max_relative_gap_ode_vs_sgd_groups']:.3f}"),
            highlight=False)
        for run, r in s.get("robust", {}).items():
            out_console.print(escape(
                f"{run}: robust test loss {r['final_test_loss']:.3f} (best "
                f"{r['min_test_loss']:.3f} at epoch {r['best_epoch']}), gap "
                f"{r['final_gap']:.3f}; PAC-Bayes bound {r['final_bound']:.3f} on the loss / L "
                f"(L = the loss cap, docs/posterior.md)"
                + (" (vacuous)" if r["bound_vacuous"] else "")), highlight=False)
    files = ", ".join(p.name for p in result.files.values())
    out_console.print(escape(f"results written to {out}/: {files}"), highlight=False)


@app.command("posterior-config")
def posterior_config_command():
    """Print the embedded posterior default config."""
    print_default("posterior.toml")
