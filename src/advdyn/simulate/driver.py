"""The driver shared by the simulators (SGD and the homogenized SGD): grid, replicates,
records and divergence, as a pure solve and as the host run around it.

A simulator is a *block function* ``block_fn(theta, words, r, k0, n_valid, instance, lr,
block)`` that advances one replicate's ``(d,)`` iterate by the steps ``k0 .. k0 +
min(block, n_valid) - 1``, drawing step ``k`` of replicate ``r`` from the stream
``(words, r, k)`` of `advdyn.simulate.streams`. On top of it:

- [`integrate_replicates`][advdyn.simulate.driver.integrate_replicates] is the pure solve:
  one ``lax.scan`` over the recording intervals, each advancing every replicate
  (`advance`) and recording it (`record`). ``jit`` and ``vmap`` go through it (e.g. a
  ``vmap`` over ``instance.epsilon`` or the rate's ``gamma``: grid points x replicates in
  one compiled solve). A diverged run is data: a [`RESULTS`][advdyn.solution.RESULTS] code
  and NaN records from the divergent record on; ``throw=True`` raises through
  ``equinox.error_if``.
- [`run_replicates`][advdyn.simulate.driver.run_replicates] is the host run behind
  [`simulate_sgd`][advdyn.simulate.simulate_sgd] and
  [`simulate_hsgd`][advdyn.simulate.simulate_hsgd]: the same interval (the same compiled
  step and record functions), called once per record so that it can drive a progress bar,
  split the replicates over the local devices and stop at the first divergent record with a
  [`DivergenceError`][advdyn.errors.DivergenceError].

Both record the same numbers: replicate ``r`` runs the same computation on ``(d,)`` vectors
whatever the replicate count (``lax.map``, not a batched ``vmap``), and its stream depends on
the seed, ``r`` and the step only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from advdyn import checks
from advdyn.errors import DivergenceError
from advdyn.problem.instance import ProblemInstance
from advdyn.solution import RESULTS, Solution
from advdyn.theory.rates import AbstractLearningRate
from advdyn.theory.recording import Recorder, make_recorder
from advdyn.theory.stationary import StationaryPoint
from advdyn.theory.statistics import DirectionState
from advdyn.typing import Array

#: ``progress(advance, total)``: steps just taken, total steps of the run.
Progress = Callable[[int, int], None]
#: ``block_fn(theta, words, r, k0, n_valid, instance, lr, block) -> theta`` (module docstring)
BlockFn = Callable[..., Array]


class TimeGrid(NamedTuple):
    """Recording grid shared by SGD and the ODE.

    Attributes
    ----------
    times : ndarray
        Recording times ``k * stride / d``, ``k = 0..n_records``.
    stride : int
        SGD steps between records (a multiple of ``block``).
    block : int
        Steps whose samples are drawn at once.
    """

    times: np.ndarray
    stride: int
    block: int

    @property
    def steps(self) -> int:
        """Steps of the whole run."""
        return (len(self.times) - 1) * self.stride


def time_grid(d: int, t_max: float, n_times: int, block_size: int = 64) -> TimeGrid:
    """Recording grid on ``[0, t_max]`` aligned to whole SGD steps.

    Parameters
    ----------
    d : int
        Dimension (``t = k / d``).
    t_max : float
        Horizon; the grid never passes it.
    n_times : int
        Requested number of recording times, including ``t = 0``. When ``t_max * d`` is
        smaller than ``n_times - 1`` there is one record per step instead.
    block_size : int
        Largest number of steps whose samples are drawn at once. It only sets ``block``
        (a matter of speed and memory): the samples of a step never depend on it
        (`advdyn.simulate.streams`).

    Returns
    -------
    TimeGrid
        ``stride = floor(floor(t_max d) / (n_times - 1))`` steps between records, so that the
        last record is within ``n_times - 1`` steps below ``t_max``; ``stride`` is covered by
        ``ceil(stride / block_size)`` blocks of ``block`` steps (the last one padded).
    """
    total = max(1, int(np.floor(t_max * d * (1 + 1e-12))))
    n_records = max(1, min(n_times - 1, total))
    stride = total // n_records
    n_blocks = -(-stride // block_size)  # ceil
    block = -(-stride // n_blocks)
    return TimeGrid(np.arange(n_records + 1) * stride / d, stride, block)


def advance(block_fn: BlockFn, thetas, replicas, words, first_step, n_steps, instance, lr,
            n_blocks: int, block: int, mesh=None):
    """Run steps ``first_step .. first_step + n_steps - 1`` of ``block_fn`` on every replicate.

    Parameters
    ----------
    block_fn : callable
        The simulator's block function (module docstring).
    thetas : Array, shape (R, d)
        Iterates of the replicates.
    replicas : Array of uint32, shape (R,)
        Replicate indices ``r`` (their streams).
    words : Array
        Stream words (`advdyn.simulate.streams.stream_words`).
    first_step, n_steps : int or Array
        First step and number of steps (``n_blocks`` blocks of ``block`` cover them).
    instance, lr
        Problem and learning-rate rule.
    n_blocks, block : int
        Static: blocks run under ``lax.scan``, steps per block.
    mesh : jax.sharding.Mesh, optional
        A 1-d mesh over the replicate axis (host runs only), or ``None``.

    Returns
    -------
    Array, shape (R, d)
        The advanced iterates. Replicates run one after the other (``lax.map``) on each
        device: every replicate is the same computation on ``(d,)`` vectors whatever the
        replicate count or layout, so its result is bitwise the same (a batched ``vmap``
        would let XLA reorder the reductions with the batch size).
    """

    def replicate(args):
        theta, r = args

        def block_body(theta, b):
            offset = b * block
            return block_fn(theta, words, r, first_step + offset, n_steps - offset, instance,
                            lr, block), None

        theta, _ = jax.lax.scan(block_body, theta, jnp.arange(n_blocks))
        return theta

    def local(thetas, replicas):
        return jax.lax.map(replicate, (thetas, replicas))

    if mesh is None:
        return local(thetas, replicas)
    rows = jax.sharding.PartitionSpec("replicate")
    return jax.shard_map(local, mesh=mesh, in_specs=(rows, rows), out_specs=rows,
                         check_vma=False)(thetas, replicas)


def record(thetas, t, instance, lr, recorder: Recorder) -> dict[str, Array]:
    """Recorded quantities of every replicate's iterate at time ``t`` (all simulators).

    One replicate at a time (``lax.map``), so that a replicate's records do not depend on
    how many replicates there are (see `advance`). Returns arrays of shape ``(R,)``.
    """

    def one(theta):
        return recorder(t, DirectionState.from_iterate(theta, instance), instance, lr)

    return jax.lax.map(one, thetas)


def divergence_bound(instance: ProblemInstance, divergence_factor) -> Array:
    """``divergence_factor (|theta_0 - theta*|^2 + |theta*|^2 + 1)`` (float64), the bound on
    ``|theta - theta*|^2`` of every method (as in [`solve_ode`][advdyn.theory.solve_ode])."""
    f64 = jnp.float64
    teacher = jnp.asarray(instance.theta_star, f64)
    e0 = jnp.asarray(instance.theta0, f64) - teacher
    return jnp.asarray(divergence_factor, f64) * (
        jnp.sum(e0 * e0) + jnp.sum(teacher * teacher) + 1.0)


def diverged(rec: dict[str, Array], instance: ProblemInstance, bound) -> Array:
    """Whether records ``rec`` (arrays over replicates) are diverged: a replicate's
    ``|theta - theta*|^2 = |theta|^2 - 2 <theta, theta*> + |theta*|^2`` above ``bound``, or
    its ``adv_risk`` or that distance not finite (a boolean scalar).

    ``rec`` is the record a run keeps: the recorder's, or what a ``measure`` put in its
    place (``norm`` and ``overlap`` are the iterate's own, in any basis; ``adv_risk`` the
    measured one), so that divergence is judged on what is recorded, never on a quantity
    the run discards."""
    teacher = jnp.asarray(instance.theta_star, jnp.float64)
    dist2 = rec["norm"] ** 2 - 2 * rec["overlap"] + jnp.sum(teacher * teacher)
    finite = jnp.all(jnp.isfinite(rec["adv_risk"])) & jnp.all(jnp.isfinite(dist2))
    return ~finite | (jnp.max(dist2) > bound)


def _interval(block_fn: BlockFn, carry, j, words, times, stride: int, block: int,
              instance, lr, recorder: Recorder, bound, mesh=None, measure=None):
    """Record interval ``j`` (``1 ..``): advance every replicate from record ``j - 1`` to
    ``j``, record, check. ``carry = (thetas, code)``; after a failure the iterates stay at
    the last good ones and the records are NaN. ``measure(thetas, rec)``, when given,
    returns the record to keep, on which divergence is judged (`diverged`)."""
    thetas, code = carry
    n_blocks = -(-stride // block)
    replicas = jnp.arange(thetas.shape[0], dtype=jnp.uint32)
    first = ((j - 1) * stride).astype(jnp.int64)
    new = advance(block_fn, thetas, replicas, words, first, jnp.asarray(stride, jnp.int64),
                  instance, lr, n_blocks, block, mesh)
    rec = _kept(new, times[j], instance, lr, recorder, measure)
    ok = code == RESULTS.successful
    code = jnp.where(ok & diverged(rec, instance, bound), RESULTS.diverged, code)
    good = code == RESULTS.successful
    rec = jax.tree.map(lambda a: jnp.where(good, a, jnp.nan), rec)
    thetas = jnp.where(good, new, thetas)
    return (thetas, code.astype(jnp.int32)), rec


#: one record interval, compiled once per simulator and problem shape (the host run's step)
_interval_jit = eqx.filter_jit(_interval)


def _start(instance: ProblemInstance, replicates: int, dtype: str) -> Array:
    return jnp.broadcast_to(instance.theta0.astype(jnp.dtype(dtype)), (replicates, instance.d))


def _kept(thetas, t, instance, lr, recorder: Recorder, measure=None) -> dict[str, Array]:
    """The record a run keeps at time ``t``: the recorder's, or ``measure(thetas, rec)``."""
    rec = record(thetas, t, instance, lr, recorder)
    return rec if measure is None else measure(thetas, rec)


