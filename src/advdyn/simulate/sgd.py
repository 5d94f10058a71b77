"""Streaming adversarial SGD in the eigenbasis (THEORY sections 2 and 3).

One fresh sample per step, ``theta <- theta - (gamma_t / d) grad``, with the exact
per-sample l2-adversarial gradient

    grad = L_r x + eps L_a theta/|theta| + delta theta

(``L_r``, ``L_a`` from the endpoint rule: closed forms for the built-in losses, autodiff
for custom ones). Replicates run batched under ``vmap``; steps run under ``lax.scan``.

Randomness: the sample of replicate ``r`` at step ``k`` is built from the Philox4x32-10
stream of `advdyn.simulate.streams` under the stream key, counter ``(j, k, r)``: it
depends on the seed, ``r``, ``k``, ``d`` and the dtype only, never on the recording grid
(``n_times``, ``t_max``), the number of replicates, the sampling block or the devices.
Recording more often, adding replicates or changing ``block_size`` therefore leaves every
trajectory unchanged bit for bit. Samples are drawn ``block`` steps at a time (a matter of
speed). Population quantities of the iterate are recorded every ``stride`` steps, never the
loss on the last sample. Replicates are split over the local devices when there are several
(the CLI asks XLA for one CPU device per core).

The driver (grid, records, divergence check, progress bar) is shared with the homogenized
SGD of `advdyn.simulate.hsgd`: `_simulate` takes a per-block step function, and
`_record` is the single place where every simulator turns iterates into recorded
quantities.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Float, Key

from advdyn import checks
from advdyn.errors import DivergenceError
from advdyn.precision import float64
from advdyn.problem.instance import ProblemInstance
from advdyn.simulate.streams import gaussian, step_scalars, stream_words
from advdyn.solution import Solution
from advdyn.theory.rates import AbstractLearningRate
from advdyn.theory.recording import make_recorder
from advdyn.theory.stationary import StationaryPoint
from advdyn.theory.statistics import DirectionState
from advdyn.typing import Array

#: ``progress(advance, total)``: steps just taken, total steps of the run.
Progress = Callable[[int, int], None]


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


def _draw_block(instance: ProblemInstance, words, r, ks, dtype):
    """Samples ``(x, y)`` of steps ``ks`` of replicate ``r``: shapes ``(block, d)``, ``(block,)``.

    ``x = mu_c + sqrt(lambda_c) z`` with ``z`` the step's Gaussians and, for a mixture, the
    class ``c`` from the step's uniform (inverse CDF of ``weights``); ``y = <x, theta*> +
    sigma xi`` (regression) or the class label (classification).
    """
    d, n_comp = instance.d, instance.n_components
    z = jax.vmap(lambda k: gaussian(words, r, k, d, dtype))(ks)
    sqrt_lam = jnp.sqrt(instance.eigenvalues).astype(dtype)
    means = instance.means.astype(dtype)
    need_scalars = n_comp > 1 or instance.task == "regression"
    if need_scalars:
        u, xi = jax.vmap(lambda k: step_scalars(words, r, k, dtype))(ks)
    if n_comp == 1:
        x = means[0] + sqrt_lam[0] * z
        cls = jnp.zeros(ks.shape, jnp.int32)
    else:
        edges = jnp.cumsum(jnp.asarray(instance.weights, jnp.float64))[:-1]
        cls = jnp.searchsorted(edges, u, side="right").astype(jnp.int32)
        x = means[cls] + sqrt_lam[cls] * z
    if instance.task == "regression":
        teacher = instance.theta_star.astype(dtype)
        y = jnp.sum(x * teacher, axis=-1) + instance.noise.astype(dtype) * xi
    else:
        y = instance.labels.astype(dtype)[cls]
    return x, y


def sgd_step(theta, x, y, gamma, instance: ProblemInstance):
    """One streaming SGD step on the l2-adversarial loss of one sample.

    Parameters
    ----------
    theta : Array, shape (d,)
    x : Array, shape (d,)
    y : scalar
    gamma : scalar
        Learning rate ``gamma_t`` (the step is ``gamma / d``).
    instance : ProblemInstance

    Returns
    -------
    Array
        The next iterate, in ``theta``'s dtype.
    """
    dtype = theta.dtype
    eps, ridge = instance.epsilon.astype(dtype), instance.ridge.astype(dtype)
    # reductions as sum(a * b), not a dot product: the order of a row's reduction then never
    # depends on how many replicates or steps are batched (bitwise-stable streams)
    r = jnp.sum(x * theta)
    n = jnp.sqrt(jnp.sum(theta * theta))
    _, L_r, L_a = instance.loss.adversarial(r, eps * n, y)
    # eps L_a theta/|theta| + delta theta, with the theta/|theta| term set to 0 at theta = 0
    shrink = jnp.where(n > 0, eps * L_a / jnp.where(n > 0, n, 1), 0) + ridge
    step = jnp.asarray(gamma / instance.d, dtype)
    return theta - step * (L_r * x + shrink * theta)


def _sgd_block(theta, words, r, k0, n_valid, instance: ProblemInstance, lr: AbstractLearningRate,
               block: int):
    """Advance one replicate by the steps ``k0 .. k0 + min(block, n_valid) - 1``."""
    dtype = theta.dtype
    d = instance.d
    offsets = jnp.arange(block)
    ks = k0 + offsets
    x, y = _draw_block(instance, words, r, ks, dtype)

    def step(theta, inputs):
        x_k, y_k, k, valid = inputs
        state = DirectionState.from_iterate(theta, instance) if lr.needs_state else None
        gamma = lr(k / d, state, instance)
        new = sgd_step(theta, x_k, y_k, gamma, instance)
        return jnp.where(valid, new, theta), None

    theta, _ = jax.lax.scan(step, theta, (x, y, ks, offsets < n_valid))
    return theta


@eqx.filter_jit
def _advance(block_fn, thetas, replicas, words, first_step, n_steps, instance, lr,
             n_blocks: int, block: int, mesh=None):
    """Run steps ``first_step .. first_step + n_steps - 1`` of ``block_fn`` on every replicate.

    ``block_fn(theta, words, r, k0, n_valid, instance, lr, block)`` advances replicate ``r``
    by the steps ``k0 ..`` of one block (at most ``n_valid`` of them), drawing each step's
    numbers from the stream ``(words, r, k)`` (`advdyn.simulate.streams`); the
    ``n_blocks`` blocks run under ``lax.scan``. Replicates run one after the other
    (``lax.map``) on each device of ``mesh`` (a 1-d mesh over the replicate axis, or
    ``None`` for the default device): every replicate is then the same compiled computation
    on ``(d,)`` vectors whatever the replicate count or layout, so its result is bitwise the
    same (a batched ``vmap`` would let XLA reorder the reductions with the batch size).
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


