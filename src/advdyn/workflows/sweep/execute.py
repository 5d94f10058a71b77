"""Running a sweep: points as tasks on Dask distributed, recorded as they finish, merged."""

from __future__ import annotations

import logging
import os
import signal
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import xarray as xr

from advdyn import checks
from advdyn._version import __version__
from advdyn.config.schema import Config
from advdyn.errors import ConfigError
from advdyn.io import write_json, write_netcdf
from advdyn.io.files import folder_lock
from advdyn.workflows.progress import progress_bar
from advdyn.workflows.sweep.kinds import PointFunction, point_function
from advdyn.workflows.sweep.merge import merge_points
from advdyn.workflows.sweep.points import fingerprint, grid_points, point_config
from advdyn.workflows.sweep.schema import SweepSpec, canonical
from advdyn.workflows.sweep.storage import (
    open_point,
    point_paths,
    point_status,
    read_json,
    record_point,
    remove_stale_temporaries,
)


def execute_point(fn: PointFunction, config: Config, cache: bool = False) -> tuple[str, Any, float]:
    """Run one point (on a worker); never raises.

    Parameters
    ----------
    fn : callable
        The point kind's function.
    config : Config
        The point's configuration.
    cache : bool
        Turn on the compilation cache in this process (once), as the submitting command
        line has (`advdyn.workflows.cache`): worker
        processes then share what one of them, or an earlier run, compiled.

    Returns
    -------
    status : {"done", "failed"}
    payload : xarray.Dataset or dict
        The dataset, or ``{"error_type", "error", "traceback"}``.
    wall_s : float
        Seconds spent.
    """
    start = time.perf_counter()
    if cache:
        from advdyn.workflows.cache import active_cache_dir, enable_compilation_cache

        if active_cache_dir() is None:  # once per worker process
            enable_compilation_cache()
    try:
        ds = fn(config)
        return "done", ds, time.perf_counter() - start
    except Exception as err:  # recorded, the sweep goes on
        tb = traceback.format_exception_only(type(err), err)[-1].strip()
        return "failed", {"error_type": type(err).__name__, "error": str(err), "traceback": tb}, (
            time.perf_counter() - start
        )


@dataclass
class SweepResult:
    """What [`run_sweep`][advdyn.workflows.sweep.execute.run_sweep] produced.

    Attributes
    ----------
    dataset : xarray.Dataset
        The merged dataset (also written to ``sweep.nc``).
    summary : dict
        Contents of ``sweep.json``: counts (``points``, ``run``, ``skipped``, ``done``,
        ``failed``; ``run`` counts the tasks executed, ``skipped`` those already
        recorded), ``rerun_untrusted`` (id to why its
        recorded file was not trusted), ``errors`` (id to values and message), the grid,
        ``wall_time_s``.
    files : dict of str to Path
        ``"dataset"`` (``sweep.nc``), ``"summary"`` (``sweep.json``) and the points folder.
    """

    dataset: xr.Dataset
    summary: dict
    files: dict[str, Path] = field(default_factory=dict)


@contextmanager
def sigint_deferred() -> Iterator[None]:
    """Hold back SIGINT in this thread while the block runs; deliver it when the block ends.

    The signal is blocked (``pthread_sigmask``), not ignored, so a Ctrl-C during the block
    is never lost: it stays pending until the block ends, or, where a thread started
    earlier does not block it (XLA's), that thread takes it and Python's handler runs at
    once in the main thread. Processes and threads started in the block inherit the
    blocked mask, so a Ctrl-C (sent to the whole foreground process group) never reaches
    them: this process handles it and ends them, and they print no ``KeyboardInterrupt``
    traceback of their own.
    """
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def make_client(scheduler: str | None, workers: int | None, n_tasks: int):
    from dask.distributed import Client, LocalCluster

    if scheduler is not None:
        try:
            return Client(scheduler, timeout="10s"), None
        except (OSError, ValueError) as err:  # nothing there, a malformed address
            raise ConfigError("scheduler", f"cannot reach a Dask scheduler at {scheduler}: "
                              f"{err}") from None
    n = workers if workers is not None else max(1, min(os.cpu_count() or 1, n_tasks))
    # the worker processes start with SIGINT blocked: a Ctrl-C (sent to the whole process
    # group) is this process's to handle, which ends them; otherwise each worker printed
    # its own KeyboardInterrupt traceback
    with sigint_deferred():
        # dashboard_address=None still binds the scheduler's HTTP server to 8787 (a second
        # cluster warned "Port 8787 is already in use"); ":0" takes a free port silently
        cluster = LocalCluster(
            n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0",
            silence_logs=logging.ERROR,
        )
    return Client(cluster), cluster