def _first(thetas, times, instance, lr, recorder: Recorder, bound, measure=None):
    """The records at ``times[0]`` and the code they give (NaN records if diverged)."""
    rec = _kept(thetas, times[0], instance, lr, recorder, measure)
    bad = diverged(rec, instance, bound)
    code = jnp.where(bad, RESULTS.diverged, RESULTS.successful).astype(jnp.int32)
    return jax.tree.map(lambda a: jnp.where(bad, jnp.nan, a), rec), code


_first_jit = eqx.filter_jit(_first)


def integrate_replicates(
    method: str,
    block_fn: BlockFn,
    instance: ProblemInstance,
    lr: AbstractLearningRate,
    words: Array,
    grid: TimeGrid,
    replicates: int,
    *,
    dtype: str = "float32",
    optimum: StationaryPoint | None = None,
    divergence_factor: float | Array = 1e6,
    throw: bool = True,
    stats: dict | None = None,
    measure: Callable[[Array, dict], dict] | None = None,
    record_optimum: bool = True,
) -> Solution:
    """Every replicate of a simulator over ``grid``, as a pure function: ``jit``, ``vmap``.

    Parameters
    ----------
    method : str
        ``Solution.method`` (``"sgd"``, ``"hsgd"``).
    block_fn : callable
        The simulator's block function (module docstring).
    instance : ProblemInstance
        Every replicate starts at ``instance.theta0``; its array leaves may be traced.
    lr : AbstractLearningRate
        Its array leaves may be traced.
    words : Array
        Stream words (`advdyn.simulate.streams.stream_words`).
    grid : TimeGrid
        Static recording grid ([`time_grid`][advdyn.simulate.driver.time_grid]).
    replicates : int
        Static number of replicates.
    dtype : {"float32", "float64"}
        Precision of the iterates.
    optimum : StationaryPoint, optional
        For ``dist_to_opt``; the pure [`optimum`][advdyn.theory.stationary.optimum] when
        omitted.
    divergence_factor : float or Array
        See [`divergence_bound`][advdyn.simulate.driver.divergence_bound].
    throw : bool
        Raise (``equinox.error_if``, also under ``jit``) when the run diverged. Under
        ``vmap`` one diverging element raises: pass ``False`` for failure as data.
    stats : dict, optional
        Entries for ``Solution.stats`` (static).
    measure : callable, optional
        ``measure(thetas, rec)`` returns the record to keep in place of the recorder's
        ``rec`` (e.g. risks measured on data rows, with ``norm`` and ``overlap``);
        divergence is judged on it (`diverged`).
    record_optimum : bool
        ``False``: no ``dist_to_opt`` and no optimum (``optimum`` is ignored), for an
        instance the theory cannot solve (a binned data problem's rows instance).

    Returns
    -------
    Solution
        ``ys`` of shape ``(replicate, time)`` (``(..., replicate, time)`` under ``vmap``),
        JAX arrays, NaN from the first divergent record on; ``result`` a
        [`RESULTS`][advdyn.solution.RESULTS] code; ``steps`` the steps taken per replicate.

    Raises
    ------
    ConfigError
        If ``replicates`` is not a positive integer or ``dtype`` is neither ``"float32"``
        nor ``"float64"`` (static Python values, checked before tracing).
    """
    from advdyn.theory.stationary import optimum as pure_optimum

    checks.integer(replicates, "replicates", 1)
    checks.dtype_name(dtype, "dtype")

    if not record_optimum:
        recorder = Recorder(None)
    else:
        recorder = make_recorder(instance, pure_optimum(instance) if optimum is None
                                 else optimum)
    bound = divergence_bound(instance, divergence_factor)
    times = jnp.asarray(grid.times, jnp.float64)
    thetas0 = _start(instance, replicates, dtype)
    first, code0 = _first(thetas0, times, instance, lr, recorder, bound, measure)

    def body(carry, j):
        return _interval(block_fn, carry, j, words, times, grid.stride, grid.block, instance,
                         lr, recorder, bound, measure=measure)

    (_, code), recs = jax.lax.scan(body, (thetas0, code0),
                                   jnp.arange(1, len(grid.times), dtype=jnp.int64))
    ys = jax.tree.map(lambda a, b: jnp.concatenate([a[:, None], b.T], axis=1), first, recs)
    # steps actually taken before the divergent interval
    n_good = jnp.sum(jnp.all(jnp.isfinite(ys["adv_risk"][:, 1:]), axis=0))
    steps = (n_good * grid.stride).astype(jnp.int64)
    if throw:
        ys = eqx.error_if(ys, code != RESULTS.successful,
                          f"{method} diverged (see Solution.result)")
    return Solution(times, ys, method, replicated=True, stats=dict(stats or {}), result=code,
                    steps=steps)