@eqx.filter_jit
def _record(thetas, t, instance, lr, recorder):
    """Recorded quantities of every replicate's iterate at time ``t`` (all simulators).

    One replicate at a time (``lax.map``), so that a replicate's records do not depend on
    how many replicates there are (see `_advance`).
    """

    def one(theta):
        return recorder(t, DirectionState.from_iterate(theta, instance), instance, lr)

    return jax.lax.map(one, thetas)


@float64
def simulate_sgd(
    instance: ProblemInstance,
    lr: AbstractLearningRate,
    key: Key[Array, ""],
    *,
    t_max: float,
    n_times: int = 51,
    replicates: int = 4,
    dtype: str = "float32",
    block_size: int = 64,
    divergence_factor: float = 1e6,
    progress: Progress | None = None,
    optimum: StationaryPoint | None = None,
    attrs: dict | None = None,
) -> Solution:
    """Run streaming adversarial SGD and record population quantities on a time grid.

    Parameters
    ----------
    instance : ProblemInstance
        All replicates start from ``instance.theta0`` on the same instance.
    lr : LearningRate
    key : jax.random key
        Stream key (see [`advdyn.problem.stream_key`][advdyn.problem.stream_key]); its two words key
        the Philox
        stream of `advdyn.simulate.streams`.
    t_max : float
        Horizon in units of ``t = k / d``.
    n_times : int
        Requested number of recording times (including ``t = 0``); see
        [`time_grid`][advdyn.simulate.sgd.time_grid].
    replicates : int
        Independent sample streams.
    dtype : {"float32", "float64"}
        Precision of the iterate and samples (statistics are always reduced to float64).
    block_size : int
        Maximum number of steps whose samples are drawn at once (speed and memory only;
        the draws do not depend on it).
    divergence_factor : float
        Stop when ``|theta - theta*|^2`` exceeds this factor times
        ``|theta_0 - theta*|^2 + |theta*|^2 + 1`` (the criterion of
        [`solve_ode`][advdyn.theory.solve_ode]), or a risk is not finite.
    progress : callable, optional
        ``progress(advance, total)`` is called after every recording interval with the steps
        just taken and the total number of steps (e.g. to drive a progress bar).
    optimum : StationaryPoint, optional
        The adversarial optimum for ``dist_to_opt`` (computed when omitted).
    attrs : dict, optional
        Extra entries for ``Solution.stats``.

    Returns
    -------
    Solution
        ``ys`` of shape ``(replicate, time)``: those of
        `Recorder`; ``stats`` holds ``replicates``,
        ``dtype``, ``block``, ``stride``, ``d`` and ``steps``.

    Raises
    ------
    DivergenceError
        If the risk becomes non-finite or exceeds the divergence threshold.
    """
    checks.simulation(instance.d, t_max, n_times, replicates, block_size, lr, key, dtype)
    return _simulate(
        "sgd", _sgd_block, instance, lr, stream_words(key), replicates, t_max=t_max,
        n_times=n_times, dtype=dtype, block_size=block_size,
        divergence_factor=divergence_factor, progress=progress, optimum=optimum,
        attrs={"stream": "philox4x32-10(key, (j, k, r)); advdyn.simulate.streams", **(attrs or {})},
    )


