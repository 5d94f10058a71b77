"""``advdyn sweep``: a grid of runs on Dask distributed, merged into one dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from advdyn.cli._app import (
    EXIT_USER_ERROR,
    app,
    command_errors,
    err_console,
    fail,
    out_console,
    out_option,
    titled_table,
)


@app.command("sweep")
def sweep_command(
    sweep_file: Annotated[Path, typer.Argument(help="Sweep TOML file (base config + \\[grid]).")],
    scheduler: Annotated[
        str | None, typer.Option(help="Address of a running Dask scheduler (tcp://host:8786).")
    ] = None,
    workers: Annotated[
        int | None, typer.Option(min=1, help="Worker processes of the local Dask cluster.")
    ] = None,
    out: Annotated[
        Path | None, out_option("Result folder (overrides `out`).")
    ] = None,
    retry_failed: Annotated[
        bool, typer.Option("--retry-failed", help="Run again points recorded as failed.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or table.")] = False,
):
    """Run every point of a sweep (resuming a previous run); write points/, sweep.nc, sweep.json.

    Finished points are skipped on a re-run; a failing point is recorded with its error and
    the others go on. With exactly two numeric swept fields, phase.png shows the final value
    of the first recorded risk over them.
    """
    from advdyn.errors import ConfigError
    from advdyn.workflows.sweep import load_sweep, run_sweep

    with command_errors(out):
        spec = load_sweep(sweep_file)
        target = out if out is not None else spec.out
        if target is None:
            raise ConfigError("out", "no output folder: set `out` in the sweep file or use --out")
    grid = ", ".join(f"{k} ({len(v)})" for k, v in spec.sweep.grid.items())

    def announce() -> None:  # after the checks, so that a refusal is the only line
        err_console.print(escape(f"advdyn sweep: kind = {spec.sweep.kind}, grid: {grid}"),
                          highlight=False)

    with command_errors(target):
        result = run_sweep(
            spec, target, scheduler=scheduler, workers=workers, retry_failed=retry_failed,
            progress=not quiet,
            notify=lambda m: err_console.print(escape(m), highlight=False, soft_wrap=True),
            on_start=None if quiet else announce,
        )

    files = dict(result.files)
    plot = _phase_plot(result.dataset, spec.sweep.grid, target)
    if plot is not None:
        files["phase"] = plot
    s = result.summary
    if not quiet:
        table = titled_table(f"sweep: {s['points']} points")
        for col in ("done", "failed", "run now", "skipped (recorded)", "wall s"):
            table.add_column(col, justify="right")
        table.add_row(str(s["done"]), str(s["failed"]), str(s["run"]), str(s["skipped"]),
                      f"{s['wall_time_s']:.1f}")
        out_console.print(table)
        for pid, failure in list(s["errors"].items())[:5]:
            err_console.print(escape(f"failed {pid} {failure['values']}: {failure['error']}"),
                              highlight=False, soft_wrap=True)
    out_console.print(escape(f"results written to {target}/: "
                             + ", ".join(p.name for p in files.values())), highlight=False)
    if s["done"] == 0:
        first = next(iter(s["errors"].values()))["error"]
        raise fail(f"all {s['points']} points failed; first error: {first}", EXIT_USER_ERROR)


def _phase_plot(ds, grid: dict, out: Path) -> Path | None:
    numeric = [k for k, v in grid.items()
               if len(v) > 1 and all(isinstance(x, int | float) and not isinstance(x, bool)
                                     for x in v)]
    if len(grid) != 2 or len(numeric) != 2:
        return None
    candidates = ("adv_risk_limit", "ode_adv_risk", "sgd_adv_risk", "hsgd_adv_risk")
    var = next((v for v in candidates if v in ds), None)
    if var is None:
        return None
    from advdyn.plot.phase import plot_phase_diagram
    from advdyn.plot.risk import save_figure

    title = "limiting adversarial risk" if var == "adv_risk_limit" else f"final {var}"
    fig = plot_phase_diagram(ds, var, numeric[0], numeric[1], title=title)
    return save_figure(fig, Path(out) / "phase.png")
