"""The exact high-dimensional posterior variance of streaming adversarial SGD (POSTERIOR 3).

In the deterministic-equivalent ODE (`advdyn.theory.ode`) the per-direction second
moment ``err2_i = E e_i^2`` has drift ``-2 gamma (D_i err2_i + (D_i + H_i) err_teacher_i +
sum_c pe_c err_mean_ci)`` and noise ``gamma^2 N_i / d``. The squared mean ``m_i^2`` (with
``m_i = E e_i``) obeys the same equation *without* the noise (the mean is linear in the
iterate), so the posterior variance ``v_i = err2_i - m_i^2`` of direction ``i`` obeys

    dv_i/dt = -2 gamma D_i v_i + gamma^2 N_i / d,     v_i(0) = 0,

with ``D_i``, ``N_i`` evaluated along the ODE trajectory. At a constant rate
``v_i -> gamma N_i / (2 d D_i)``; after ``gamma1 -> gamma2`` at ``t0`` with frozen
coefficients, ``v_i(t) = v_i^inf(gamma2) + (v_i(t0) - v_i^inf(gamma2))
exp(-2 gamma2 D_i (t - t0))``: the continuous-time "propagation" and "injected" parts. The
same equation holds bin by bin for a spectral-bin instance
([`BinnedInstance`][advdyn.theory.BinnedInstance]), free of ``d``. This module integrates it
together with the ODE (diffrax,
Tsit5, float64, the rate's jumps as step boundaries) and derives the curvature term
``1/2 sum_i D_i v_i`` and the KL divergence to a Gaussian prior ``N(0, s0^2 I)``.
"""

from __future__ import annotations

from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from advdyn.errors import DivergenceError
from advdyn.precision import float64
from advdyn.problem.instance import AbstractInstance, ProblemInstance
from advdyn.solution import RESULTS, diffrax_code
from advdyn.theory.drift import drift_terms, flow
from advdyn.theory.ode import Integrator, make_integrator
from advdyn.theory.rates import AbstractLearningRate, StepDrop, objective
from advdyn.theory.statistics import direction_sum, statistics


class PosteriorPath(eqx.Module):
    """Posterior variance and its bound terms along the ODE trajectory.

    Attributes
    ----------
    ts : array, shape (T,)
        Times ``t = k/d``.
    variance : array, shape (T, n)
        ``v_i`` per direction (or per bin).
    err2, err_teacher : arrays, shape (T, n)
        The ODE's second moments (``E e_i^2``, ``E e_i theta*_i``).
    D, N : arrays, shape (T, n)
        Drift (curvature) and noise coefficients along the path.
    lr : array, shape (T,)
        ``gamma_t``.
    curvature : array, shape (T,)
        ``1/2 sum_i D_i v_i``: the curvature term ``1/2 tr(H Sigma)`` of the diagonal
        Hessian in the eigenbasis (the low-rank corrections of POSTERIOR 3 add ``O(1/d)``).
    objective : array, shape (T,)
        Population training objective ``R_eps + delta/2 |theta|^2`` (expected over SGD).
    result : Array of int, optional
        The [`RESULTS`][advdyn.solution.RESULTS] code of the solve
        ([`integrate_posterior`][advdyn.posterior.highdim.integrate_posterior]; ``None`` from
        [`posterior_path`][advdyn.posterior.highdim.posterior_path], which raises instead).
    """

    ts: Float[Array, " T"]
    variance: Float[Array, "T n"]
    err2: Float[Array, "T n"]
    err_teacher: Float[Array, "T n"]
    D: Float[Array, "T n"]
    N: Float[Array, "T n"]
    lr: Float[Array, " T"]
    curvature: Float[Array, " T"]
    objective: Float[Array, " T"]
    result: Any = None


def _field(t, y, args):
    instance, lr = args
    state, v = y
    drift, noise = flow(state, instance)
    gamma = lr(t, state, instance)
    d_state = jax.tree.map(lambda u, w: gamma * u + gamma**2 * w, drift, noise)
    terms = drift_terms(statistics(state, instance), instance)
    dv = -2 * gamma * terms.D * v + gamma**2 * terms.N / instance.d
    return d_state, dv