def _simulate(
    method: str,
    block_fn,
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
) -> Solution:
    """The driver shared by the simulators (SGD, homogenized SGD).

    Builds the step-aligned grid ([`time_grid`][advdyn.simulate.sgd.time_grid]), starts every
    replicate at
    ``instance.theta0`` in ``dtype``, advances them one recording interval at a time with
    ``block_fn`` (see `_advance`; replicate ``r`` draws from the stream
    ``(words, r, k)`` of `advdyn.simulate.streams`), records through
    `_record`, checks divergence at each record, drives the progress bar, and returns
    the ``(replicate, time)`` dataset with attribute ``method``.
    """
    recorder = make_recorder(instance, optimum)
    records: list[dict[str, Array]] = []
    # One meaning of divergence_factor for every method (as in theory.ode): the run stops when
    # |theta - theta*|^2 exceeds the factor times |theta_0 - theta*|^2 + |theta*|^2 + 1.
    # |theta - theta*|^2 = |theta|^2 - 2 <theta, theta*> + |theta*|^2 from the records.
    teacher2 = float(np.sum(np.asarray(instance.theta_star, np.float64) ** 2))
    e0 = np.asarray(instance.theta0, np.float64) - np.asarray(instance.theta_star, np.float64)
    threshold = divergence_factor * (float(e0 @ e0) + teacher2 + 1.0)

    def visit(j: int, thetas: Array, grid: TimeGrid) -> None:
        rec = _record(thetas, jnp.asarray(grid.times[j]), instance, lr, recorder)
        risk = np.asarray(rec["adv_risk"])
        dist2 = np.asarray(rec["norm"]) ** 2 - 2 * np.asarray(rec["overlap"]) + teacher2
        finite = np.all(np.isfinite(risk)) and np.all(np.isfinite(dist2))
        if not finite or dist2.max() > threshold:
            # the rate recorded at the divergence time, or the last finite one (a
            # state-dependent rule has none at a non-finite state)
            lr_now = float(np.asarray(rec["lr"]).max())
            if not np.isfinite(lr_now) and records:
                lr_now = float(np.asarray(records[-1]["lr"]).max())
            raise DivergenceError(
                method,
                float(grid.times[j]),
                lr_now,
                f"|theta - theta*|^2 reached {dist2.max():.3g} (started at {float(e0 @ e0):.3g}); "
                f"adversarial risk {risk.max():.3g}",
            )
        records.append(rec)
        if progress is not None and j > 0:
            progress(grid.stride, (len(grid.times) - 1) * grid.stride)

    grid, devices = _drive(block_fn, instance, lr, words, replicates, t_max=t_max,
                           n_times=n_times, dtype=dtype, block_size=block_size,
                           visit=visit)
    stacked = {k: np.stack([np.asarray(r[k]) for r in records], axis=1) for k in records[0]}
    info = {
        "replicates": replicates,
        "dtype": dtype,
        "block": grid.block,
        "stride": grid.stride,
        "d": instance.d,
        "steps": int((len(grid.times) - 1) * grid.stride),
        "devices": devices,
    }
    attrs = {**info, **(attrs or {})}
    return Solution(np.asarray(grid.times), stacked, method, replicated=True, stats=attrs)


