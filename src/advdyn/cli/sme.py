"""``advdyn sme`` and ``advdyn sme-config``: continuous-time approximations of (adversarial)
SGD (paper seed 002)."""

from __future__ import annotations

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
    renamed_option,
)


@app.command("sme")
def sme_command(
    config: ConfigArgument = None,
    out: Annotated[Path, out_option()] = Path("sme-out"),
    replicates: Annotated[int | None, typer.Option(help="Override risks.replicates.")] = None,
    paths: Annotated[int | None, typer.Option(hidden=True, help="Deprecated name of "
                                              "--replicates.")] = None,
    no_digits: Annotated[bool, typer.Option("--no-digits", help="Skip the digits part.")] = False,
    no_minimax: Annotated[
        bool, typer.Option("--no-minimax", help="Skip the mini-max part.")
    ] = False,
    only: Annotated[
        str | None,
        typer.Option(help="Comma-separated parts to run, also parts the config disables "
                     "(default: all enabled)."),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress or table.")] = False,
):
    """SGD vs its stochastic modified equations (orders 1 and 2), exact weak errors, optimal
    learning-rate control, clean vs adversarial gradient flows, the K-step PGD game and
    digits; write sme_*.{nc,png} and sme_summary.json."""
    from advdyn.config.sme import default_sme_config, load_sme_config

    with command_errors(out, value_errors=True):
        replicates = renamed_option("--paths", paths, "--replicates", replicates)
        cfg = load_with_overrides(config, {
            "risks.replicates": replicates, "digits.enabled": False if no_digits else None,
            "minimax.enabled": False if no_minimax else None,
        }, load_sme_config, default_sme_config)
        from advdyn.workflows.sme import run_sme

        parts = None if only is None else [p.strip() for p in only.split(",") if p.strip()]
        progress = announce = None
        if not quiet:
            def announce() -> None:  # after the checks, so that a refusal is the only line
                err_console.print(escape(_header(cfg, parts)), highlight=False)

            done = [0]

            def progress(advance: int, total: int) -> None:
                done[0] += advance
                err_console.print(f"  parts done: {done[0]}/{total}", highlight=False)

        result = run_sme(cfg, out, progress=progress, parts=parts, on_start=announce)
    if not quiet:
        _print_summary(result.summary)
    files = ", ".join(p.name for p in result.files.values())
    out_console.print(escape(f"results written to {out}/: {files}"), highlight=False)


def _print_summary(summary: dict) -> None:
    table = Table(title="advdyn sme")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    w = summary.get("weak_error", {})
    for order in (1, 2):
        if f"slope_order{order}_final" in w:
            s, se = w[f"slope_order{order}_final"]
            table.add_row(f"weak-error slope, order {order}", f"{s:.3f} +- {se:.3f}")
    f = summary.get("flows", {})
    if f:
        table.add_row("R_eps along clean flow", f"{f['adv_risk_start']:.3f} -> "
                      f"{f['adv_risk_end_clean_flow']:.3f}")
        table.add_row("max dR_eps/dt, adversarial flow",
                      f"{f['max_adv_rate_adversarial_flow']:.2e}")
    c = summary.get("control", {})
    if c:
        for pol, v in c["final_loss"].items():
            table.add_row(f"final loss, {pol}", f"{v:.4g}")
    for part, secs in summary.get("seconds", {}).items():
        table.add_row(f"time {part}", f"{secs:.1f} s")
    out_console.print(table)


@app.command("sme-config")
def sme_config_command():
    """Print the embedded default config of ``advdyn sme``."""
    print_default("sme.toml")


def _header(cfg, parts: list[str] | None) -> str:
    """The first line of ``advdyn sme``: the parts, and the problem only for the parts that
    use it (risks, minimax; the digits part has its own data)."""
    def runs(part: str) -> bool:
        return parts is None or part in parts

    line = f"advdyn sme: parts = {', '.join(parts) if parts else 'all enabled'}"
    if runs("risks") or runs("minimax"):
        line += f"; d = {len(cfg.problem.eigenvalues)}, eps = {cfg.problem.eps}"
    if runs("risks"):
        line += f"; risks: eta = {cfg.risks.eta}, {cfg.risks.replicates} replicates"
    return line
