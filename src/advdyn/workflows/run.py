"""From a :class:`~advdyn.config.Config` to a result folder.

:func:`run` draws the instance, builds the shared time grid, runs each requested method,
and writes ``ode.nc`` / ``sgd.nc`` / ``hsgd.nc`` (NetCDF), ``summary.json`` and ``risk.png``,
every file atomically. It is what ``advdyn run`` calls.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jax
import numpy as np
import xarray as xr

from advdyn._version import __version__
from advdyn.config.build import make_learning_rate
from advdyn.config.schema import Config, ConstantLR
from advdyn.errors import DivergenceError
from advdyn.io import compare, to_dataset, write_json, write_netcdf
from advdyn.io.files import folder_lock, put_in_place, temporary_path
from advdyn.plot.process import FigureProcessLost
from advdyn.problem.instance import stream_key
from advdyn.simulate.hsgd import simulate_hsgd
from advdyn.simulate.sgd import simulate_sgd, time_grid
from advdyn.solution import Solution
from advdyn.theory.ode import prepare_ode, solve_ode
from advdyn.theory.stationary import adversarial_optimum, optimum_shape
from advdyn.workflows.bins import (
    config_relaxed_eigenvalue,
    doubled_bins_check,
    spectral_instances,
)
from advdyn.workflows.memory import check_memory
from advdyn.workflows.progress import progress_callback, progress_phase

if TYPE_CHECKING:
    from advdyn.plot.process import FigureProcess


@dataclass
class RunResult:
    """What :func:`run` produced.

    Attributes
    ----------
    datasets : dict of method name to Dataset
        ``"ode"``, ``"sgd"`` and/or ``"hsgd"``, in the order of ``config.run.methods``.
    summary : dict
        Contents of ``summary.json``: ``advdyn_version``, ``d``, ``methods``,
        ``wall_time_s``, ``final`` (last recorded values, replicate means for SGD and HSGD),
        ``gap_vs_ode`` (when the ODE ran; see :func:`~advdyn.results.compare`),
        ``config`` and, when written, ``files`` (the manifest of the result set).
    files : dict of label to Path
        Written files: one per method, ``"summary"`` and ``"plot"``; empty when no
        output folder was given.
    """

    datasets: dict[str, xr.Dataset]
    summary: dict
    files: dict[str, Path] = field(default_factory=dict)


def run(
    config: Config,
    out_dir: str | Path | None = None,
    progress: bool = False,
    figures: FigureProcess | None = None,
) -> RunResult:
    """Run every method of ``config.run.methods`` on the same instance and time grid.

    The SGD sample stream uses :func:`~advdyn.problem.stream_key`, independent of the
    instance draw; the homogenized SGD derives its own stream from the same key
    (:mod:`advdyn.hsgd`), independent of SGD's. The ODE is recorded on the SGD's
    step-aligned time grid, which the homogenized SGD shares.

    Parameters
    ----------
    config : Config
        A validated full configuration.
    out_dir : path, optional
        Where to write ``<method>.nc``, ``summary.json`` and ``risk.png``; nothing is
        written when omitted.
    progress : bool
        Show progress bars.
    figures : FigureProcess, optional
        A second interpreter that draws ``risk.png`` from the solutions as soon as they
        exist, while this one labels and writes them (:mod:`advdyn.plot.process`; the
        console script starts one for ``advdyn run``). Without one, or if it fails, the
        figure is drawn here; the file is the same. (Its interpreter imports the main
        module of this one: a script's code must sit under ``if __name__ ==
        "__main__":``.)

    Returns
    -------
    RunResult
        The datasets, the summary and the written files.

    Raises
    ------
    ConfigError
        If the instance cannot be drawn (e.g. a bad spectrum or init file), ``out_dir``
        names a file, or another run or sweep is writing into ``out_dir`` (field ``out``).
    DivergenceError
        If a method's trajectory blows up.

    Notes
    -----
    With ``out_dir`` the folder is locked for the whole run (:func:`advdyn.io.folder_lock`),
    and the run replaces the whole set of result files: ``summary.json`` lists them
    (``files``) and is written last; ``ode.nc``/``sgd.nc``/``hsgd.nc``/``risk.png`` of an
    earlier run that this one does not write are removed, and so are temporary files of an
    interrupted write. A figure drawn by ``figures`` goes to a temporary file first and
    takes its place beside the NetCDF files only once they are written.
    """
    if out_dir is None:
        return _compute(config, progress)
    out = Path(out_dir)
    with folder_lock(out, "advdyn run"):
        for name in RESULT_FILES:  # temporary files of an interrupted write
            for path in out.glob(f".{name}.*"):
                path.unlink(missing_ok=True)
        with _Figure(config, out, figures) as figure:
            result = _compute(config, progress, solved=figure.send)
            _write(result, out, figure)
    return result


def _compute(config: Config, progress: bool,
             solved: Callable[[dict[str, Solution]], None] | None = None) -> RunResult:
    try:
        return _compute_methods(config, progress, solved)
    except DivergenceError as err:  # advice for the loss at hand, or what else happened
        raise _explain(err.with_loss(config.model_dump(mode="json")["problem"]["loss"]),
                       config) from None


def _explain(err: DivergenceError, config: Config) -> DivergenceError:
    """Say what a divergence means for ``config`` where the learning rate is not the cause.

    A trajectory not finite at its first record (``t = 0``, before any step) means the
    problem's own numbers overflow float64 (an absurd attack radius, say). An ODE that
    fails with a constant least-squares rate inside the rate's stable range
    (``gamma * tr(K)/d < 2``, THEORY 7) did not diverge: its solver stopped (the step
    budget for the horizon ran out). Otherwise the loss's learning-rate advice stands.
    """
    p = config.problem
    if err.time <= 0.0:
        return err.with_advice(
            "Not a learning-rate problem: the risk is not finite before any step, so a "
            f"value of the problem overflows float64 (problem.epsilon = {p.epsilon:g}, "
            "the spectrum, the init); use smaller values")
    lr = config.lr
    if err.method == "ode" and isinstance(lr, ConstantLR) and p.loss == "least_squares":
        try:
            from advdyn.config.build import eigen_decomposition

            mean_eig = float(np.mean(eigen_decomposition(p.spectrum, p.d)[0]))
        except Exception:  # a spectrum that cannot be summarised here: keep the advice
            return err
        if lr.gamma * mean_eig < 2:
            return err.with_advice(
                f"Not a learning-rate problem: gamma * tr(K)/d = {lr.gamma * mean_eig:.3g} is "
                "inside the stable range (< 2); the ODE solver stopped before the horizon "
                f"(its step budget ran out for run.t_max = {config.run.t_max:g}): shorten "
                "run.t_max")
    return err


def _compute_methods(config: Config, progress: bool,
                     solved: Callable[[dict[str, Solution]], None] | None) -> RunResult:
    """Every method's solution, labelled; ``solved`` gets the solutions before labelling."""
    rc = config.run
    check_memory(config)  # ConfigError naming problem.d / run.replicates / run.block_size
    # with run.bins the ODE runs on spectral bins; an ODE-only run of an isotropic spectrum
    # builds them from the config and draws no instance (advdyn.spectral)
    grid = time_grid(config.problem.d, rc.t_max, rc.n_times, rc.block_size)
    with progress_phase("instance and optimum", enabled=progress):
        instance, binned = spectral_instances(config)
        base = instance if instance is not None else binned
        # bins built from the config: the eigenvalue above which modes relaxed before the
        # first record, binned coarser and followed at a looser tolerance there (one decision)
        above = (config_relaxed_eigenvalue(config)
                 if binned is not None and instance is None else None)
        ode_inst = binned if binned is not None else base
        ode_options = _ode_options(config, above)
        # the ODE compiles in a second thread while this one finds the optimum it records
        with _alongside(_prepare_ode, config.lr, ode_inst, grid.times, ode_options,
                        when="ode" in rc.methods):
            optimum = adversarial_optimum(base)
    lr = make_learning_rate(config.lr, base, optimum=optimum)
    attrs = {"config": config.to_json(), "advdyn_version": __version__, "seed": config.problem.seed}

    solutions: dict[str, Solution] = {}
    bins_attrs: dict[str, Any] = {}
    timings: dict[str, float] = {}
    for method in rc.methods:
        start = time.perf_counter()
        if method == "ode":
            def ode_on(inst) -> Solution:
                opt = optimum if inst is base else adversarial_optimum(inst)
                rate = lr if inst is base else make_learning_rate(config.lr, inst, optimum=opt)
                return solve_ode(inst, rate, grid.times, optimum=opt, **ode_options)

            with progress_phase("ODE", enabled=progress):
                sol = ode_on(binned if binned is not None else base)
                if binned is not None:  # eigenvalue above which the bins are coarser
                    bins_attrs["bins_relaxed_above"] = math.nan if above is None else above
                    if rc.bins_check:  # the change at twice the bins
                        bins_attrs.update(
                            doubled_bins_check(config, instance, binned, sol, ode_on, above)
                        )
        else:
            simulate = {"sgd": simulate_sgd, "hsgd": simulate_hsgd}[method]
            with progress_callback(method.upper(), enabled=progress) as report:
                sol = simulate(
                    instance, lr, stream_key(config.problem.seed), t_max=rc.t_max,
                    n_times=rc.n_times, replicates=rc.replicates, dtype=rc.dtype,
                    block_size=rc.block_size, divergence_factor=rc.divergence_factor,
                    progress=report, optimum=optimum,
                )
        timings[method] = time.perf_counter() - start
        solutions[method] = sol
    if solved is not None:
        solved(solutions)

    datasets = {m: to_dataset(sol, attrs) for m, sol in solutions.items()}
    if "ode" in datasets:
        datasets["ode"].attrs.update(bins_attrs)

    summary: dict[str, Any] = {
        "advdyn_version": __version__,
        "d": config.problem.d,
        "methods": list(datasets),
        "wall_time_s": timings,
        "final": {
            m: {k: float(ds[k].mean("replicate")[-1] if "replicate" in ds.dims else ds[k][-1])
                for k in ds.data_vars}
            for m, ds in datasets.items()
        },
    }
    if "ode" in datasets:
        summary["gap_vs_ode"] = {
            m: compare(datasets["ode"], ds) for m, ds in datasets.items() if m != "ode"
        }
    if "ode" in datasets and "bins_used" in datasets["ode"].attrs:
        keys = ("bins", "bins_used", "bins_rel_change", "bins_source")
        summary["bins"] = {k: datasets["ode"].attrs[k] for k in keys}
    if "ode" in datasets and "bins_relaxed_above" in datasets["ode"].attrs:
        above = float(datasets["ode"].attrs["bins_relaxed_above"])
        summary.setdefault("bins", {})["bins_relaxed_above"] = (
            None if math.isnan(above) else above
        )
    summary["config"] = config.model_dump(mode="json")

    return RunResult(datasets, summary)


