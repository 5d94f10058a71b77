"""From a [`Config`][advdyn.config.Config] to a result folder.

`run` draws the instance, builds the shared time grid, runs each requested method,
and writes ``ode.nc`` / ``sgd.nc`` / ``hsgd.nc`` (NetCDF), ``summary.json`` and ``risk.png``,
every file atomically. It is what ``advdyn run`` calls.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from advdyn._version import __version__
from advdyn.config.build import DataProblem, data_problem, make_learning_rate
from advdyn.config.schema import DENSE_MAX_D, Config, ConstantLR, binned_spectrum_conflict
from advdyn.errors import ConfigError, DivergenceError
from advdyn.io import compare, gap_over_time, to_dataset, write_json, write_netcdf
from advdyn.io.files import folder_lock
from advdyn.problem.data import SpectralStatistics
from advdyn.problem.instance import stream_key
from advdyn.simulate.data import simulate_data_sgd
from advdyn.simulate.hsgd import simulate_hsgd
from advdyn.simulate.sgd import simulate_sgd, time_grid
from advdyn.solution import Solution
from advdyn.theory.ode import solve_ode
from advdyn.theory.spectral import quadrature_instance
from advdyn.theory.stationary import adversarial_optimum
from advdyn.workflows.bins import (
    config_relaxed_eigenvalue,
    doubled_bins_check,
    spectral_instances,
)
from advdyn.workflows.memory import check_memory
from advdyn.workflows.progress import progress_callback, progress_phase


@dataclass
class RunResult:
    """What `run` produced.

    Attributes
    ----------
    datasets : dict of method name to Dataset
        ``"ode"``, ``"sgd"`` and/or ``"hsgd"``, in the order of ``config.run.methods``.
    summary : dict
        Contents of ``summary.json``: ``advdyn_version``, ``d``, ``methods``,
        ``wall_time_s``, ``final`` (last recorded values, replicate means for SGD and HSGD),
        ``gap_vs_ode`` (when the ODE ran; see `compare`), ``data`` (a data problem: the
        surrogate's diagnostics and ``gap_over_time``, see `_data_summary`),
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
    on_start: Callable[[], None] | None = None,
) -> RunResult:
    """Run every method of ``config.run.methods`` on the same instance and time grid.

    The SGD sample stream uses [`stream_key`][advdyn.problem.stream_key], independent of the
    instance draw; the homogenized SGD derives its own stream from the same key
    (`advdyn.simulate.hsgd`), independent of SGD's. The ODE is recorded on the SGD's
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
    on_start : callable, optional
        Called once the memory estimate and the output folder have been checked (and the
        folder is held), before any computation: a command's status line goes there, so
        that a refusal is the only line it prints.

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
    With ``out_dir`` the folder is locked for the whole run
    ([`advdyn.io.folder_lock`][advdyn.io.folder_lock]),
    and the run replaces the whole set of result files: ``summary.json`` lists them
    (``files``) and is written last; ``ode.nc``/``sgd.nc``/``hsgd.nc``/``risk.png`` of an
    earlier run that this one does not write are removed, and so are temporary files of an
    interrupted write.
    """
    check_memory(config)  # ConfigError naming problem.d / run.replicates / run.block_size
    if out_dir is None:
        _start(config, on_start)
        return _compute(config, progress)
    out = Path(out_dir)
    with folder_lock(out, "advdyn run"):
        _start(config, on_start)
        for name in RESULT_FILES:  # temporary files of an interrupted write
            for path in out.glob(f".{name}.*"):
                path.unlink(missing_ok=True)
        result = _compute(config, progress)
        _write(result, out, config)
    return result


def _start(config: Config, on_start: Callable[[], None] | None) -> None:
    """The last checks, then ``on_start``: a data problem's file is read first, so that a
    bad file's error is the only line a command prints (the data are cached for the
    methods)."""
    if config.problem.data is not None:
        check_data_spectrum(config, data_problem(config.problem))
    if on_start is not None:
        on_start()


