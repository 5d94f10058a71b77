"""``advdyn phase`` and ``advdyn phase-config``: the ODE over a grid of one or two config
fields, as one batched solve."""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from advdyn.cli._app import (
    app,
    command_errors,
    err_console,
    load_with_overrides,
    out_console,
    out_option,
)


@app.command("phase")
def phase_command(
    config: Annotated[
        Path | None, typer.Argument(help="Phase TOML (run config + \\[phase]); the embedded "
                                    "default when omitted.")
    ] = None,
    out: Annotated[Path, out_option()] = Path("phase-out"),
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress or table.")] = False,
):
    """Phase diagram of the ODE over one or two config fields (e.g. problem.epsilon x
    lr.gamma), solved as one batched, compiled solve; write phase.nc, phase.png and
    phase.json. Diverging points are marked cells, not failures."""
    from advdyn.config.phase import default_phase_config, load_phase_config
    from advdyn.workflows.phase import write_phase

    with command_errors(out):
        cfg = load_with_overrides(config, {}, load_phase_config, default_phase_config)
        ph = cfg.phase
        axes = [ph.x] + ([ph.y] if ph.y is not None else [])
        progress = announce = None
        if not quiet:
            grid = " x ".join(f"{a.field} ({len(a.grid())})" for a in axes)

            def announce() -> None:  # after the checks, so that a refusal is the only line
                err_console.print(escape(f"advdyn phase: {grid}"), highlight=False)

            def progress(advance: int, total: int, done=[0]) -> None:  # noqa: B006
                done[0] += advance
                err_console.print(f"  points solved: {done[0]}/{total}", highlight=False)

        result = write_phase(cfg, out, progress=progress, on_start=announce)
    if not quiet:
        import numpy as np

        codes = np.asarray(result.dataset["result"])
        err_console.print(escape(
            f"  {codes.size} points: {int(np.sum(codes == 0))} without divergence by t_max, "
            f"{int(np.sum(codes != 0))} diverged or failed; {time_summary(result.timings)}"),
            highlight=False)
    files = ", ".join(p.name for p in result.files.values())
    out_console.print(escape(f"results written to {out}/: {files}"), highlight=False)


def time_summary(timings: dict[str, float]) -> str:
    """One line of a phase run's wall seconds: compile and solve summed over the ODE and
    every stochastic method, then each part (``ode compile + solve``, ``<m> compile +
    solve`` for each ``<m>_compile_s`` of ``timings``)."""
    prefixes = {"ode": ""}  # method -> its keys' prefix
    for key in timings:
        if key.endswith("_compile_s"):
            prefixes[key.removesuffix("_compile_s")] = key.removesuffix("compile_s")
    parts = {m: (timings[f"{p}compile_s"], timings[f"{p}solve_s"]) for m, p in prefixes.items()}
    compile_s, solve_s = (sum(v[i] for v in parts.values()) for i in (0, 1))
    each = ", ".join(f"{m} {c:.1f} + {s:.1f} s" for m, (c, s) in parts.items())
    return f"compile {compile_s:.1f} s, solve {solve_s:.1f} s ({each})"


@app.command("phase-config")
def phase_config_command():
    """Print the embedded default config of ``advdyn phase``."""
    sys.stdout.write(resources.files("advdyn").joinpath("defaults/phase.toml").read_text())