@contextmanager
def _alongside(fn, *args, when: bool = True) -> Iterator[None]:
    """Run ``fn(*args)`` in a second thread while the block runs; wait for it at the end.

    Only for work that prepares (compiles) and whose failure costs nothing but the time
    it saves: its exceptions are dropped, and what it prepared the block's successors
    find in :mod:`advdyn.executables` (a failure is logged at debug level). Nothing runs
    when ``when`` is false. The block's exit, an exception's included, waits for ``fn``.
    """
    if not when:
        yield
        return
    with ThreadPoolExecutor(1, thread_name_prefix="advdyn-prepare") as pool:
        future = pool.submit(fn, *args)
        future.add_done_callback(_log_failure)
        yield


def _log_failure(future) -> None:
    error = future.exception()
    if error is not None:  # (speed only: the block's successors compile what they need)
        logging.getLogger(__name__).debug("preparing in a second thread failed: %r", error)


def _ode_options(config: Config, relaxed_above: float | None) -> dict[str, Any]:
    """The keyword arguments of a run's :func:`solve_ode` (and :func:`prepare_ode`)."""
    rc = config.run
    return {"rtol": rc.rtol, "atol": rc.atol, "solver": rc.solver,
            "divergence_factor": rc.divergence_factor, "relaxed_above": relaxed_above}