def run_replicates(
    method: str,
    block_fn: BlockFn,
    instance: ProblemInstance,
    lr: AbstractLearningRate,
    words: Array,
    replicates: int,
    *,
    t_max: float,
    n_times: int,
    dtype: str,
    block_size: int,
    divergence_factor: float,
    progress: Progress | None,
    optimum: StationaryPoint | None,
    attrs: dict | None,
    amend: Callable[[Array, dict], dict] | None = None,
    record_optimum: bool = True,
) -> Solution:
    """The host run of a simulator (behind [`simulate_sgd`][advdyn.simulate.simulate_sgd] and
    [`simulate_hsgd`][advdyn.simulate.simulate_hsgd]).

    The intervals of [`integrate_replicates`][advdyn.simulate.driver.integrate_replicates],
    one compiled call per record: the progress bar advances after each, the replicates are
    split over the local devices, and the run stops at the first divergent record.
    ``amend(thetas, rec)``, when given, returns the record to keep in place of the
    recorder's ``rec`` at each record (e.g. risks measured on data rows, with ``norm`` and
    ``overlap``); divergence is judged on it (`diverged`). It is an argument of the
    compiled interval: an ``equinox.Module`` (its arrays traced) compiles once per shape.
    ``record_optimum=False`` records no ``dist_to_opt`` (and computes no optimum).

    Returns
    -------
    Solution
        ``ys`` of shape ``(replicate, time)`` as NumPy arrays; ``stats`` holds
        ``replicates``, ``dtype``, ``block``, ``stride``, ``d``, ``steps``, ``devices`` and
        ``attrs``.

    Raises
    ------
    DivergenceError
        At the first record where the run diverged (see `diverged`).
    """
    grid = time_grid(instance.d, t_max, n_times, block_size)
    recorder = make_recorder(instance, optimum) if record_optimum else Recorder(None)
    bound = divergence_bound(instance, divergence_factor)
    mesh = _replicate_mesh(replicates)
    thetas = _start(instance, replicates, dtype)
    times = jax.device_put(np.asarray(grid.times, np.float64))
    first, code = _first_jit(thetas, times, instance, lr, recorder, bound, amend)
    records = [jax.tree.map(np.asarray, first)]
    carry = (thetas, code)
    j = 0
    failed = int(code) != RESULTS.successful
    for j in range(1, len(grid.times)):
        if failed:
            break
        carry, rec = _interval_jit(block_fn, carry, jnp.asarray(j, jnp.int64), words, times,
                                   grid.stride, grid.block, instance, lr, recorder, bound, mesh,
                                   amend)
        failed = int(carry[1]) != RESULTS.successful
        if not failed:
            records.append(jax.tree.map(np.asarray, rec))
            if progress is not None:
                progress(grid.stride, grid.steps)
    if failed:
        # the rate at the last good record (a state-dependent rule has none at a diverged
        # state)
        lr_now = float(np.max(records[-1]["lr"])) if j > 0 else float("nan")
        raise DivergenceError(
            method, float(grid.times[j]), lr_now,
            f"|theta - theta*|^2 exceeded {divergence_factor:g} times "
            "|theta_0 - theta*|^2 + |theta*|^2 + 1, or a risk was not finite",
        )
    stacked = {k: np.stack([r[k] for r in records], axis=1) for k in records[0]}
    info = {
        "replicates": replicates,
        "dtype": dtype,
        "block": grid.block,
        "stride": grid.stride,
        "d": instance.d,
        "steps": int(grid.steps),
        "devices": 1 if mesh is None else int(mesh.size),
    }
    return Solution(np.asarray(grid.times), stacked, method, replicated=True,
                    stats={**info, **(attrs or {})})


