"""Streaming adversarial SGD in the eigenbasis (THEORY sections 2 and 3).

One fresh sample per step, ``theta <- theta - (gamma_t / d) grad``, with the exact
per-sample l2-adversarial gradient

    grad = L_r x + eps L_a theta/|theta| + delta theta

(``L_r``, ``L_a`` from the endpoint rule: closed forms for the built-in losses, autodiff
for custom ones). Replicates run batched under ``vmap``; steps run under ``lax.scan``.

Randomness: replicate ``r`` uses key ``fold_in(stream_key, r)`` and draws its samples in
blocks of ``block`` steps, block ``b`` from ``fold_in(replicate_key, b)``. Results are
therefore reproducible for a given ``(seed, block)``, and adding replicates leaves the
existing ones unchanged. Population quantities of the iterate are recorded every
``stride`` steps (a multiple of ``block``), never the loss on the last sample.

The driver (grid, records, divergence check, progress bar) is shared with the homogenized
SGD of :mod:`advdyn.hsgd`: :func:`_simulate` takes a per-block step function, and
:func:`_record` is the single place where every simulator turns iterates into recorded
quantities.
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
from advdyn.precision import float64
from advdyn.problem.instance import ProblemInstance
from advdyn.solution import Solution
from advdyn.theory.rates import LearningRate
from advdyn.theory.recording import make_recorder
from advdyn.theory.stationary import StationaryPoint
from advdyn.theory.statistics import DirectionState

Array = jax.Array
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
    """Recording grid on ``[0, ~t_max]`` aligned to whole SGD steps.

    Parameters
    ----------
    d : int
        Dimension (``t = k / d``).
    t_max : float
        Horizon.
    n_times : int
        Requested number of recording times, including ``t = 0``. When ``t_max * d`` is
        smaller than ``n_times - 1`` there is one record per step instead, so the grid never
        runs past the horizon.
    block_size : int
        Largest number of steps whose samples are drawn at once.

    Returns
    -------
    TimeGrid
        ``stride`` (steps between records) is split into equal sampling blocks of at most
        ``block_size`` steps, so it differs from ``t_max * d / (n_times - 1)`` by at most half
        a step per block; the returned ``times`` are exact.
    """
    total = max(1, round(t_max * d))
    n_records = min(n_times - 1, total)
    target = max(1, round(total / n_records))
    n_blocks = -(-target // block_size)  # ceil
    block = max(1, round(target / n_blocks))
    stride = n_blocks * block
    return TimeGrid(np.arange(n_records + 1) * stride / d, stride, block)


def _draw_block(instance: ProblemInstance, key, b, block: int, dtype):
    """Samples ``(x, y)`` of block ``b`` for one replicate: shapes ``(block, d)``, ``(block,)``."""
    d, n_comp = instance.d, instance.n_components
    kb = jax.random.fold_in(key, b)
    kz, kc, kxi = jax.random.split(kb, 3)
    z = jax.random.normal(kz, (block, d), dtype)
    sqrt_lam = jnp.sqrt(instance.eigenvalues).astype(dtype)
    means = instance.means.astype(dtype)
    if n_comp == 1:
        x = means[0] + sqrt_lam[0] * z
        cls = jnp.zeros((block,), jnp.int32)
    else:
        cls = jax.random.choice(kc, n_comp, (block,), p=instance.weights)
        x = means[cls] + sqrt_lam[cls] * z
    if instance.task == "regression":
        xi = jax.random.normal(kxi, (block,), dtype)
        y = x @ instance.theta_star.astype(dtype) + instance.noise.astype(dtype) * xi
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
    r = x @ theta
    n = jnp.sqrt(theta @ theta)
    _, L_r, L_a = instance.loss.adversarial(r, eps * n, y)
    # eps L_a theta/|theta| + delta theta, with the theta/|theta| term set to 0 at theta = 0
    shrink = jnp.where(n > 0, eps * L_a / jnp.where(n > 0, n, 1), 0) + ridge
    step = jnp.asarray(gamma / instance.d, dtype)
    return theta - step * (L_r * x + shrink * theta)


def _sgd_block(theta, key, b, instance: ProblemInstance, lr: LearningRate, block: int):
    """Advance one replicate by the ``block`` SGD steps of sampling block ``b``."""
    dtype = theta.dtype
    d = instance.d
    x, y = _draw_block(instance, key, b, block, dtype)
    steps = b * block + jnp.arange(block)

    def step(theta, inputs):
        x_k, y_k, k = inputs
        state = DirectionState.from_iterate(theta, instance) if lr.needs_state else None
        gamma = lr(k / d, state, instance)
        return sgd_step(theta, x_k, y_k, gamma, instance), None

    theta, _ = jax.lax.scan(step, theta, (x, y, steps))
    return theta


@eqx.filter_jit
def _advance(block_fn, thetas, keys, first_block, instance, lr, n_blocks: int, block: int):
    """Run ``n_blocks`` blocks of ``block_fn`` from ``first_block`` on every replicate.

    ``block_fn(theta, key, b, instance, lr, block)`` advances one replicate by the steps
    of block ``b`` (it draws that block's randomness from ``fold_in(key, b)``); replicates
    are batched under ``vmap``, blocks run under ``lax.scan``.
    """

    def replicate(theta, key):
        def block_body(theta, b):
            return block_fn(theta, key, b, instance, lr, block), None

        theta, _ = jax.lax.scan(block_body, theta, first_block + jnp.arange(n_blocks))
        return theta

    return jax.vmap(replicate)(thetas, keys)


@eqx.filter_jit
def _record(thetas, t, instance, lr, recorder):
    """Recorded quantities of every replicate's iterate at time ``t`` (all simulators)."""

    def one(theta):
        return recorder(t, DirectionState.from_iterate(theta, instance), instance, lr)

    return jax.vmap(one)(thetas)


@float64
def simulate_sgd(
    instance: ProblemInstance,
    lr: LearningRate,
    key: Array,
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
        Stream key (see :func:`advdyn.problem.stream_key`).
    t_max : float
        Horizon in units of ``t = k / d``.
    n_times : int
        Requested number of recording times (including ``t = 0``); see :func:`time_grid`.
    replicates : int
        Independent sample streams.
    dtype : {"float32", "float64"}
        Precision of the iterate and samples (statistics are always reduced to float64).
    block_size : int
        Maximum number of steps whose samples are drawn at once. Part of the random-stream
        definition: change it and the draws change.
    divergence_factor : float
        Stop when the adversarial risk exceeds this factor times ``max(initial risk, 1)``.
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
        :class:`~advdyn.theory.recording.Recorder`; ``stats`` holds ``replicates``,
        ``dtype``, ``block``, ``stride``, ``d`` and ``steps``.

    Raises
    ------
    DivergenceError
        If the risk becomes non-finite or exceeds the divergence threshold.
    """
    checks.simulation(instance.d, t_max, n_times, replicates, block_size)
    keys = jax.vmap(lambda r: jax.random.fold_in(key, r))(jnp.arange(replicates))
    return _simulate(
        "sgd", _sgd_block, instance, lr, keys, t_max=t_max, n_times=n_times, dtype=dtype,
        block_size=block_size, divergence_factor=divergence_factor, progress=progress,
        optimum=optimum, attrs=attrs,
    )


def _simulate(
    method: str,
    block_fn,
    instance: ProblemInstance,
    lr: LearningRate,
    keys: Array,
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

    Builds the step-aligned grid (:func:`time_grid`), starts every replicate at
    ``instance.theta0`` in ``dtype``, advances them one recording interval at a time with
    ``block_fn`` (see :func:`_advance`; replicate ``r`` uses ``keys[r]``), records through
    :func:`_record`, checks divergence at each record, drives the progress bar, and returns
    the ``(replicate, time)`` dataset with attribute ``method``.
    """
    replicates = keys.shape[0]
    grid = time_grid(instance.d, t_max, n_times, block_size)
    jdtype = jnp.dtype(dtype)
    n_blocks = grid.stride // grid.block
    thetas = jnp.broadcast_to(instance.theta0.astype(jdtype), (replicates, instance.d))

    recorder = make_recorder(instance, optimum)
    records = [_record(thetas, jnp.asarray(grid.times[0]), instance, lr, recorder)]
    threshold = divergence_factor * max(float(np.max(records[0]["adv_risk"])), 1.0)
    n_records = len(grid.times) - 1
    total = n_records * grid.stride
    for j in range(1, n_records + 1):
        first = jnp.asarray((j - 1) * n_blocks)
        thetas = _advance(block_fn, thetas, keys, first, instance, lr, n_blocks, grid.block)
        rec = _record(thetas, jnp.asarray(grid.times[j]), instance, lr, recorder)
        risk = np.asarray(rec["adv_risk"])
        if not np.all(np.isfinite(risk)) or risk.max() > threshold:
            # the rate recorded at the divergence time, or the last finite one (a
            # state-dependent rule has none at a non-finite state)
            lr_now = float(np.asarray(rec["lr"]).max())
            if not np.isfinite(lr_now):
                lr_now = float(np.asarray(records[-1]["lr"]).max())
            raise DivergenceError(
                method,
                float(grid.times[j]),
                lr_now,
                f"adversarial risk reached {risk.max():.3g} (started at "
                f"{float(np.max(records[0]['adv_risk'])):.3g})",
            )
        records.append(rec)
        if progress is not None:
            progress(grid.stride, total)

    stacked = {k: np.stack([np.asarray(r[k]) for r in records], axis=1) for k in records[0]}
    info = {
        "replicates": replicates,
        "dtype": dtype,
        "block": grid.block,
        "stride": grid.stride,
        "d": instance.d,
        "steps": int(n_records * grid.stride),
    }
    attrs = {**info, **(attrs or {})}
    return Solution(np.asarray(grid.times), stacked, method, replicated=True, stats=attrs)



@float64
def sgd_iterates(
    instance: ProblemInstance,
    lr: LearningRate,
    key: Array,
    *,
    t_max: float,
    n_times: int = 51,
    replicates: int = 4,
    dtype: str = "float32",
    block_size: int = 64,
) -> tuple[np.ndarray, np.ndarray]:
    """The iterates themselves on the grid of :func:`simulate_sgd` (same sample streams).

    For statistics that are not direction sums, e.g. the per-direction variance over
    replicates (the posterior covariance of :mod:`advdyn.posterior`). No divergence check.

    Parameters
    ----------
    instance, lr, key, t_max, n_times, replicates, dtype, block_size
        As in :func:`simulate_sgd`; the same arguments give the same trajectories.

    Returns
    -------
    times : ndarray, shape (T,)
        Recording times.
    thetas : ndarray, shape (replicates, T, d)
        Iterates in the eigenbasis.
    """
    keys = jax.vmap(lambda r: jax.random.fold_in(key, r))(jnp.arange(replicates))
    grid = time_grid(instance.d, t_max, n_times, block_size)
    n_blocks = grid.stride // grid.block
    thetas = jnp.broadcast_to(instance.theta0.astype(jnp.dtype(dtype)), (replicates, instance.d))
    out = [np.asarray(thetas)]
    for j in range(1, len(grid.times)):
        first = jnp.asarray((j - 1) * n_blocks)
        thetas = _advance(_sgd_block, thetas, keys, first, instance, lr, n_blocks, grid.block)
        out.append(np.asarray(thetas))
    return np.asarray(grid.times), np.stack(out, axis=1)