def check_data_spectrum(config: Config, dp: DataProblem) -> None:
    """What the spectrum a data problem took (known once the data are read: an ``"auto"``
    spectrum is binned where the dense covariance does not fit in memory) cannot run or
    does not use.

    Raises
    ------
    ConfigError
        On a binned spectrum: naming ``run.methods`` for SGD on the surrogate (``sgd``,
        ``hsgd``), which needs the eigenbasis it does not build, or ``run.bins`` (the
        quadrature's nodes are the bins).

    Warns
    -----
    UserWarning
        One line, when ``problem.data.probes``, ``lanczos_steps`` or ``probe_seed`` is not
        its default and an ``"auto"`` spectrum is dense (they apply to a binned one only;
        an explicit ``"dense"`` spectrum refuses them in the schema).
    """
    data = config.problem.data
    assert data is not None
    if not dp.binned:
        unused = [f"problem.data.{name}" for name in data.binned_settings()]
        if unused:
            warnings.warn(f"{', '.join(unused)} not used (binned spectrum only): the "
                          f"spectrum is dense (d = {dp.rows.shape[1]} <= {DENSE_MAX_D})",
                          UserWarning, stacklevel=2)
        return
    why = dp.diagnostics["spectrum"]
    fallback = data.spectrum_method == "dense"  # the dense covariance did not fit
    if fallback:
        why += ", the dense covariance does not fit in memory"
    conflict = binned_spectrum_conflict(config.run, why, dense_possible=not fallback)
    if conflict is not None:
        raise ConfigError(*conflict)


def _compute(config: Config, progress: bool) -> RunResult:
    try:
        return _compute_methods(config, progress)
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


def _compute_methods(config: Config, progress: bool) -> RunResult:
    """Every method's solution, labelled."""
    rc = config.run
    # with run.bins the ODE runs on spectral bins; an ODE-only run of an isotropic spectrum
    # builds them from the config and draws no instance (advdyn.theory.spectral)
    grid = time_grid(config.problem.d, rc.t_max, rc.n_times, rc.block_size)
    dp = data_problem(config.problem) if config.problem.data is not None else None
    with progress_phase("instance and optimum", enabled=progress):
        if dp is not None and dp.binned:  # the ODE on the quadrature's nodes (no eigenbasis)
            instance, binned, base, above = None, None, dp.instance, None
        else:
            instance, binned = spectral_instances(config)
            base = instance if instance is not None else binned
            # bins built from the config: the eigenvalue above which modes relaxed before
            # the first record, binned coarser and followed at a looser tolerance there
            above = (config_relaxed_eigenvalue(config)
                     if binned is not None and instance is None else None)
        ode_options = _ode_options(config, above)
        optimum = adversarial_optimum(base)
    lr = make_learning_rate(config.lr, base, optimum=optimum)
    attrs = {"config": config.to_json(), "advdyn_version": __version__, "seed": config.problem.seed}
    if dp is not None:  # how the surrogate's spectrum was obtained
        attrs["spectrum"] = dp.diagnostics["spectrum"]

    solutions: dict[str, Solution] = {}
    bins_attrs: dict[str, Any] = {}
    spectrum_attrs: dict[str, Any] = {}
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
                if dp is not None and dp.binned:  # the quadrature one step lower
                    spectrum_attrs["spectrum_rel_change"] = spectrum_change(
                        config, dp, sol, ode_on)
                if binned is not None:  # eigenvalue above which the bins are coarser
                    bins_attrs["bins_relaxed_above"] = math.nan if above is None else above
                    if rc.bins_check:  # the change at twice the bins
                        bins_attrs.update(
                            doubled_bins_check(config, instance, binned, sol, ode_on, above)
                        )
        else:
            options: dict[str, Any] = {
                "t_max": rc.t_max, "n_times": rc.n_times, "replicates": rc.replicates,
                "dtype": rc.dtype, "block_size": rc.block_size,
                "divergence_factor": rc.divergence_factor, "optimum": optimum}
            key = stream_key(config.problem.seed)
            with progress_callback(method.upper(), enabled=progress) as report:
                if method == "data_sgd":
                    assert dp is not None
                    if dp.binned:  # no eigenbasis: the rows' own risks and basis-free records
                        options["optimum"] = None
                    sol = simulate_data_sgd(dp.rows_instance, dp.rows, dp.targets, lr, key,
                                            progress=report, measured_only=dp.binned,
                                            **options)
                else:
                    simulate = {"sgd": simulate_sgd, "hsgd": simulate_hsgd}[method]
                    assert instance is not None  # check_data_spectrum refuses them when binned
                    sol = simulate(instance, lr, key, progress=report, **options)
        timings[method] = time.perf_counter() - start
        solutions[method] = sol

    datasets = {m: to_dataset(sol, attrs) for m, sol in solutions.items()}
    if "ode" in datasets:
        datasets["ode"].attrs.update(bins_attrs)
        datasets["ode"].attrs.update(spectrum_attrs)

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
    if config.problem.data is not None:
        summary["data"] = _data_summary(config, datasets)
        if "spectrum_rel_change" in spectrum_attrs:
            change = spectrum_attrs["spectrum_rel_change"]
            summary["data"]["spectrum_rel_change"] = change if math.isfinite(change) else None
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


