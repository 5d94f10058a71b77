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
SGD: `advdyn.simulate.driver` takes the per-block step function `sgd_block`.
[`integrate_sgd`][advdyn.simulate.sgd.integrate_sgd] is the pure solve (``jit``, ``vmap``
over the instance's or the rate's array leaves; failure as a result code),
[`simulate_sgd`][advdyn.simulate.sgd.simulate_sgd] the host run (checks, progress, devices,
an exception on divergence); both give the same numbers.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Float, Key

from advdyn import checks
from advdyn.precision import float64
from advdyn.problem.instance import ProblemInstance
from advdyn.simulate.driver import (
    Progress,
    TimeGrid,
    drive,
    integrate_replicates,
    run_replicates,
    time_grid,
)
from advdyn.simulate.streams import gaussian, step_scalars, stream_words
from advdyn.solution import Solution
from advdyn.theory.rates import AbstractLearningRate
from advdyn.theory.stationary import StationaryPoint
from advdyn.theory.statistics import DirectionState
from advdyn.typing import Array

#: the grid of the simulators lives with their driver; named here too, where callers use it
__all__ = ["TimeGrid", "integrate_sgd", "sgd_block", "sgd_iterates", "sgd_step",
           "simulate_sgd", "time_grid"]
STREAM = "philox4x32-10(key, (j, k, r)); advdyn.simulate.streams"


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


def sgd_block(theta, words, r, k0, n_valid, instance: ProblemInstance, lr: AbstractLearningRate,
               block: int):
    """Advance one replicate by the steps ``k0 .. k0 + min(block, n_valid) - 1`` (the block
    function of `advdyn.simulate.driver`)."""
    offsets = jnp.arange(block)
    ks = k0 + offsets
    x, y = _draw_block(instance, words, r, ks, theta.dtype)
    return scan_steps(theta, x, y, ks, offsets < n_valid, instance, lr)


def scan_steps(theta, x, y, ks, valid, instance, lr: AbstractLearningRate):
    """Take the SGD steps ``ks`` on the samples ``(x, y)`` (those with ``valid`` false are
    skipped) under ``lax.scan``; the rate is evaluated at ``t = k / d`` (and at the iterate's
    state for a state-dependent rule)."""
    d = instance.d

    def step(theta, inputs):
        x_k, y_k, k, valid = inputs
        state = DirectionState.from_iterate(theta, instance) if lr.needs_state else None
        gamma = lr(k / d, state, instance)
        new = sgd_step(theta, x_k, y_k, gamma, instance)
        return jnp.where(valid, new, theta), None

    theta, _ = jax.lax.scan(step, theta, (x, y, ks, valid))
    return theta


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
    lr : AbstractLearningRate
    key : jax.random key
        Stream key (see [`advdyn.problem.stream_key`][advdyn.problem.stream_key]); its two words key
        the Philox
        stream of `advdyn.simulate.streams`.
    t_max : float
        Horizon in units of ``t = k / d``.
    n_times : int
        Requested number of recording times (including ``t = 0``); see
        [`time_grid`][advdyn.simulate.driver.time_grid].
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
    return run_replicates(
        "sgd", sgd_block, instance, lr, stream_words(key), replicates, t_max=t_max,
        n_times=n_times, dtype=dtype, block_size=block_size,
        divergence_factor=divergence_factor, progress=progress, optimum=optimum,
        attrs={"stream": STREAM, **(attrs or {})},
    )


@float64
def integrate_sgd(
    instance: ProblemInstance,
    lr: AbstractLearningRate,
    key: Key[Array, ""],
    grid: TimeGrid,
    *,
    replicates: int = 4,
    dtype: str = "float32",
    divergence_factor: float | Array = 1e6,
    optimum: StationaryPoint | None = None,
    throw: bool = True,
) -> Solution:
    """Streaming adversarial SGD as a pure function: ``jit`` and ``vmap`` go through it.

    The same trajectories as [`simulate_sgd`][advdyn.simulate.sgd.simulate_sgd] on the same
    key and grid, with no host work: only the static ``replicates`` and ``dtype`` are checked
    (up front), no progress, no devices, no Python exception from inside. The instance's and
    the rate's array leaves (e.g. ``epsilon`` or ``gamma`` set with ``equinox.tree_at``) may
    be traced, so grid points x replicates solve as one ``jax.vmap``; under ``vmap`` a
    replicate's reductions may be reordered (rounding only).

    Parameters
    ----------
    instance : ProblemInstance
    lr : AbstractLearningRate
    key : jax.random key
        Stream key ([`advdyn.problem.stream_key`][advdyn.problem.stream_key]).
    grid : TimeGrid
        Recording grid ([`time_grid`][advdyn.simulate.driver.time_grid]; static).
    replicates : int
        Independent sample streams (static).
    dtype : {"float32", "float64"}
        Precision of the iterate and samples (static).
    divergence_factor : float or Array
        As in [`simulate_sgd`][advdyn.simulate.sgd.simulate_sgd].
    optimum : StationaryPoint, optional
        For ``dist_to_opt`` (the pure [`optimum`][advdyn.theory.stationary.optimum] when
        omitted).
    throw : bool
        Raise when the run diverged; pass ``False`` under ``vmap`` for failure as data.

    Returns
    -------
    Solution
        ``ys`` of shape ``(replicate, time)``, JAX arrays, NaN from the first divergent
        record on; ``result`` a [`RESULTS`][advdyn.solution.RESULTS] code; ``steps`` the
        steps taken per replicate.

    Raises
    ------
    ConfigError
        If ``replicates`` is not a positive integer or ``dtype`` is neither ``"float32"``
        nor ``"float64"`` (static values, checked before tracing).
    """
    return integrate_replicates(
        "sgd", sgd_block, instance, lr, stream_words(key), grid, replicates, dtype=dtype,
        optimum=optimum, divergence_factor=divergence_factor, throw=throw,
        stats={"stream": STREAM},
    )

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
    grid, _ = drive(sgd_block, instance, lr, stream_words(key), replicates, t_max=t_max,
                     n_times=n_times, dtype=dtype, block_size=block_size,
                     visit=lambda j, thetas, grid: out.append(np.asarray(thetas)))
    return np.asarray(grid.times), np.stack(out, axis=1)
