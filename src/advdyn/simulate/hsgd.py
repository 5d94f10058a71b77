"""Adversarial homogenized SGD: the SDE of THEORY section 8, by Euler-Maruyama.

    dTheta_t = -gamma_t grad Rtilde(Theta_t) dt + gamma_t sqrt( sum_c pi_c I_c K_c / d ) dB_t

In the eigenbasis both terms are per coordinate: the drift is the exact expected gradient
``D_i Theta_i + H_i theta*_i + f_i`` of `advdyn.theory.drift` (THEORY 4) and the noise is
independent across coordinates with variance ``N_i / d`` per unit time,
``N_i = sum_c pi_c lambda_{c,i} I_c``. The coefficients are evaluated at the statistics of
the iterate itself (``O(C d)`` a step, like the per-sample gradient of SGD).

Discretisation
--------------
Euler-Maruyama with ``dt = 1/d``, one step per SGD step, so the SDE uses SGD's
step-aligned grid ([`advdyn.simulate.sgd.time_grid`][advdyn.simulate.time_grid]) and the
step ``k`` is at ``t = k/d``:

    Theta_{k+1} = Theta_k - (gamma_k / d) (D Theta_k + H theta* + f)
                  + gamma_k sqrt(N / d) sqrt(dt) z_k,          z_k ~ N(0, I_d),

i.e. the noise increment has standard deviation ``gamma_k sqrt(N_i) / d``. The
Euler-Maruyama error at ``dt = 1/d`` is ``O(1/d)`` on the statistics, below the
``O(d^{-1/2})`` fluctuations that separate any finite-``d`` run from the ODE.

Precision
---------
The iterate and the Gaussian increments are kept in ``dtype`` (float32 by default, as for
SGD). The statistics are reduced in ``dtype`` and returned in float64
(`statistics`); every drift coefficient (``h_c``, ``e_c``,
``I_c``, ``rho``, hence ``D``, ``H``, ``f``, ``N``) and the increment are evaluated in
float64 and rounded once into ``dtype`` when added to the iterate. With
``dtype = "float64"`` everything is float64.

Randomness
----------
For the stream key ``key`` ([`advdyn.problem.stream_key`][advdyn.problem.stream_key], the same key
SGD gets) the
SDE uses its own key ``fold_in(key, HSGD_STREAM)``, so SGD and the SDE of the same seed
draw from different Philox keys (independent streams). The increment of replicate ``r`` at
step ``k`` is the ``d``-vector of Gaussians of counter ``(j, k, r)``
(`advdyn.simulate.streams`): it depends on the seed, ``r``, ``k``, ``d`` and the dtype
only, never on the recording grid, the replicate count, the block size or the devices.

Why not diffrax here
--------------------
diffrax's ``Euler`` with a ``ControlTerm`` and a Brownian path solves the same scheme, and
``tests/test_hsgd.py`` checks this module against it step for step (same Brownian
increments, float64). For the simulator itself a hand-written ``lax.scan`` is used:
``VirtualBrownianTree`` pays a tree descent of ``d``-dimensional draws for every step, and
``UnsafeBrownianPath`` draws each step's ``d`` normals separately (keyed by the bits of
``t``), while drawing them in blocks of steps (one fused counter-based draw) keeps them cheap for
SGD (``docs/benchmarks.md``); at ``dt = 1/d`` there are ``d t_max`` steps, so the
per-step overhead of the generic solver loop also matters. The scan reuses the SGD driver
(grid, records, divergence check, progress bar; `advdyn.simulate.driver`) and its
single recording function, so SGD and the SDE report identical quantities.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Key

from advdyn import checks
from advdyn.precision import float64
from advdyn.problem.instance import ProblemInstance
from advdyn.simulate.driver import Progress, TimeGrid, integrate_replicates, run_replicates
from advdyn.simulate.streams import gaussian, stream_words
from advdyn.solution import Solution
from advdyn.theory.drift import drift_terms
from advdyn.theory.rates import AbstractLearningRate
from advdyn.theory.stationary import StationaryPoint
from advdyn.theory.statistics import DirectionState, statistics
from advdyn.typing import Array

HSGD_STREAM = 0x48534744
"""``fold_in`` constant (ASCII ``"HSGD"``) that separates the SDE's stream from SGD's."""
SCHEME = {"scheme": "euler-maruyama, dt = 1/d", "stream": f"fold_in(key, {HSGD_STREAM:#x})"}


def _euler_maruyama(theta, z, gamma, state: DirectionState, instance: ProblemInstance):
    """One step from ``theta`` whose state is ``state``; float64 increment, rounded once."""
    terms = drift_terms(statistics(state, instance), instance)
    f64 = jnp.float64
    th = theta.astype(f64)
    drift = terms.D * th + terms.H * instance.theta_star + terms.mean_term(instance.means)
    d = instance.d
    gamma = jnp.asarray(gamma, f64)
    # noise sd per step: gamma sqrt(N_i / d) sqrt(dt), dt = 1/d
    increment = -(gamma / d) * drift + (gamma / d) * jnp.sqrt(terms.N) * z.astype(f64)
    return (th + increment).astype(theta.dtype)


def hsgd_step(theta, z, gamma, instance: ProblemInstance):
    """One Euler-Maruyama step of the homogenized SGD with ``dt = 1/d``.

    Parameters
    ----------
    theta : Array, shape (d,)
        Current iterate in the eigenbasis.
    z : Array, shape (d,)
        Standard Gaussian increment (the Brownian increment divided by ``sqrt(dt)``).
    gamma : scalar
        Learning rate ``gamma_t``.
    instance : ProblemInstance

    Returns
    -------
    Array
        ``theta - (gamma/d) (D theta + H theta* + f) + (gamma/d) sqrt(N) z`` in
        ``theta``'s dtype, with the coefficients of THEORY 4 evaluated at ``theta``.
    """
    return _euler_maruyama(theta, z, gamma, DirectionState.from_iterate(theta, instance), instance)


def hsgd_block(theta, words, r, k0, n_valid, instance: ProblemInstance, lr: AbstractLearningRate,
                block: int):
    """Advance one replicate by the Euler-Maruyama steps ``k0 .. k0 + min(block, n_valid) - 1``
    (the block function of `advdyn.simulate.driver`)."""
    d = instance.d
    offsets = jnp.arange(block)
    ks = k0 + offsets
    z = jax.vmap(lambda k: gaussian(words, r, k, d, theta.dtype))(ks)

    def step(theta, inputs):
        z_k, k, valid = inputs
        state = DirectionState.from_iterate(theta, instance)
        gamma = lr(k / d, state if lr.needs_state else None, instance)
        return jnp.where(valid, _euler_maruyama(theta, z_k, gamma, state, instance), theta), None

    theta, _ = jax.lax.scan(step, theta, (z, ks, offsets < n_valid))
    return theta


def hsgd_key(key: Array) -> Array:
    """The SDE's stream key: ``fold_in(key, HSGD_STREAM)``.

    Parameters
    ----------
    key : jax.random key
        Stream key ([`advdyn.problem.stream_key`][advdyn.problem.stream_key]), the same one SGD
        receives.

    Returns
    -------
    jax.random key
        Its two words key the SDE's Philox stream (`advdyn.simulate.streams`).
    """
    return jax.random.fold_in(key, HSGD_STREAM)


@float64
def simulate_hsgd(
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
    """Simulate adversarial homogenized SGD and record population quantities on a time grid.

    Same signature, grid and outputs as [`simulate_sgd`][advdyn.simulate.simulate_sgd]; see
    the module docstring for the scheme, the precision policy and the random stream.

    Parameters
    ----------
    instance, lr, t_max, n_times, divergence_factor, progress, optimum, attrs
        As in [`simulate_sgd`][advdyn.simulate.simulate_sgd].
    key : jax.random key
        Stream key ([`advdyn.problem.stream_key`][advdyn.problem.stream_key]); the SDE
        derives its own stream from it (``fold_in(key, HSGD_STREAM)``), independent of SGD's.
    replicates : int
        Independent Brownian paths.
    dtype : {"float32", "float64"}
        Precision of the iterate and of the Gaussian increments (coefficients and
        increments are computed in float64).
    block_size : int
        Maximum number of steps whose increments are drawn at once (speed and memory
        only; the draws do not depend on it).

    Returns
    -------
    Solution
        ``ys`` of shape ``(replicate, time)`` (those of `Recorder`); ``method = "hsgd"``.

    Raises
    ------
    DivergenceError
        If the risk becomes non-finite or exceeds the divergence threshold.
    """
    checks.simulation(instance.d, t_max, n_times, replicates, block_size, lr, key, dtype)
    return run_replicates(
        "hsgd", hsgd_block, instance, lr, stream_words(hsgd_key(key)), replicates, t_max=t_max,
        n_times=n_times, dtype=dtype, block_size=block_size,
        divergence_factor=divergence_factor, progress=progress, optimum=optimum,
        attrs={**SCHEME, **(attrs or {})},
    )


@float64
def integrate_hsgd(
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
    """The homogenized SGD as a pure function: ``jit`` and ``vmap`` go through it.

    The same paths as [`simulate_hsgd`][advdyn.simulate.simulate_hsgd] on the same key and
    grid; arguments and result as in [`integrate_sgd`][advdyn.simulate.sgd.integrate_sgd]
    (``key`` is the stream key SGD gets: the SDE derives its own, ``fold_in(key,
    HSGD_STREAM)``). The drift and the noise are smooth in the instance's parameters, so
    ``jax.grad`` of a record with respect to e.g. ``epsilon`` also goes through (for fixed
    Brownian increments, ``dtype = "float64"``).
    """
    return integrate_replicates(
        "hsgd", hsgd_block, instance, lr, stream_words(hsgd_key(key)), grid, replicates,
        dtype=dtype, optimum=optimum, divergence_factor=divergence_factor, throw=throw,
        stats=dict(SCHEME),
    )