#: ``spectrum_rel_change`` above which a run on a binned data spectrum warns
SPECTRUM_REL_CHANGE_WARN = 0.01
#: the final records ``spectrum_rel_change`` compares
SPECTRUM_CHECK_NAMES = ("adv_risk", "clean_risk", "dist_to_opt")


#: contraction ``r`` of the changes in the steps at and above which `step_error` reads them
#: as not converging (the geometric tail ``r / (1 - r)`` would be 9 or more changes)
STEP_ERROR_MAX_CONTRACTION = 0.9


def step_error(full: dict[str, float], coarser: dict[str, float] | None,
               coarsest: dict[str, float] | None = None, floor: float = 0.0) -> float:
    """The error in the Lanczos steps of a quadrature's final records, estimated from the
    same records one and two steps lower (``docs/real-data.md``).

    Per record, ``d1 = |x_{m-1} - x_m| / |x_m|`` and ``d2 = |x_{m-2} - x_{m-1}| / |x_m|``;
    with the contraction ``r = d1 / d2`` of a geometric convergence, the error of ``x_m`` is
    ``d1 r / (1 - r)``, and the estimate is ``d1 max(1, r / (1 - r))``: never below the last
    change. Changes that do not contract (``r >= STEP_ERROR_MAX_CONTRACTION``) bound
    nothing: infinity, unless both are at or below ``floor`` (the ODE's own tolerance, where
    changes are noise), then the larger. Without ``coarsest`` (or when its ODE failed:
    None) the estimate is ``d1``. A record that is not finite on any level gives infinity.
    The largest over the records.

    Parameters
    ----------
    full, coarser, coarsest : dict of str to float
        Final records (the same names) on ``m``, ``m - 1`` and ``m - 2`` steps; ``coarser``
        None (its ODE failed) gives infinity.
    floor : float
        Relative changes at or below which records are taken as converged noise.

    Returns
    -------
    float
    """
    if coarser is None:
        return math.inf
    worst = 0.0
    for k, x in full.items():
        scale = max(abs(x), 1e-300)
        d1 = abs(coarser[k] - x) / scale
        d2 = abs(coarsest[k] - coarser[k]) / scale if coarsest is not None else 0.0
        if not (math.isfinite(d1) and math.isfinite(d2)):
            return math.inf
        if coarsest is None:
            estimate = d1
        elif d1 >= STEP_ERROR_MAX_CONTRACTION * d2:  # not contracting
            estimate = max(d1, d2) if max(d1, d2) <= floor else math.inf
        else:
            r = d1 / d2
            estimate = d1 * max(1.0, r / (1.0 - r))
        worst = max(worst, estimate)
    return worst


def spectrum_change(config: Config, dp: DataProblem, sol: Solution,
                    ode_on: Callable[[Any], Solution]) -> float:
    """How far a binned data spectrum's ODE is from converged in ``lanczos_steps``.

    Re-solves the ODE on the quadratures from all but the last one and two Krylov blocks
    (``SpectralStatistics.coarser``, Rayleigh-Ritz on the same basis, no pass over the rows)
    and returns `step_error` of the final ``adv_risk``, ``clean_risk`` and ``dist_to_opt``
    (0 when the Krylov space is ``R^d``, where the quadrature is exact; NaN when one block
    was taken without spanning it; infinite when the ODE one step lower diverged). Warns
    (``UserWarning``, one line) above `SPECTRUM_REL_CHANGE_WARN`.

    Parameters
    ----------
    config : Config
    dp : DataProblem
        A binned data problem.
    sol : Solution
        Its ODE on the full quadrature.
    ode_on : callable
        ``ode_on(instance) -> Solution`` with the run's grid, rule and tolerances.

    Returns
    -------
    float
    """
    stats = dp.statistics
    assert isinstance(stats, SpectralStatistics)
    if stats.nodes.size == config.problem.d:  # the space is R^d: the quadrature is exact
        return 0.0
    if stats.coarser is None:
        return math.nan
    p = config.problem
    names = [k for k in SPECTRUM_CHECK_NAMES if k in sol.ys]

    def finals(quadrature: SpectralStatistics | None) -> dict[str, float] | None:
        if quadrature is None:
            return None
        try:
            lower = ode_on(quadrature_instance(quadrature, dp.instance.loss, p.epsilon,
                                               p.ridge))
        except DivergenceError:  # a coarser quadrature's ODE did not get through
            return None
        return {k: float(lower.ys[k][-1]) for k in names}

    one = finals(stats.coarser)
    two = finals(stats.coarser.coarser) if one is not None else None
    # changes that do not contract below a hundredth of the warning level (or ten times the
    # ODE's tolerance) are noise: even a slow geometric tail (9 changes) stays below it
    change = step_error({k: float(sol.ys[k][-1]) for k in names}, one, two,
                        floor=max(10 * config.run.rtol, SPECTRUM_REL_CHANGE_WARN / 100))
    if not change <= SPECTRUM_REL_CHANGE_WARN:
        data = p.data
        assert data is not None
        lowest = stats.steps - (2 if two is not None else 1)  # the coarser chain's steps
        what = (f"error in the Lanczos steps is about {change:.3g}" if math.isfinite(change)
                else "changes in the Lanczos steps do not shrink yet")
        warnings.warn(
            f"the binned spectrum is not converged: the final records' {what} (from "
            f"{lowest} to {stats.steps} steps; warns above {SPECTRUM_REL_CHANGE_WARN:g}); "
            f"raise problem.data.lanczos_steps (now {data.lanczos_steps}) or "
            f"problem.data.probes (now {data.probes})",
            UserWarning, stacklevel=2)
    return change


