"""Phase diagrams: the ODE over a grid of one or two config fields, as one batched solve.

[`phase_diagram`][advdyn.workflows.phase.phase_diagram] builds the run's instance and rule once,
substitutes each grid point's
values into their array leaves (``equinox.tree_at``), and solves every point with
``jax.jit(jax.vmap(...))`` of the pure
[`advdyn.theory.ode.integrate_ode`][advdyn.theory.ode.integrate_ode] and
[`advdyn.theory.stationary.optimum`][advdyn.theory.stationary.optimum], in chunks of equal size (one
compilation) that fit
memory. A point that diverges is a [`RESULTS`][advdyn.solution.RESULTS] code and NaN records,
never a failed study. `write_phase` writes the dataset and the figures; it is what
``advdyn phase`` calls.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
from advdyn.workflows.bins import spectral_instances

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

#: memory per batched solve (bytes) that sets the chunk when none is given
CHUNK_BYTES = 512 * 2**20

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
        ``compile_s`` (tracing and compiling the batched solve, once) and ``solve_s`` (all
        chunks), wall seconds.
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
        without the relaxed coarsening, which would depend on the rate).
    axes : mapping of str to sequence of float
        One or two dotted config fields of `LEAF_FIELDS` and their values; the
        dataset's dimensions, in this order.
    factor : float
        ``time_within`` is the first recorded time at which ``adv_risk`` is within this
        factor of the optimum's ``adv_risk_opt`` (NaN if never).
    chunk : int, optional
        Grid points per batched solve (default: as many as `CHUNK_BYTES` allows).
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
        holds ``<m>_compile_s`` and ``<m>_solve_s``. ``attrs["surrogate"]`` is 1 for a data
        problem: SGD and HSGD then run on its Gaussian surrogate, ``data_sgd`` on its rows
        (its records measured on the rows, as in ``advdyn run``).

    Raises
    ------
    ConfigError
        A field that cannot be swept, a value the config refuses or more than two fields.
    """
    grids = check_axes(config, axes)
    if not factor > 1:
        raise ConfigError("phase.factor", f"must be > 1, got {factor:g}")
    rc = config.run
    stochastic = [m for m in rc.methods if m in STOCHASTIC]
    if progress is not None and stochastic:  # one bar over every batched solve
        report, solves = progress, 1 + len(stochastic)
        progress = lambda advance, total: report(advance, total * solves)  # noqa: E731
    base_config = config.with_overrides(**{"run.bins_relaxed": False}) if rc.bins else config
    instance, binned = spectral_instances(base_config)
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

    # the integrator of the stiffest point: the largest value of every field
    i_max, r_max = build(jnp.asarray(flat.max(axis=0)))
    integrator = integrator_for(rc, i_max, r_max, times)
    blowup = jnp.asarray(rc.divergence_factor, jnp.float64)
    t_dev = jnp.asarray(times)

    def point(values):
        i, r = build(values)
        opt = optimum(i)
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

    size = _chunk_size(inst, len(times), n_points, chunk)
    batched = jax.jit(jax.vmap(point))
    # a batched adaptive solve takes the steps of its slowest point: chunks of points sorted
    # by their rate parameters (which set the stiffness) waste fewer steps
    rate_cols = [k for k, name in enumerate(names) if LEAF_FIELDS[name][0] == "lr"]
    order = (np.lexsort([flat[:, k] for k in rate_cols[::-1]]) if rate_cols
             else np.arange(n_points))
    pad = (-n_points) % size
    ordered = flat[order]
    padded = np.concatenate([ordered, np.repeat(ordered[-1:], pad, axis=0)]) if pad else ordered

    start = time.perf_counter()
    compiled = batched.lower(jnp.asarray(padded[:size])).compile()
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    parts = []
    for lo in range(0, padded.shape[0], size):
        out = compiled(jnp.asarray(padded[lo:lo + size]))
        parts.append(jax.tree.map(np.asarray, out))
        if progress is not None:
            progress(min(size, n_points - lo), n_points)
    solve_s = time.perf_counter() - start
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
        "factor": factor, "solver": integrator.name, "method": "ode",
        "binned": int(binned is not None), "chunk": size,
        "surrogate": int(config.problem.data is not None),  # SGD/HSGD on the data's surrogate
    })
    timings = {"compile_s": compile_s, "solve_s": solve_s, "points": float(n_points)}
    for method in stochastic:
        extra, spent = stochastic_diagram(config, method, names, flat, instance, chunk=chunk,
                                          progress=progress)
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
        The per-direction instance of ``config``.
    chunk : int, optional
        Points per batched solve (default: what `CHUNK_BYTES` holds).
    progress : callable, optional
        ``progress(advance, total)`` in grid points.

    Returns
    -------
    variables : dict of str to (dims, ndarray)
        ``<method>_<record>`` of shape ``(P, replicate, time)`` and ``<method>_result``,
        ``<method>_final_adv_risk``, ``<method>_final_clean_risk`` of shape ``(P,)``
        (dimensions named after ``names``, which the caller reshapes into).
    timings : dict
        ``compile_s`` and ``solve_s`` (wall seconds).
    """
    rc = config.run
    grid = time_grid(instance.d, rc.t_max, rc.n_times, rc.block_size)
    base_opt = optimum(instance)
    lr = make_learning_rate(config.lr, instance, optimum=base_opt)
    key = stream_key(config.problem.seed)
    blowup = jnp.asarray(rc.divergence_factor, jnp.float64)
    solve = STOCHASTIC[method]
    # data_sgd: the rows (in the eigenbasis of ``instance``), an argument of the batched
    # solve shared by every point (not a constant of the program)
    data = None
    if method == "data_sgd":
        dp = data_problem(config.problem)
        data = {"rows": jnp.asarray(dp.rows.astype(rc.dtype)), "targets": jnp.asarray(dp.targets)}

    # a grid over the rule alone has one optimum: computed once, not per point
    rule_only = all(LEAF_FIELDS[name][0] == "lr" for name in names)

    def point(values, data):
        i, r = _at_point(names, instance, lr, values)
        opt = base_opt if rule_only else optimum(i)
        if isinstance(r, Polyak):  # its minimum objective follows the point's optimum
            r = _substitute(r, "min_objective", opt.objective)
        sol = solve(i, r, key, grid, replicates=rc.replicates, dtype=rc.dtype,
                    divergence_factor=blowup, optimum=opt, throw=False, **(data or {}))
        final = {k: jnp.mean(sol.ys[k][:, -1]) for k in ("adv_risk", "clean_risk")}
        return sol.ys, {"result": sol.result, "final_adv_risk": final["adv_risk"],
                        "final_clean_risk": final["clean_risk"]}

    n_points = points.shape[0]
    if chunk is None:  # the iterates, a sampling block of each replicate, the records
        per_point = 8 * rc.replicates * (instance.d * (2 * grid.block + 16) + 32 * rc.n_times)
        if data is not None:  # a replicate's predictions on every row at a record
            per_point += 16 * data["rows"].shape[0]
        chunk = max(1, min(n_points, CHUNK_BYTES // per_point))
    size = -(-n_points // -(-n_points // max(1, min(chunk, n_points))))
    pad = (-n_points) % size
    padded = np.concatenate([points, np.repeat(points[-1:], pad, axis=0)]) if pad else points
    start = time.perf_counter()
    compiled = jax.jit(jax.vmap(point, in_axes=(0, None))).lower(
        jnp.asarray(padded[:size]), data).compile()
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    parts = []
    for lo in range(0, padded.shape[0], size):
        parts.append(jax.tree.map(np.asarray, compiled(jnp.asarray(padded[lo:lo + size]), data)))
        if progress is not None:
            progress(min(size, n_points - lo), n_points)
    solve_s = time.perf_counter() - start
    ys, per_point = jax.tree.map(lambda *a: np.concatenate(a)[:n_points], *parts)
    dims = list(names)
    out = {f"{method}_{k}": ([*dims, "replicate", "time"], v) for k, v in ys.items()}
    out.update({f"{method}_{k}": (dims, v) for k, v in per_point.items()})
    return out, {"compile_s": compile_s, "solve_s": solve_s}


def _chunk_size(instance, n_times: int, n_points: int, chunk: int | None) -> int:
    """Points per batched solve: ``chunk``, or what `CHUNK_BYTES` holds."""
    if chunk is not None:
        return max(1, min(chunk, n_points))
    state = sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(instance.initial_state()))
    # the solver's stages and controller copies of the state, the records, the instance
    per_point = 8 * (64 * state + 32 * n_times + 4 * state)
    largest = max(1, min(n_points, CHUNK_BYTES // per_point))
    # chunks of equal size with the least padding
    return -(-n_points // -(-n_points // largest))


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
        if run_config.problem.data is not None:  # a bad data file: its error is the only line
            data_problem(run_config.problem)  # read once (cached for the solve)
        if on_start is not None:
            on_start()
        start = time.perf_counter()
        result = phase_diagram(run_config, axes, factor=ph.factor, chunk=ph.chunk,
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