def _prepare_ode(lr_config, instance, times, options: dict) -> bool:
    """Compile the ODE of a run before its optimum exists (see :func:`prepare_ode`)."""
    # zeros of the optimum's shapes stand in for it, in the recorder and in a rule built
    # from it (Polyak's reads its minimum objective): only shapes shape the program
    optimum = jax.tree.map(lambda a: np.zeros(a.shape, a.dtype), optimum_shape(instance))
    rate = make_learning_rate(lr_config, instance, optimum=optimum)
    return prepare_ode(instance, rate, times, optimum=optimum, **options)


# every file a run may write: what a new run does not write again is removed
RESULT_FILES = ("ode.nc", "sgd.nc", "hsgd.nc", "summary.json", "risk.png")


def _write(result: RunResult, out: Path, figure: _Figure) -> None:
    """Write one consistent set of result files into ``out`` (the caller holds its lock).

    ``summary.json`` lists the set (``files``) and is written last; result files of an
    earlier run that this run does not write (e.g. ``hsgd.nc`` of a run with more methods)
    are removed first.
    """
    datasets, summary = result.datasets, result.summary
    names = [f"{m}.nc" for m in datasets] + ["summary.json", "risk.png"]
    summary["files"] = names
    for name in RESULT_FILES:  # before writing: a crash below never leaves an old file beside
        if name not in names:
            (out / name).unlink(missing_ok=True)
    for name, ds in datasets.items():
        result.files[name] = write_netcdf(ds, out / f"{name}.nc")
    result.files["plot"] = figure.write(datasets)
    # last: a summary.json whose manifest matches the files present marks a complete run
    result.files["summary"] = write_json(summary, out / "summary.json")