_advance_jit = eqx.filter_jit(advance)


def drive(block_fn: BlockFn, instance: ProblemInstance, lr: AbstractLearningRate, words: Array,
          replicates: int, *, t_max: float, n_times: int, dtype: str, block_size: int,
          visit) -> tuple[TimeGrid, int]:
    """Advance every replicate from ``theta_0`` over the step-aligned grid (no records, no
    divergence check).

    ``visit(j, thetas, grid)`` sees the iterates at record ``j`` (``j = 0`` is ``theta_0``);
    replicate ``r`` draws from the stream ``(words, r, k)`` of `advdyn.simulate.streams`
    whatever the grid, the block size or the devices. Returns the grid and the number of
    devices the replicates were split over.
    """
    grid = time_grid(instance.d, t_max, n_times, block_size)
    n_blocks = -(-grid.stride // grid.block)
    thetas = _start(instance, replicates, dtype)
    replicas = jnp.arange(replicates, dtype=jnp.uint32)
    mesh = _replicate_mesh(replicates)
    stride = jnp.asarray(grid.stride, jnp.int64)
    visit(0, thetas, grid)
    for j in range(1, len(grid.times)):
        first = jnp.asarray((j - 1) * grid.stride, jnp.int64)
        thetas = _advance_jit(block_fn, thetas, replicas, words, first, stride, instance, lr,
                              n_blocks, grid.block, mesh)
        visit(j, thetas, grid)
    return grid, 1 if mesh is None else int(mesh.size)


def _replicate_mesh(replicates: int):
    """A mesh splitting the replicates over the local CPU devices, or ``None``.

    The CLI asks XLA for one CPU device per core (``xla_force_host_platform_device_count``);
    replicates are independent, so each device advances its share with no communication,
    and a replicate's numbers do not depend on where it runs. With one device, or a
    replicate count that no device count above 1 divides, everything stays on the default
    device.
    """
    devices = jax.local_devices()
    n = min(len(devices), replicates)
    while n > 1 and replicates % n:
        n -= 1
    if n <= 1:
        return None
    return jax.sharding.Mesh(np.asarray(devices[:n]), ("replicate",))