def _integrate(instance, lr, times, jumps, integrator: Integrator):
    """The ODE with the posterior variance (pure). Returns the path's arrays and the
    [`RESULTS`][advdyn.solution.RESULTS] code; from the first record that is not finite (or
    that the solver did not reach) on, every record is NaN."""
    y0 = (instance.initial_state(), jnp.zeros_like(instance.eigenvalues[0]))
    controller = integrator.controller
    if jumps is not None:
        controller = diffrax.ClipStepSizeController(controller, jump_ts=jumps)
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(_field),
        integrator.solver,
        t0=times[0],
        t1=times[-1],
        dt0=None,
        y0=y0,
        args=(instance, lr),
        saveat=diffrax.SaveAt(ts=times),
        stepsize_controller=controller,
        max_steps=integrator.max_steps,
        throw=False,
    )
    states, v = sol.ys

    def record(t, state, vt):
        stats = statistics(state, instance)
        terms = drift_terms(stats, instance)
        return terms.D, terms.N, lr(t, state, instance), objective(state, instance)

    D, N, rates, risk = jax.vmap(record)(sol.ts, states, v)
    raw = (states.err2, states.err_teacher, v, D, N, rates, risk)
    bad = jnp.zeros(times.shape, bool)
    for a in raw:
        bad = bad | ~jnp.all(jnp.isfinite(a.reshape(a.shape[0], -1)), axis=1)
    failed = jnp.cumsum(bad) > 0
    out = tuple(jnp.where(failed.reshape((-1,) + (1,) * (a.ndim - 1)), jnp.nan, a)
                for a in raw)
    code = jnp.where(jnp.any(bad), RESULTS.diverged, RESULTS.successful)
    code = jnp.where(sol.result == diffrax.RESULTS.successful, code, diffrax_code(sol.result))
    return out, code.astype(jnp.int32)


_solve = eqx.filter_jit(_integrate)


def _path(instance, times, out, code) -> PosteriorPath:
    err2, err_teacher, v, D, N, rates, risk = out
    mult = getattr(instance, "multiplicity", None)
    w = jnp.ones(v.shape[-1]) if mult is None else mult
    curvature = 0.5 * (D * v) @ w
    return PosteriorPath(times, v, err2, err_teacher, D, N, rates, curvature, risk, code)


@float64
def integrate_posterior(
    instance: AbstractInstance,
    lr: AbstractLearningRate,
    times: Float[ArrayLike, " T"],
    integrator: Integrator,
    *,
    jumps: Float[ArrayLike, " J"] | None = None,
    throw: bool = True,
) -> PosteriorPath:
    """The ODE with the posterior variance as a pure function: ``jit``, ``vmap``, ``grad``.

    The same solve as [`posterior_path`][advdyn.posterior.highdim.posterior_path] with no
    host work (no jumps read off the rule, no Python exception from inside): the
    instance's and the rule's array leaves (e.g. ``epsilon`` or ``gamma`` set with
    ``equinox.tree_at``) may be traced, so a grid solves as one ``jax.vmap``.

    Parameters
    ----------
    instance : ProblemInstance or BinnedInstance
    lr : AbstractLearningRate
    times : array_like, shape (T,)
        Increasing recording times from 0 (not checked).
    integrator : Integrator
        Solver, controller and step budget
        ([`make_integrator`][advdyn.theory.ode.make_integrator]; explicit solvers).
    jumps : array_like, optional
        Times where ``lr`` jumps: the controller steps to them exactly.
    throw : bool
        Raise (``equinox.error_if``) when the solve failed; under ``vmap`` pass ``False``
        for failure as data.

    Returns
    -------
    PosteriorPath
        With ``result`` a [`RESULTS`][advdyn.solution.RESULTS] code; every record NaN from
        the first one that is not finite (or not reached) on.
    """
    times = jnp.asarray(times, jnp.float64)
    j = None if jumps is None else jnp.asarray(jumps, jnp.float64)
    out, code = _integrate(instance, lr, times, j, integrator)
    if throw:
        out = eqx.error_if(out, code != RESULTS.successful,
                           "the posterior-variance ODE failed or blew up (see result)")
    return _path(instance, times, out, code)


@float64
def posterior_path(
    instance: ProblemInstance,
    lr: AbstractLearningRate,
    times,
    *,
    jumps=None,
    rtol: float = 1e-8,
    atol: float = 1e-20,
    max_steps: int = 1_000_000,
) -> PosteriorPath:
    """Integrate the ODE with the per-direction posterior variance ``v_i``.

    Parameters
    ----------
    instance : ProblemInstance or BinnedInstance
        The problem (initial state from ``theta_0``: ``v(0) = 0``).
    lr : AbstractLearningRate
        Rate rule (e.g. [`StepDrop`][advdyn.theory.rates.StepDrop]).
    times : array_like, shape (T,)
        Increasing recording times from 0.
    jumps : array_like, optional
        Times where ``lr`` jumps (``StepDrop.t_drop``): the solver steps to them exactly.
    rtol, atol : float
        Solver tolerances (Tsit5).
    max_steps : int
        Step budget.

    Returns
    -------
    PosteriorPath

    Raises
    ------
    DivergenceError
        If the solve fails or the variance becomes non-finite.
    """
    times = jnp.asarray(np.asarray(times, dtype=np.float64))
    if jumps is None and isinstance(lr, StepDrop):
        jumps = [float(np.asarray(lr.t_drop))]
    j = None if jumps is None else jnp.asarray(np.asarray(jumps, dtype=np.float64))
    integrator = make_integrator("tsit5", rtol=rtol, atol=atol, max_steps=max_steps)
    out, code = _solve(instance, lr, times, j, integrator)
    if int(code) != RESULTS.successful:
        rates = np.asarray(out[5])
        finite = rates[np.isfinite(rates)]
        raise DivergenceError("ode", float(times[-1]), float(finite[-1]) if finite.size
                              else float("nan"), "the posterior-variance ODE failed or blew up")
    return _path(instance, times, out, None)