_RISK_NAMES = ("adv_risk", "clean_risk", "clean_error", "robust_error")
# a figure takes well under a second: a process that has not answered in a minute is lost
_FIGURE_TIMEOUT = 60.0


class _Figure:
    """A run's ``risk.png``: drawn by a figure process from the solutions as soon as they
    exist (into a temporary file, put in place by :meth:`write`), or else here.

    Whatever goes wrong with the process (:class:`~advdyn.plot.process.FigureProcessLost`)
    only moves the drawing back here; an error of the drawing itself is raised. Leaving the
    context removes a temporary file that was not put in place.
    """

    def __init__(self, config: Config, out: Path, figures: FigureProcess | None) -> None:
        self.path = out / "risk.png"
        from advdyn.plot import power_of_ten  # no matplotlib import

        self.title = (f"d = {power_of_ten(config.problem.d)}, eps = {config.problem.epsilon}, "
                      f"loss = {config.problem.loss}")
        self.figures = figures
        self.pending: Any = None
        self.partial: Path | None = None

    def send(self, solutions: dict[str, Solution]) -> None:
        """Hand the solutions to the figure process, if there is one, to draw."""
        if self.figures is None:
            return
        # plain arrays of the quantities drawn: the other process labels them itself (it
        # imports no JAX)
        recorded = {m: (np.asarray(s.ts),
                        {k: np.asarray(v) for k, v in s.ys.items() if k in _RISK_NAMES},
                        bool(s.replicated)) for m, s in solutions.items()}
        self.partial = temporary_path(self.path, suffix=".png")
        try:  # (named, not imported: matplotlib stays out of this process)
            self.pending = self.figures.submit(
                "advdyn.plot.risk:save_quantities", recorded, self.partial, names=_RISK_NAMES,
                title=self.title, atomic=False,
            )
        except FigureProcessLost as err:
            logging.getLogger(__name__).debug("%s; drawing here", err)

    def write(self, datasets: dict[str, xr.Dataset]) -> Path:
        """Put the drawn figure in place, or draw it here; return its path."""
        if self.pending is not None:
            pending, self.pending = self.pending, None
            try:
                pending.result(timeout=_FIGURE_TIMEOUT)
            except FigureProcessLost as err:
                logging.getLogger(__name__).debug("%s; drawing here", err)
            else:
                assert self.partial is not None
                path = put_in_place(self.partial, self.path)
                self.partial = None  # (only once in place: else the exit removes it)
                return path
        from advdyn.plot.risk import save_quantities  # matplotlib: imported where it draws

        return save_quantities(datasets, self.path, names=_RISK_NAMES, title=self.title)

    def __enter__(self) -> _Figure:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.partial is not None:
            # best effort: a failure here must not hide the error that ended the run (the
            # next run removes what is left)
            with contextlib.suppress(OSError):
                self.partial.unlink(missing_ok=True)