@float64
def sgd_iterates(
    instance: ProblemInstance,
    lr: AbstractLearningRate,
    key: Key[Array, ""],
    *,
    t_max: float,
    n_times: int = 51,
    replicates: int = 4,
    dtype: str = "float32",
    block_size: int = 64,
) -> tuple[Float[np.ndarray, " T"], Float[np.ndarray, "R T d"]]:
    """The iterates themselves on the grid of [`simulate_sgd`][advdyn.simulate.sgd.simulate_sgd]
    (same sample streams).

    For statistics that are not direction sums, e.g. the per-direction variance over
    replicates (the posterior covariance of [`advdyn.posterior`][advdyn.posterior]). No divergence
    check.

    Parameters
    ----------
    instance, lr, key, t_max, n_times, replicates, dtype, block_size
        As in [`simulate_sgd`][advdyn.simulate.sgd.simulate_sgd]; the same arguments give the same
        trajectories.

    Returns
    -------
    times : ndarray, shape (T,)
        Recording times.
    thetas : ndarray, shape (replicates, T, d)
        Iterates in the eigenbasis.
    """
    checks.simulation(instance.d, t_max, n_times, replicates, block_size)
    out: list[np.ndarray] = []
    grid, _ = _drive(_sgd_block, instance, lr, stream_words(key), replicates, t_max=t_max,
                     n_times=n_times, dtype=dtype, block_size=block_size,
                     visit=lambda j, thetas, grid: out.append(np.asarray(thetas)))
    return np.asarray(grid.times), np.stack(out, axis=1)


def _drive(
    block_fn,
    instance: ProblemInstance,
    lr: AbstractLearningRate,
    words: Array,
    replicates: int,
    *,
    t_max: float,
    n_times: int,
    dtype: str,
    block_size: int,
    visit,
) -> tuple[TimeGrid, int]:
    """Advance every replicate from ``theta_0`` over the step-aligned grid.

    ``visit(j, thetas, grid)`` sees the iterates at record ``j`` (``j = 0`` is ``theta_0``);
    replicate ``r`` draws from the stream ``(words, r, k)`` of `advdyn.simulate.streams`
    whatever the grid, the block size or the devices. Returns the grid and the number of
    devices the replicates were split over.
    """
    grid = time_grid(instance.d, t_max, n_times, block_size)
    n_blocks = -(-grid.stride // grid.block)
    thetas = jnp.broadcast_to(instance.theta0.astype(jnp.dtype(dtype)), (replicates, instance.d))
    replicas = jnp.arange(replicates, dtype=jnp.uint32)
    mesh = _replicate_mesh(replicates)
    stride = jnp.asarray(grid.stride, jnp.int64)
    visit(0, thetas, grid)
    for j in range(1, len(grid.times)):
        first = jnp.asarray((j - 1) * grid.stride, jnp.int64)
        thetas = _advance(block_fn, thetas, replicas, words, first, stride, instance, lr,
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
