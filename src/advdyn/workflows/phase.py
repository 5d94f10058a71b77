"""Phase diagrams: the ODE over a grid of one or two config fields, as one batched solve.

[`phase_diagram`][advdyn.workflows.phase.phase_diagram] builds the run's instance and rule once,
substitutes each grid point's
values into their array leaves (``equinox.tree_at``), and solves every point with one
compiled program of the pure
[`advdyn.theory.ode.integrate_ode`][advdyn.theory.ode.integrate_ode]: points sorted by their
rate, stepped a small batch at a time under ``vmap`` (``jax.lax.map``), the batches split
over the local CPU devices (``jax.shard_map``), in calls of equal size; on the explicit
solver each point's records are read off the interpolant of one pass of steps
([`make_integrator(..., dense=True)`][advdyn.theory.make_integrator]), so records do not
cut steps. The optimum
([`advdyn.theory.stationary.optimum`][advdyn.theory.stationary.optimum]) depends on the
instance's fields only: it is solved once per distinct value of them, as one more batched
program. A point that diverges is a [`RESULTS`][advdyn.solution.RESULTS] code and NaN records,
never a failed study. `write_phase` writes the dataset and the figures; it is what
``advdyn phase`` calls.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from advdyn._version import __version__
from advdyn.config.build import data_problem, integrator_for, make_learning_rate
from advdyn.config.schema import Config
from advdyn.errors import ConfigError
from advdyn.io import write_json, write_netcdf
from advdyn.io.files import folder_lock
from advdyn.precision import float64
from advdyn.problem.instance import stream_key
from advdyn.simulate.data import integrate_data_sgd
from advdyn.simulate.hsgd import integrate_hsgd
from advdyn.simulate.sgd import integrate_sgd, time_grid
from advdyn.solution import RESULTS
from advdyn.theory.ode import integrate_ode
from advdyn.theory.rates import Polyak
from advdyn.theory.stationary import optimum
from advdyn.workflows.bins import plain_spectral_instances
from advdyn.workflows.memory import check_memory
from advdyn.workflows.run import check_data_spectrum

#: config fields that are array leaves of the built instance or rule: a grid over them is
#: one compiled, vmapped solve (``instance`` or ``lr`` attribute they set)
LEAF_FIELDS: dict[str, tuple[str, str]] = {
    "problem.epsilon": ("instance", "epsilon"),
    "problem.ridge": ("instance", "ridge"),
    "problem.task.noise": ("instance", "noise"),
    "lr.gamma": ("lr", "gamma"),
    "lr.gamma0": ("lr", "gamma0"),
    "lr.tau": ("lr", "tau"),
    "lr.beta": ("lr", "beta"),
    "lr.gamma_max": ("lr", "gamma_max"),
}

#: memory of the records of one compiled call (bytes), which bounds the chunk when none is
#: given
CHUNK_BYTES = 512 * 2**20
#: solver state (bytes) of the points stepped together by one ``vmap``: a batch whose state
#: stays in the CPU's cache steps several times faster per point than one that does not
#: (measurements: ``docs/benchmarks.md``, "Phase diagram as one batched solve")
BATCH_BYTES = 2 * 2**20
#: compiled calls the grid is cut into when no chunk is given (progress is reported per call)
PROGRESS_CALLS = 16

#: per-point quantities of the dataset (besides the records on ``time``)
POINT_VARIABLES = ("result", "steps", "adv_risk_opt", "final_adv_risk", "final_clean_risk",
                   "monotone_dist", "time_within")

#: the stochastic methods ``run.methods`` may add to a phase diagram (pure solvers)
STOCHASTIC = {"sgd": integrate_sgd, "hsgd": integrate_hsgd, "data_sgd": integrate_data_sgd}
#: per-point quantities of a stochastic method ``m``, named ``m_<quantity>``
STOCHASTIC_POINT_VARIABLES = ("result", "final_adv_risk", "final_clean_risk", "gap")


@dataclass
class PhaseResult:
    """What [`phase_diagram`][advdyn.workflows.phase.phase_diagram] produced.

    Attributes
    ----------
    dataset : xarray.Dataset
        Records on ``(fields..., time)`` and per-point quantities on ``(fields...)``.
    timings : dict
        Wall seconds: ``compile_s`` (tracing and compiling the optimum's and the ODE's
        batched programs, once each; once per solver where calls use two) and ``solve_s``
        (running them on every point); ``optimum_s`` (the optimum's share of both); and
        ``solve_cpu_s``, this process's CPU seconds while the ODE ran (all threads).
    files : dict of label to Path
        Written files (empty unless `write_phase` wrote them).
    """

    dataset: xr.Dataset
    timings: dict[str, float]
    files: dict[str, Path] = field(default_factory=dict)


def check_axes(config: Config, axes: Mapping[str, Sequence[float]]) -> dict[str, np.ndarray]:
    """The grid values as float64 arrays, each value validated as the config's field."""
    if not 1 <= len(axes) <= 2:
        raise ConfigError("phase", f"needs one or two fields, got {len(axes)}")
    out = {}
    for name, values in axes.items():
        if name == "problem.task.noise" and config.problem.data is not None:
            raise ConfigError(name, "a data problem's label noise is the residual noise of "
                              "its data (problem.data), which advdyn run uses: it cannot be "
                              "swept; sweep problem.epsilon, problem.ridge or the rule")
        if name not in LEAF_FIELDS:
            raise ConfigError(name, "cannot be swept in one batched solve; fields that can: "
                              + ", ".join(LEAF_FIELDS))
        grid = np.asarray(values, dtype=np.float64).reshape(-1)
        if grid.size == 0:
            raise ConfigError(name, "needs at least one value")
        for v in (grid.min(), grid.max()):  # the config's own checks (bounds are monotone)
            config.with_overrides(**{name: float(v)})
        out[name] = grid
    if any(f.startswith("lr.") and f.split(".")[1] not in type(config.lr).model_fields
           for f in out):
        bad = next(f for f in out if f.startswith("lr.")
                   and f.split(".")[1] not in type(config.lr).model_fields)
        raise ConfigError(bad, f"is not a field of the rule kind = {config.lr.kind!r}")
    return out


def check_phase(config: Config, axes: Mapping[str, Sequence[float]],
                factor: float) -> dict[str, np.ndarray]:
    """Every check of a phase diagram that needs no solve: the grid (`check_axes`), the
    factor, the memory of one point's run
    ([`check_memory`][advdyn.workflows.memory.check_memory], as ``advdyn run``), and for a
    data problem what its spectrum can run (the data are read, cached).

    Raises
    ------
    ConfigError
        As [`phase_diagram`][advdyn.workflows.phase.phase_diagram] says.
    """
    grids = check_axes(config, axes)
    if not factor > 1:
        raise ConfigError("phase.factor", f"must be > 1, got {factor:g}")
    check_memory(config)
    if config.problem.data is not None:
        dp = data_problem(config.problem)
        check_data_spectrum(config, dp)
        if dp.binned and "data_sgd" in config.run.methods and config.lr.kind in (
                "polyak", "line_search"):
            raise ConfigError("lr.kind", "Polyak and line-search rates read the surrogate's "
                              "statistics of the iterate, which a binned spectrum does not "
                              "give for data_sgd on the rows; use a constant or decaying "
                              "rate, or problem.data.spectrum = 'dense'")
    return grids


def _substitute(obj, attr: str, value):
    return eqx.tree_at(lambda o: getattr(o, attr), obj, value)


@float64
def phase_diagram(
    config: Config,
    axes: Mapping[str, Sequence[float]],
    *,
    factor: float = 1.1,
    chunk: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> PhaseResult:
    """The ODE of ``config`` on the grid of ``axes``, solved as one batched, compiled solve.

    Parameters
    ----------
    config : Config
        The run config every point starts from; its ODE settings (``run.bins``,
        ``run.t_max``, ``run.n_times``, ``run.rtol``, ``run.atol``, ``run.solver``,
        ``run.divergence_factor``) apply. With ``run.bins`` the binned ODE runs (bins built
        without the relaxed coarsening, which would depend on the rate). ``run.solver =
        "auto"`` chooses per call, from the call's stiffest point (calls hold points of
        similar rates). Calls on the explicit Tsit5 read their records off its interpolant
        in one pass of steps
        ([`make_integrator(..., dense=True)`][advdyn.theory.make_integrator]): they
        agree with [`solve_ode`][advdyn.theory.ode.solve_ode]'s record-to-record solve to
        the tolerance, not to rounding.
    axes : mapping of str to sequence of float
        One or two dotted config fields of `LEAF_FIELDS` and their values; the
        dataset's dimensions, in this order.
    factor : float
        ``time_within`` is the first recorded time at which ``adv_risk`` is within this
        factor of the optimum's ``adv_risk_opt`` (NaN if never).
    chunk : int, optional
        Grid points per compiled call, the unit of ``progress`` (default: a
        `PROGRESS_CALLS`-th of the grid, at most what `CHUNK_BYTES` of records holds).
        Within a call, batches of at most `BATCH_BYTES` of solver state are stepped
        together, split over the local devices; a point's solve does not depend on the
        batch, the call or the device (to rounding).
    progress : callable, optional
        ``progress(advance, total)`` in grid points.

    Returns
    -------
    PhaseResult
        Dataset variables: the ODE records (``adv_risk``, ``clean_risk``, ``dist_to_opt``,
        ...) on ``(fields..., time)``; ``result`` ([`RESULTS`][advdyn.solution.RESULTS] code),
        ``steps``, ``adv_risk_opt`` (the optimum's adversarial risk), ``final_adv_risk``,
        ``final_clean_risk``, ``monotone_dist`` (1 when ``dist_to_opt`` never increases
        between records, beyond ``1e-9`` of its largest value; NaN for a failed point) and
        ``time_within`` on ``(fields...)``. For each of ``"sgd"``, ``"hsgd"``, ``"data_sgd"`` in
        ``run.methods`` (the ODE always runs), its replicates on every point as one more
        batched solve (see `stochastic_diagram`): ``<m>_<record>`` on ``(fields...,
        replicate, time)`` and ``<m>_result``, ``<m>_final_adv_risk``,
        ``<m>_final_clean_risk`` (replicate means) and ``<m>_gap`` (relative gap of that
        mean to the ODE's ``final_adv_risk``) on ``(fields...)``; ``timings`` then also
        holds ``<m>_compile_s`` and ``<m>_solve_s``. ``attrs``: ``solver`` (the
        integrators the calls used, comma-separated), ``chunk``, ``batch`` and ``devices``
        (`Batching`), ``factor``, ``fields``, ``methods``, ``config``;
        ``attrs["surrogate"]`` is 1 for a data problem: SGD and HSGD then run on its
        Gaussian surrogate, ``data_sgd`` on its rows (its records measured on the rows, as
        in ``advdyn run``), and ``attrs["spectrum"]`` says how its spectrum was obtained
        (``"dense"`` or ``"binned (Lanczos, ...)"``); on a binned one the ODE runs on the
        quadrature's nodes and ``data_sgd`` records what the rows and the iterate give
        (risks measured on the rows, ``norm``, ``overlap``, ``lr``; no ``dist_to_opt``);
        ``sgd`` and ``hsgd`` are refused there.

    Raises
    ------
    ConfigError
        A field that cannot be swept (``problem.task.noise`` on a data problem, whose noise
        the data fix), a value the config refuses, more than two fields, a method a binned
        data spectrum cannot run (``run.methods``), or a rate that reads the iterate's
        statistics with ``data_sgd`` on a binned data spectrum (``lr.kind``).
    """
    return _phase_diagram(config, check_phase(config, axes, factor), factor=factor,
                          chunk=chunk, progress=progress)


@float64
def _phase_diagram(config: Config, grids: dict[str, np.ndarray], *, factor: float,
                   chunk: int | None, progress: Callable[[int, int], None] | None
                   ) -> PhaseResult:
    """`phase_diagram` on grids that `check_phase` has already checked."""
    rc = config.run
    stochastic = [m for m in rc.methods if m in STOCHASTIC]
    if progress is not None and stochastic:  # one bar over every batched solve
        report, solves = progress, 1 + len(stochastic)
        progress = lambda advance, total: report(advance, total * solves)  # noqa: E731
    dp = data_problem(config.problem) if config.problem.data is not None else None
    if dp is not None and dp.binned:  # the ODE on the quadrature's nodes (no eigenbasis)
        instance, binned = None, dp.instance
    else:
        instance, binned = plain_spectral_instances(config)
    inst = binned if binned is not None else instance
    base_opt = optimum(inst)
    lr = make_learning_rate(config.lr, inst, optimum=base_opt)
    times = time_grid(config.problem.d, rc.t_max, rc.n_times, rc.block_size).times
    names = list(grids)
    mesh = np.meshgrid(*grids.values(), indexing="ij")
    flat = np.stack([m.reshape(-1) for m in mesh], axis=-1)  # (points, fields)
    n_points = flat.shape[0]

    def build(values):
        return _at_point(names, inst, lr, values)

    blowup = jnp.asarray(rc.divergence_factor, jnp.float64)
    t_dev = jnp.asarray(times)
    inst_cols = [k for k, name in enumerate(names) if LEAF_FIELDS[name][0] == "instance"]

    def solve_point(integrator, values, index, optima):
        i, r = build(values)
        opt = jax.tree.map(lambda a: a[index], optima)
        if isinstance(r, Polyak):  # its minimum objective follows the point's optimum
            r = _substitute(r, "min_objective", opt.objective)
        sol = integrate_ode(i, r, t_dev, integrator, optimum=opt, divergence_factor=blowup,
                            throw=False)
        ys = sol.ys
        adv_opt = opt.adv_risk
        dist = ys["dist_to_opt"]
        ok = sol.result == RESULTS.successful
        rise = jnp.max(jnp.diff(dist)) <= 1e-9 * jnp.max(jnp.abs(dist))
        within = ys["adv_risk"] <= factor * adv_opt
        first = jnp.argmax(within)
        t_within = jnp.where(jnp.any(within) & ok, t_dev[first], jnp.nan)
        per_point = {
            "result": sol.result,
            "steps": sol.steps,
            "adv_risk_opt": adv_opt,
            "final_adv_risk": ys["adv_risk"][-1],
            "final_clean_risk": ys["clean_risk"][-1],
            "monotone_dist": jnp.where(ok, rise.astype(jnp.float64), jnp.nan),
            "time_within": t_within,
        }
        return ys, per_point

    # a batched adaptive solve takes, on every recording interval, the steps of the slowest
    # point of its batch: points sorted by their rate parameters (which set the stiffness),
    # then by the other fields, make neighbours in a batch alike
    rate_cols = [k for k in range(len(names)) if k not in inst_cols]
    order = np.lexsort([flat[:, k] for k in (rate_cols + inst_cols)[::-1]])
    ordered = flat[order]
    plan = plan_batching(inst, len(times), n_points, chunk)
    pad = (-n_points) % plan.call
    padded = np.concatenate([ordered, np.repeat(ordered[-1:], pad, axis=0)]) if pad else ordered

    # the optimum depends on the instance's fields only: one per distinct value of them
    if inst_cols:
        rows, index = np.unique(padded[:, inst_cols], axis=0, return_inverse=True)
    else:
        rows, index = np.zeros((1, 0)), np.zeros(padded.shape[0], np.int64)
    optima, compile_s, solve_s = _optima(inst, [names[k] for k in inst_cols], rows, plan.batch)
    optimum_s = compile_s + solve_s
    solve_cpu_s = 0.0
    index = index.reshape(-1).astype(np.int64)
    programs: dict[str, Any] = {}
    solvers = []
    parts = []
    for lo in range(0, padded.shape[0], plan.call):
        block = padded[lo:lo + plan.call]
        # the integrator of the block's stiffest point: the largest value of every field
        stiffest, stiffest_rate = build(jnp.asarray(block.max(axis=0)))
        integrator = integrator_for(rc, stiffest, stiffest_rate, times)
        if integrator.name == "tsit5":  # records off the interpolant: no step cut at a record
            integrator = dataclasses.replace(integrator, dense=True)
        if integrator.name not in solvers:
            solvers.append(integrator.name)
        args = (jnp.asarray(block), jnp.asarray(index[lo:lo + plan.call]), optima)
        if integrator.name not in programs:
            start = time.perf_counter()
            fn = sharded_rows(functools.partial(solve_point, integrator), plan)
            programs[integrator.name] = fn.lower(*args).compile()
            compile_s += time.perf_counter() - start
        start, cpu = time.perf_counter(), time.process_time()
        out = programs[integrator.name](*args)
        parts.append(jax.tree.map(np.asarray, out))
        solve_s += time.perf_counter() - start
        solve_cpu_s += time.process_time() - cpu
        if progress is not None:
            progress(min(plan.call, n_points - lo), n_points)
    inverse = np.argsort(order)
    ys, per_point = jax.tree.map(lambda *a: np.concatenate(a)[:n_points][inverse], *parts)
    shape = tuple(len(g) for g in grids.values())
    coords = {name: (name, g) for name, g in grids.items()}
    data = {k: ([*names, "time"], v.reshape(*shape, -1)) for k, v in ys.items()}
    data.update({k: (names, v.reshape(shape)) for k, v in per_point.items()})
    ds = xr.Dataset(data, coords={**coords, "time": ("time", np.asarray(times))})
    ds["result"].attrs["meaning"] = ", ".join(f"{r.value} = {r.name}" for r in RESULTS)
    ds["monotone_dist"].attrs["meaning"] = "1 if dist_to_opt never increases between records"
    ds["time_within"].attrs["meaning"] = f"first time with adv_risk <= {factor:g} adv_risk_opt"
    ds.attrs.update({
        "config": config.to_json(), "advdyn_version": __version__, "fields": names,
        "factor": factor, "solver": ",".join(solvers), "method": "ode",
        "binned": int(binned is not None), "chunk": plan.call, "batch": plan.batch,
        "devices": plan.devices,
        "surrogate": int(config.problem.data is not None),  # SGD/HSGD on the data's surrogate
    })
    if dp is not None:  # how the surrogate's spectrum was obtained
        ds.attrs["spectrum"] = dp.diagnostics["spectrum"]
    timings = {"compile_s": compile_s, "solve_s": solve_s, "points": float(n_points),
               "optimum_s": optimum_s, "solve_cpu_s": solve_cpu_s}
    for method in stochastic:
        # the ODE's optima are the per-direction instance's unless the ODE ran binned; on a
        # binned data spectrum data_sgd steps with the rows' instance (no eigenbasis)
        rows_instance = dp.rows_instance if dp is not None and dp.binned else None
        extra, spent = stochastic_diagram(config, method, names, flat,
                                          instance if rows_instance is None else rows_instance,
                                          chunk=chunk,
                                          progress=progress,
                                          optima=optima if binned is None else None)
        ds = ds.assign({k: (dims, v.reshape(*shape, *v.shape[1:]))
                        for k, (dims, v) in extra.items()})
        ds[f"{method}_gap"] = (np.abs(ds[f"{method}_final_adv_risk"] - ds["final_adv_risk"])
                               / ds["final_adv_risk"])
        ds[f"{method}_gap"].attrs["meaning"] = (
            f"|mean {method} final adv_risk - ODE final_adv_risk| / ODE final_adv_risk")
        ds[f"{method}_result"].attrs["meaning"] = ds["result"].attrs["meaning"]
        timings.update({f"{method}_{k}": v for k, v in spent.items()})
    ds.attrs["methods"] = ["ode", *stochastic]
    if stochastic:
        ds = ds.assign_coords(replicate=np.arange(rc.replicates))
    return PhaseResult(ds, timings)


def _at_point(names: Sequence[str], instance, lr, values):
    """``instance`` and ``lr`` with the swept fields ``names`` set to ``values``."""
    for k, name in enumerate(names):
        where, attr = LEAF_FIELDS[name]
        if where == "instance":
            instance = _substitute(instance, attr, values[k])
        else:
            lr = _substitute(lr, attr, values[k])
    return instance, lr


def stochastic_diagram(
    config: Config,
    method: str,
    names: Sequence[str],
    points: np.ndarray,
    instance,
    *,
    chunk: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    optima: Any = None,
) -> tuple[dict[str, tuple[list[str], np.ndarray]], dict[str, float]]:
    """SGD or the homogenized SGD on every grid point: replicates x points as one
    ``jax.jit(jax.vmap(...))`` of the pure [`integrate_sgd`][advdyn.simulate.integrate_sgd]
    or [`integrate_hsgd`][advdyn.simulate.integrate_hsgd], in chunks of equal size.

    Every point runs ``run.replicates`` replicates of the per-direction ``instance`` from the
    seed's stream (the same streams at every point, as ``advdyn run`` draws them) on the
    ODE's recording grid, in ``run.dtype``, with ``run.divergence_factor``; a diverging
    point is a [`RESULTS`][advdyn.solution.RESULTS] code and NaN records.

    Parameters
    ----------
    config : Config
        The run config of the diagram.
    method : {"sgd", "hsgd", "data_sgd"}
    names : sequence of str
        The swept fields (`LEAF_FIELDS`).
    points : ndarray, shape (P, len(names))
        The grid points.
    instance : ProblemInstance
        The per-direction instance of ``config`` (for ``data_sgd`` on a binned data
        spectrum: its rows instance, ``DataProblem.rows_instance``).
    chunk : int, optional
        Points per batched solve (default: what `CHUNK_BYTES` holds).
    progress : callable, optional
        ``progress(advance, total)`` in grid points.
    optima : AdversarialOptimum, optional
        The optima of ``instance`` at the distinct values of the instance fields of
        ``points`` (leading axis: those values in ``numpy.unique`` order), when already
        solved (`phase_diagram`'s ODE); solved here otherwise.

    Returns
    -------
    variables : dict of str to (dims, ndarray)
        ``<method>_<record>`` of shape ``(P, replicate, time)`` and ``<method>_result``,
        ``<method>_final_adv_risk``, ``<method>_final_clean_risk`` of shape ``(P,)``
        (dimensions named after ``names``, which the caller reshapes into).
    timings : dict
        ``compile_s`` and ``solve_s`` (wall seconds; the optima of the grid's instance
        values, solved once per distinct value, included).
    """
    rc = config.run
    grid = time_grid(instance.d, rc.t_max, rc.n_times, rc.block_size)
    key = stream_key(config.problem.seed)
    blowup = jnp.asarray(rc.divergence_factor, jnp.float64)
    solve = STOCHASTIC[method]
    # data_sgd: the rows (in the eigenbasis of ``instance``, or the original basis of a
    # binned spectrum's rows instance), an argument of the batched solve shared by every
    # point (not a constant of the program)
    data = None
    measured_only = False
    if method == "data_sgd":
        dp = data_problem(config.problem)
        # the table as it is (integrate_data_sgd casts the rows it samples to run.dtype)
        data = {"rows": jnp.asarray(dp.rows), "targets": jnp.asarray(dp.targets)}
        measured_only = dp.binned
    # a binned data spectrum's rows instance has no eigenvalues: no optimum (the rates it
    # runs, check_phase says, need none)
    base_opt = None if measured_only else optimum(instance)
    lr = make_learning_rate(config.lr, instance, optimum=base_opt)
    extra_args = {"measured_only": True} if measured_only else {}

    # the optimum depends on the instance's fields only: solved once per distinct value of
    # them (once for a grid over the rule alone), outside the points' batched solve
    n_points = points.shape[0]
    inst_cols = [k for k, name in enumerate(names) if LEAF_FIELDS[name][0] == "instance"]
    compile_s = solve_s = 0.0
    if measured_only:
        index, optima = np.zeros(n_points, np.int64), None
    elif inst_cols:
        rows, index = np.unique(points[:, inst_cols], axis=0, return_inverse=True)
        if optima is None:
            batch = plan_batching(instance, rc.n_times, rows.shape[0], None).batch
            optima, compile_s, solve_s = _optima(instance, [names[k] for k in inst_cols],
                                                 rows, batch)
    else:
        index = np.zeros(n_points, np.int64)
        optima = jax.tree.map(lambda a: a[None], base_opt)
    index = index.reshape(-1).astype(np.int64)

    def point(values, index, optima, data):
        i, r = _at_point(names, instance, lr, values)
        opt = None if optima is None else jax.tree.map(lambda a: a[index], optima)
        if isinstance(r, Polyak):  # its minimum objective follows the point's optimum
            r = _substitute(r, "min_objective", opt.objective)
        sol = solve(i, r, key, grid, replicates=rc.replicates, dtype=rc.dtype,
                    divergence_factor=blowup, optimum=opt, throw=False, **(data or {}),
                    **extra_args)
        final = {k: jnp.mean(sol.ys[k][:, -1]) for k in ("adv_risk", "clean_risk")}
        return sol.ys, {"result": sol.result, "final_adv_risk": final["adv_risk"],
                        "final_clean_risk": final["clean_risk"]}

    if chunk is None:  # the iterates, a sampling block of each replicate, the records
        per_point = 8 * rc.replicates * (instance.d * (2 * grid.block + 16) + 32 * rc.n_times)
        if data is not None:  # a replicate's predictions on every row at a record
            per_point += 16 * data["rows"].shape[0]
        chunk = max(1, min(n_points, CHUNK_BYTES // per_point))
    size = -(-n_points // -(-n_points // max(1, min(chunk, n_points))))
    pad = (-n_points) % size
    padded = np.concatenate([points, np.repeat(points[-1:], pad, axis=0)]) if pad else points
    index = np.concatenate([index, np.repeat(index[-1:], pad)]) if pad else index
    start = time.perf_counter()
    compiled = jax.jit(jax.vmap(point, in_axes=(0, 0, None, None))).lower(
        jnp.asarray(padded[:size]), jnp.asarray(index[:size]), optima, data).compile()
    compile_s += time.perf_counter() - start
    start = time.perf_counter()
    parts = []
    for lo in range(0, padded.shape[0], size):
        parts.append(jax.tree.map(np.asarray, compiled(
            jnp.asarray(padded[lo:lo + size]), jnp.asarray(index[lo:lo + size]), optima, data)))
        if progress is not None:
            progress(min(size, n_points - lo), n_points)
    solve_s += time.perf_counter() - start
    ys, per_point = jax.tree.map(lambda *a: np.concatenate(a)[:n_points], *parts)
    dims = list(names)
    out = {f"{method}_{k}": ([*dims, "replicate", "time"], v) for k, v in ys.items()}
    out.update({f"{method}_{k}": (dims, v) for k, v in per_point.items()})
    return out, {"compile_s": compile_s, "solve_s": solve_s}


class Batching(NamedTuple):
    """How the grid's points are cut for the batched ODE solve (`plan_batching`).

    Attributes
    ----------
    batch : int
        Points stepped together by one ``vmap`` (``jax.lax.map(..., batch_size=batch)``).
    call : int
        Points per compiled call (a multiple of ``batch * devices``): the unit of progress.
    devices : int
        CPU devices the call's points are split over (``jax.shard_map``), 1 for none.
    mesh : jax.sharding.Mesh or None
        The 1-d mesh ``("point",)`` over those devices, ``None`` for one.
    """

    batch: int
    call: int
    devices: int
    mesh: Any


def loop_kernels(loop_bytes: int, flags: str | None = None) -> bool:
    """Whether XLA compiles a while loop that accesses ``loop_bytes`` into one kernel here.

    True on the CPU backend when ``XLA_FLAGS`` sets XLA's
    ``xla_cpu_small_while_loop_byte_threshold`` above ``loop_bytes`` (``advdyn phase``
    does, `advdyn.cli.xla_flags`; XLA's default, 1 kB, is below any ODE's loop). A loop of
    one point then steps faster than a ``vmap`` of several, which steps every point until
    its slowest is done.

    Parameters
    ----------
    loop_bytes : int
        The loop's memory footprint (bytes).
    flags : str, optional
        ``XLA_FLAGS`` (default: this process's environment).

    Returns
    -------
    bool
    """
    flags = os.environ.get("XLA_FLAGS", "") if flags is None else flags
    found = re.findall(r"xla_cpu_small_while_loop_byte_threshold=(\d+)", flags)
    return bool(found) and int(found[-1]) > loop_bytes and jax.default_backend() == "cpu"


def plan_batching(instance, n_times: int, n_points: int, chunk: int | None) -> Batching:
    """How `phase_diagram` cuts ``n_points`` ODE solves of ``instance``: batches of at most
    `BATCH_BYTES` of solver state (one point when XLA compiles each point's loop into one
    kernel, `loop_kernels`), split over the local devices, in calls of at most
    ``chunk`` points (default: a `PROGRESS_CALLS`-th of the grid, at most what
    `CHUNK_BYTES` of records holds).

    Parameters
    ----------
    instance : AbstractInstance
        The problem whose ODE state sizes a point.
    n_times : int
        Records per solve.
    n_points : int
        Grid points.
    chunk : int or None
        Largest call (points); fewer than the devices: one device.

    Returns
    -------
    Batching
    """
    state = sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(
        eqx.filter_eval_shape(instance.initial_state)))
    # the solver's stages and controller copies of the state, the records, the instance
    per_point = 8 * (64 * state + 32 * n_times + 4 * state)
    devices = len(jax.local_devices())
    if chunk is not None and chunk < devices:
        devices = 1
    if loop_kernels(per_point):  # one kernel per point's loop: no batch's slowest to wait for
        batch = 1
    else:
        batch = max(1, min(BATCH_BYTES // per_point, -(-n_points // devices)))
    if chunk is not None:
        batch = min(batch, chunk // devices)
    unit = batch * devices
    if chunk is None:
        chunk = min(-(-n_points // PROGRESS_CALLS), CHUNK_BYTES // (8 * 32 * n_times))
    calls = -(-n_points // max(unit, chunk - chunk % unit))
    call = -(-n_points // calls // unit) * unit  # equal calls, the least padding
    mesh = (jax.sharding.Mesh(np.asarray(jax.local_devices()[:devices]), ("point",))
            if devices > 1 else None)
    return Batching(batch, call, devices, mesh)


def sharded_rows(fn: Callable, plan: Batching):
    """``jax.jit`` of ``fn`` over the rows of its first two arguments (the third is shared):
    `Batching.batch` rows at a time under ``vmap`` (``jax.lax.map``), the rows split over
    the plan's devices (``jax.shard_map``; a point's solve is the same on any device).

    Parameters
    ----------
    fn : callable
        ``fn(values_row, index_row, shared)``, pure JAX, for one row.
    plan : Batching
        The batch size, devices and mesh (`plan_batching`); the rows of a call must be a
        multiple of ``plan.batch * plan.devices``.

    Returns
    -------
    callable
        ``(values, index, shared) -> outputs`` stacked over the rows.
    """

    def local(values, index, shared):
        return jax.lax.map(lambda row: fn(row[0], row[1], shared), (values, index),
                           batch_size=plan.batch)

    if plan.mesh is None:
        return jax.jit(local)
    rows, whole = jax.sharding.PartitionSpec("point"), jax.sharding.PartitionSpec()
    return jax.jit(jax.shard_map(local, mesh=plan.mesh, in_specs=(rows, rows, whole),
                                 out_specs=rows, check_vma=False))


def _optima(instance, names: Sequence[str], rows: np.ndarray, batch: int):
    """The optimum of ``instance`` with the fields ``names`` set to each row of ``rows``
    (one program, at most `batch` rows per ``vmap``, no padding: one solve per row);
    ``(optima, compile_s, solve_s)``."""
    values = jnp.asarray(rows)
    batch = max(1, min(batch, rows.shape[0]))

    def point(row):
        i = instance
        for k, name in enumerate(names):
            i = _substitute(i, LEAF_FIELDS[name][1], row[k])
        return optimum(i)

    start = time.perf_counter()
    # (the optimum's linear solves do not go through shard_map: on the default device)
    program = jax.jit(lambda v: jax.lax.map(point, v, batch_size=batch)).lower(values).compile()
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    optima = jax.block_until_ready(program(values))
    return optima, compile_s, time.perf_counter() - start


# every file a phase study writes
PHASE_FILES = ("phase.nc", "phase.png", "phase.json")


def write_phase(config, out_dir: str | Path, *, progress=None, on_start=None) -> PhaseResult:
    """Solve the phase diagram of a `PhaseConfig` and write
    ``phase.nc``, ``phase.png`` and ``phase.json`` (last) into ``out_dir``, atomically.

    ``on_start()``, when given, is called once the grid and the output folder have been
    checked (and the folder is held), before any computation: a command's status line goes
    there, so that a refusal is the only line it prints.

    Raises
    ------
    ConfigError
        An invalid grid, a data set that cannot be read
        (before ``on_start``), ``out_dir`` naming a file, or another command writing there
        (field ``out``).
    """
    from advdyn.plot.phase_diagram import save_phase_figure

    ph = config.phase
    axes = {ph.x.field: ph.x.grid()}
    if ph.y is not None:
        axes[ph.y.field] = ph.y.grid()
    run_config = config.run_config()
    out = Path(out_dir)
    with folder_lock(out, "advdyn phase"):
        # a bad grid or data file: its error is the only line (the data read once, cached);
        # the checked grids are solved as they are (no second check)
        grids = check_phase(run_config, axes, ph.factor)
        if on_start is not None:
            on_start()
        start = time.perf_counter()
        result = _phase_diagram(run_config, grids, factor=ph.factor, chunk=ph.chunk,
                                progress=progress)
        result.files["phase.nc"] = write_netcdf(result.dataset, out / "phase.nc")
        result.files["phase.png"] = save_phase_figure(result.dataset, out / "phase.png")
        ds = result.dataset
        codes = np.asarray(ds["result"]).reshape(-1)
        summary: dict[str, Any] = {
            "advdyn_version": __version__,
            "fields": list(axes),
            "points": int(codes.size),
            "results": {r.name: int(np.sum(codes == r.value)) for r in RESULTS},
            **{f"{m}_results": {r.name: int(np.sum(np.asarray(ds[f"{m}_result"]) == r.value))
                                for r in RESULTS} for m in ds.attrs["methods"][1:]},
            "wall_time_s": {**result.timings, "total_s": time.perf_counter() - start},
            "files": list(PHASE_FILES),
            "config": config.model_dump(mode="json"),
        }
        result.files["phase.json"] = write_json(summary, out / "phase.json")
    return result