@contextmanager
def dask_client(client, scheduler: str | None, workers: int | None,
                n_tasks: int) -> Iterator[Any]:
    """The caller's Dask ``client``, or one made for the block and closed after it.

    Parameters
    ----------
    client : dask.distributed.Client or None
        Used as it is (and left open) when given.
    scheduler : str or None
        Address of the scheduler to connect to when ``client`` is ``None``; ``None``
        starts a local cluster of processes, closed with its client when the block ends.
    workers : int or None
        Local workers (default: one per core, at most ``n_tasks``).
    n_tasks : int
        Number of tasks the block submits.

    Raises
    ------
    ConfigError
        If no scheduler answers at ``scheduler``.
    """
    if client is not None:
        yield client
        return
    client, cluster = make_client(scheduler, workers, n_tasks)
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def check_points(spec: SweepSpec) -> None:
    """Validate the configuration of every point of a sweep before any of it runs.

    Parameters
    ----------
    spec : SweepSpec
        The sweep.

    Raises
    ------
    ConfigError
        Field ``grid``, naming the first point whose values make an invalid configuration
        (e.g. ``"problem.epsilon" = [0.1, "x"]``) and why.
    """
    for p in grid_points(spec.sweep.grid):
        try:
            point_config(spec, p)
        except ConfigError as err:
            raise ConfigError("grid", f"point {canonical(p.values)} is invalid: {err}") from None


def run_sweep(
    spec: SweepSpec,
    out_dir: str | Path | None = None,
    *,
    client=None,
    scheduler: str | None = None,
    workers: int | None = None,
    retry_failed: bool = False,
    progress: bool = False,
    notify: Callable[[str], None] | None = None,
    on_start: Callable[[], None] | None = None,
) -> SweepResult:
    """Run (or resume) a sweep and write its merged result.

    Parameters
    ----------
    spec : SweepSpec
        From [`load_sweep`][advdyn.workflows.sweep.load_sweep] or `sweep_from_dict`.
    out_dir : path, optional
        Result folder; default ``spec.out``.
    client : dask.distributed.Client, optional
        Use this client (e.g. a cluster shared by several sweeps); it is left open.
    scheduler : str, optional
        Address of a running Dask scheduler (``tcp://host:8786``); the workers must see
        the same files (spectrum files of the config). Ignored when ``client`` is given.
    workers : int, optional
        Worker processes of the ``LocalCluster`` started when neither ``client`` nor
        ``scheduler`` is given (default: the number of CPUs, at most the number of points
        to run).
    retry_failed : bool
        Run again points whose recorded run failed (by default they are kept as failed).
    progress : bool
        Show a progress bar of points done.
    notify : callable, optional
        ``notify(message)`` for what the sweep finds on resumption (a point file that does
        not open or does not match its fingerprint and is run again, temporary files of
        an interrupted run removed); the messages are also in ``summary``.
    on_start : callable, optional
        Called once the inputs and the output folder have been checked (and the folder is
        held), before any computation: a command's status line goes there, so that a
        refusal is the only line it prints.

    Returns
    -------
    SweepResult

    Raises
    ------
    ConfigError
        Before anything runs: if no output folder is given, ``out`` names a file or cannot
        be written, or another process is running a sweep (or a run) on the same folder
        (field ``out``); if a grid point's values are invalid (field ``grid``,
        `check_points`); if ``scheduler`` is not an address ``[protocol://]host:port``
        or no scheduler answers there (field ``scheduler``).

    Notes
    -----
    The folder is locked ([`advdyn.io.folder_lock`][advdyn.io.folder_lock]) while the sweep runs; a
    point
    counts as done only when its ``.nc`` opens and carries the point's fingerprint.
    """
    out = Path(out_dir) if out_dir is not None else spec.out
    if out is None:
        raise ConfigError("out", "no output folder: set `out` in the sweep file or pass one")
    if client is None and scheduler is not None:
        checks.scheduler_address(scheduler, "scheduler")
    check_points(spec)
    with folder_lock(out, "advdyn sweep"):
        if on_start is not None:
            on_start()
        return _run_locked(spec, out, client, scheduler, workers, retry_failed, progress,
                           notify or (lambda message: None))