@float64
def stationary_variance(D, N, gamma, d) -> Array:
    """``v_inf = gamma N / (2 d D)``: the constant-rate limit of the posterior variance.

    Parameters
    ----------
    D, N : arrays, shape (n,)
        Drift and noise coefficients (at the limit).
    gamma : float
        Rate.
    d : int
        Dimension.

    Returns
    -------
    array, shape (n,)
    """
    return gamma * jnp.asarray(N) / (2 * d * jnp.asarray(D))


@float64
def frozen_transient(v0, D, N, gamma2, dt, d):
    """Posterior variance ``dt`` after a rate change with frozen coefficients.

    ``v(t) = v_inf(gamma2) + (v0 - v_inf(gamma2)) exp(-2 gamma2 D dt)``: the propagation
    part ``v0 exp(-2 gamma2 D dt)`` plus the injected part ``v_inf (1 - exp(...))``.

    Parameters
    ----------
    v0 : array, shape (n,)
        Variance at the change.
    D, N : arrays, shape (n,)
        Coefficients (frozen).
    gamma2 : float
        New rate.
    dt : array, shape (T,)
        Times since the change.
    d : int
        Dimension.

    Returns
    -------
    propagation, injected : arrays, shape (T, n)
    """
    decay = jnp.exp(-2 * gamma2 * jnp.asarray(D)[None, :] * jnp.asarray(dt)[:, None])
    v_inf = stationary_variance(D, N, gamma2, d)
    return jnp.asarray(v0)[None, :] * decay, v_inf[None, :] * (1 - decay)


@float64
def posterior_kl(path: PosteriorPath, instance, prior_variance) -> Array:
    """``KL(N(E theta_t, diag v_t) || N(0, s0^2 I))`` along the path, for each prior variance.

    The posterior is the Gaussian with the ODE's mean and per-direction variance in the
    eigenbasis: a diagonal approximation. The cross-direction covariances, ``O(1/d)`` each,
    are neglected (the ODE carries none); the exact KL of a Gaussian with the same variances
    is never smaller than this one (see ``docs/posterior.md``, limitations). With
    ``E theta_i^2 = (err2_i - v_i) + 2 err_teacher_i + theta*_i^2``:
    ``KL = 1/2 sum_i [v_i / s0^2 + (E theta_i)^2 / s0^2 - 1 - ln(v_i / s0^2)]``.

    Parameters
    ----------
    path : PosteriorPath
    instance : ProblemInstance or BinnedInstance
        Supplies ``teacher2`` and the multiplicities.
    prior_variance : float or array, shape (G,)
        ``s0^2``.

    Returns
    -------
    array, shape (G, T) (or (T,) for a scalar prior variance); ``+inf`` where ``v = 0``.
    """
    s = jnp.atleast_1d(jnp.asarray(prior_variance, jnp.float64))
    mean2 = (path.err2 - path.variance) + 2 * path.err_teacher + instance.teacher2[None, :]
    v = path.variance
    logv = jnp.where(v > 0, jnp.log(jnp.where(v > 0, v, 1.0)), -jnp.inf)

    def one(s0):
        per = v / s0 + mean2 / s0 - 1.0 - (logv - jnp.log(s0))
        return 0.5 * direction_sum(per, instance)

    out = jax.vmap(one)(s)
    return out if jnp.ndim(prior_variance) else out[0]


@float64
def replicate_variance(thetas: np.ndarray) -> np.ndarray:
    """Per-direction variance over SGD replicates (unbiased), shape ``(T, d)``.

    Parameters
    ----------
    thetas : array, shape (R, T, d)
        Iterates from [`advdyn.simulate.sgd_iterates`][advdyn.simulate.sgd_iterates].

    Returns
    -------
    numpy.ndarray, shape (T, d)
    """
    return np.var(np.asarray(thetas, dtype=np.float64), axis=0, ddof=1)


@float64
def group_by_eigenvalue(values: np.ndarray, eigenvalues: np.ndarray, groups: int):
    """Average per-direction values over groups of (sorted) eigenvalues.

    Parameters
    ----------
    values : array, shape (..., d)
        Per-direction values.
    eigenvalues : array, shape (d,)
        Eigenvalues used to sort and group the directions.
    groups : int
        Number of equal-size groups.

    Returns
    -------
    centres : numpy.ndarray, shape (groups,)
        Mean eigenvalue per group.
    means : numpy.ndarray, shape (..., groups)
        Group averages.
    """
    order = np.argsort(eigenvalues)
    parts = np.array_split(order, groups)
    centres = np.array([eigenvalues[p].mean() for p in parts])
    means = np.stack([np.asarray(values)[..., p].mean(axis=-1) for p in parts], axis=-1)
    return centres, means