def _data_summary(config: Config, datasets: dict[str, xr.Dataset]) -> dict[str, Any]:
    """What a data problem's summary adds: the data, the surrogate's diagnostics and, when the
    ODE ran, every simulator's relative gap to it over time (the risks a user measures)."""
    data = config.problem.data
    assert data is not None
    dp = data_problem(config.problem)
    out: dict[str, Any] = {"path": str(data.path), "task": data.task,
                           "standardize": data.standardize, **dp.diagnostics}
    if "ode" in datasets:
        names = ("adv_risk", "clean_risk", "clean_error", "robust_error")
        out["gap_over_time"] = {
            m: gap_over_time(datasets["ode"], ds, names, config.problem.d)
            for m, ds in datasets.items() if m != "ode"
        }
        # one run's fluctuations: d^-1/2 for a well-spread spectrum, d_eff^-1/2 in general
        out["fluctuation_scale"] = config.problem.d ** -0.5
        out["effective_fluctuation_scale"] = dp.diagnostics["effective_dimension"] ** -0.5
    return out


def _ode_options(config: Config, relaxed_above: float | None) -> dict[str, Any]:
    """The keyword arguments of a run's [`solve_ode`][advdyn.solve_ode]."""
    rc = config.run
    return {"rtol": rc.rtol, "atol": rc.atol, "solver": rc.solver,
            "divergence_factor": rc.divergence_factor, "relaxed_above": relaxed_above}


# every file a run may write: what a new run does not write again is removed
RESULT_FILES = ("ode.nc", "sgd.nc", "hsgd.nc", "data_sgd.nc", "summary.json", "risk.png")


def _write(result: RunResult, out: Path, config: Config) -> None:
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
    result.files["plot"] = _draw(datasets, out / "risk.png", config)
    # last: a summary.json whose manifest matches the files present marks a complete run
    result.files["summary"] = write_json(summary, out / "summary.json")


_RISK_NAMES = ("adv_risk", "clean_risk", "clean_error", "robust_error")


def _draw(datasets: dict[str, xr.Dataset], path: Path, config: Config) -> Path:
    """Draw a run's ``risk.png`` (atomically); return its path."""
    from advdyn.plot import power_of_ten
    from advdyn.plot.risk import save_quantities  # matplotlib: imported where it draws

    title = (f"d = {power_of_ten(config.problem.d)}, eps = {config.problem.epsilon:.4g}, "
             f"loss = {config.problem.loss}")
    if config.problem.data is not None:
        title = f"{config.problem.data.path.name}: {title}"
        surrogate = {"ode": "ODE of the Gaussian surrogate (d -> inf)",
                     "sgd": "SGD on the Gaussian surrogate",
                     "hsgd": "homogenized SGD of the surrogate"}
        datasets = {m: ds.assign_attrs(plot_label=surrogate[m]) if m in surrogate else ds
                    for m, ds in datasets.items()}
    return save_quantities(datasets, path, names=_RISK_NAMES, title=title)