def _run_locked(spec, out, client, scheduler, workers, retry_failed, progress, notify):
    start = time.perf_counter()
    removed = remove_stale_temporaries(out)
    if removed:
        notify(f"removed {len(removed)} temporary file(s) left by an interrupted run")
    grid = spec.sweep.grid
    fn = point_function(spec.sweep.kind)
    points = grid_points(grid)
    todo, skipped = [], 0
    configs = {p.id: point_config(spec, p) for p in points}  # (checked by run_sweep)
    rerun: dict[str, str] = {}
    for p in points:
        fp = fingerprint(spec, p)
        status, problem = point_status(out, p, fp)
        if problem:
            rerun[p.id] = problem
            notify(f"point {p.id} {p.values}: {problem}; running it again")
        if status == "done" or (status == "failed" and not retry_failed):
            skipped += 1
            continue
        todo.append((p, fp, configs[p.id]))

    with progress_bar(f"sweep ({spec.sweep.kind})", total=len(points), enabled=progress) as adv:
        adv(len(points) - len(todo))
        if todo:
            with dask_client(client, scheduler, workers, len(todo)) as pool:
                from dask.distributed import as_completed

                from advdyn.workflows.cache import active_cache_dir

                # the command line's compilation cache, also on the workers
                cache = active_cache_dir() is not None
                futures = {}
                for p, fp, cfg in todo:
                    key = f"point-{p.id}-{uuid.uuid4().hex[:8]}"
                    fut = pool.submit(execute_point, fn, cfg, cache, pure=False, key=key)
                    futures[fut] = (p, fp, cfg)
                for fut in as_completed(list(futures)):
                    p, fp, cfg = futures[fut]
                    try:
                        status, payload, wall = fut.result()
                    except Exception as err:  # worker died, task lost, ...
                        status, wall = "failed", 0.0
                        payload = {"error_type": type(err).__name__, "error": str(err),
                                   "traceback": ""}
                    record_point(out, p, fp, status, payload, wall, cfg.to_json())
                    adv(1)
                    fut.release()

    results: dict[str, xr.Dataset | str] = {}
    errors = {}
    for p in points:
        paths = point_paths(out, p.id)
        ds = open_point(paths["nc"], fingerprint(spec, p))
        if ds is not None:
            results[p.id] = ds
        else:
            recorded = read_json(paths["error"]) or {}
            msg = f"{recorded.get('error_type', 'Error')}: {recorded.get('error', 'not run')}"
            results[p.id] = msg
            errors[p.id] = {"values": p.values, "error": msg}
    merged = merge_points(grid, results)
    merged.attrs.update({"kind": spec.sweep.kind, "advdyn_version": __version__,
                         "base_config": spec.base.to_json(),
                         "overrides": canonical(spec.sweep.overrides)})
    summary = {
        "advdyn_version": __version__,
        "kind": spec.sweep.kind,
        "grid": grid,
        "overrides": spec.sweep.overrides,
        "points": len(points),
        "run": len(todo),
        "skipped": skipped,
        "rerun_untrusted": rerun,
        "done": len(points) - len(errors),
        "failed": len(errors),
        "errors": errors,
        "wall_time_s": time.perf_counter() - start,
    }
    files = {"dataset": write_netcdf(merged, out / "sweep.nc"),
             "summary": write_json(summary, out / "sweep.json"),
             "points": out / "points"}
    return SweepResult(merged, summary, files)
