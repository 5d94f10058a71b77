"""Per-direction state, its low-dimensional statistics, and the recorded quantities.

THEORY sections 4, 5 and 11. Every population quantity of an iterate ``theta`` is a function
of a handful of statistics. They are sums over directions of the per-direction state. We
carry the state of the error ``e = theta - theta*`` rather than of ``theta``:

    err2_i        = e_i^2           (= P_i - 2 Q_i + theta*_i^2)
    err_teacher_i = e_i theta*_i    (= Q_i - theta*_i^2)
    err_mean_ci   = e_i mu_{c,i}    (= M_{c,i} - theta*_i mu_{c,i})

a linear change of variables from THEORY's ``(P, Q, M)`` that keeps the residual variance
``<e, K e>`` free of cancellation, so exponentially decaying risks stay accurate in float64.
The same functions serve the ODE (state integrated) and SGD (state built from the iterate).
"""

from __future__ import annotations

from typing import TypeVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.stats import norm
from jaxtyping import ArrayLike, Float

from advdyn.problem.instance import AbstractInstance
from advdyn.problem.losses import ClassMoments, Expectations
from advdyn.problem.state import DirectionState
from advdyn.typing import Array

#: a JAX array in the theory, a NumPy float64 array in the figures
_A = TypeVar("_A", jax.Array, np.ndarray)


class Statistics(eqx.Module):
    """Low-dimensional statistics of the iterate (float64 scalars or ``(C,)`` arrays).

    Here ``e = theta - theta*``; per-class quantities have shape ``(C,)``.

    Attributes
    ----------
    qe : Array, shape (C,)
        ``<e, K_c e>``.
    ge : Array, shape (C,)
        ``<e, K_c theta*>``.
    w : Array, shape (C,)
        ``<theta*, K_c theta*>`` (a constant of the instance).
    me : Array, shape (C,)
        ``<e, mu_c>``.
    mstar : Array, shape (C,)
        ``<theta*, mu_c>`` (a constant of the instance).
    norm2 : Array, scalar
        ``n^2 = |theta|^2``.
    overlap : Array, scalar
        ``<theta, theta*>``.
    """

    qe: Array
    ge: Array
    w: Array
    me: Array
    mstar: Array
    norm2: Array
    overlap: Array


def direction_sum(
    x: Float[Array, "*batch n"], instance: AbstractInstance
) -> Float[Array, "*batch"]:
    """Sum over directions along the last axis, in ``x``'s dtype.

    Per-direction instances have one direction per entry; a binned instance
    (`advdyn.theory.spectral`) has ``multiplicity[i]`` directions with the same state in
    entry ``i``, so the sum is ``x @ multiplicity``.

    Parameters
    ----------
    x : Array, shape (..., n)
        Per-entry values.
    instance : AbstractInstance
        Supplies ``multiplicity`` (``None`` for one direction per entry).

    Returns
    -------
    Array, shape (...)
    """
    mult = instance.multiplicity
    return jnp.sum(x, axis=-1) if mult is None else x @ mult.astype(x.dtype)


def statistics(state: DirectionState, instance: AbstractInstance) -> Statistics:
    """Reduce a [`DirectionState`][advdyn.DirectionState] to `Statistics` (``O(C d)`` work).

    Sums are taken in the state's dtype and returned in float64.

    Parameters
    ----------
    state : DirectionState
        Per-direction error moments.
    instance : AbstractInstance
        Supplies ``lambda_{c,i}``, ``theta*`` and ``mu_c``.

    Returns
    -------
    Statistics
        The sums over directions, e.g. ``qe = sum_i lambda_{c,i} e_i^2``.
    """
    f64 = lambda x: jnp.asarray(x, jnp.float64)  # noqa: E731
    lam = instance.eigenvalues.astype(state.err2.dtype)

    def wsum(x):
        return direction_sum(x, instance)

    ts2 = wsum(instance.teacher2)
    return Statistics(
        qe=f64(wsum(lam * state.err2)),
        ge=f64(wsum(lam * state.err_teacher)),
        w=wsum(instance.eigenvalues * instance.teacher2),
        me=f64(wsum(state.err_mean)),
        mstar=wsum(instance.teacher_mean),
        norm2=f64(wsum(state.err2)) + 2 * f64(wsum(state.err_teacher)) + ts2,
        overlap=f64(wsum(state.err_teacher)) + ts2,
    )


def class_moments(stats: Statistics, instance: AbstractInstance) -> ClassMoments:
    """Gaussian moments of ``(r, r*)`` in each class, from the statistics (THEORY 4).

    Parameters
    ----------
    stats : Statistics
        Statistics of the iterate.
    instance : AbstractInstance
        Supplies the labels and the label noise ``sigma``.

    Returns
    -------
    ClassMoments
        Means ``m_c = <mu_c, theta>``, ``m*_c``, the entries of ``B_c`` and the residual
        moments ``me = <e, mu_c>``, ``qe = <e, K_c e>``, each of shape ``(C,)``.
    """
    return ClassMoments(
        m=stats.me + stats.mstar,
        q=stats.qe + 2 * stats.ge + stats.w,
        mstar=stats.mstar,
        w=stats.w,
        g=stats.ge + stats.w,
        me=stats.me,
        qe=stats.qe,
        label=instance.labels,
        noise=instance.noise,
    )


def attack_size(stats: Statistics, instance: AbstractInstance) -> Float[Array, ""]:
    """Attack size ``a = eps * |theta|``.

    Parameters
    ----------
    stats : Statistics
        Statistics of the iterate (uses ``norm2``).
    instance : AbstractInstance
        Supplies the radius ``eps``.

    Returns
    -------
    Array, scalar
        ``eps * n``.
    """
    return instance.epsilon * jnp.sqrt(stats.norm2)


def expectations(stats: Statistics, instance: AbstractInstance) -> Expectations:
    """Per-class expectations of THEORY section 4 at these statistics.

    Parameters
    ----------
    stats : Statistics
        Statistics of the iterate.
    instance : AbstractInstance
        Supplies the loss, the task and ``eps``.

    Returns
    -------
    Expectations
        ``R_eps``, ``R_0``, ``e_c``, ``h_c1``, ``h_c2``, ``a_c`` and ``I_c`` per class,
        each of shape ``(C,)``.
    """
    return instance.loss.expectations(
        class_moments(stats, instance), attack_size(stats, instance), instance.task
    )


def training_objective(adv_risk: _A, norm2: _A, ridge: Float[ArrayLike, ""]) -> _A:
    """The training objective ``Rtilde = R_eps + delta/2 |theta|^2`` (THEORY sections 6-7).

    The one definition used by the Polyak and line-search rules, the fixed points and the
    figures.

    Parameters
    ----------
    adv_risk : Array
        Adversarial population risk ``R_eps`` (ridge excluded).
    norm2 : Array
        ``|theta|^2``.
    ridge : Array
        Explicit ridge ``delta``.

    Returns
    -------
    Array
        ``adv_risk + ridge * norm2 / 2``, broadcast.
    """
    # plain arithmetic: works on JAX arrays (in the theory) and NumPy float64 arrays (figures)
    return adv_risk + 0.5 * ridge * norm2  # type: ignore[return-value]


def observables(stats: Statistics, instance: AbstractInstance) -> dict[str, Array]:
    """Population quantities of THEORY section 11 that depend on the statistics alone.

    The risks are mixtures ``sum_c pi_c (.)`` of the per-class expectations; the learning
    rate ``lr`` is added by the callers.

    Parameters
    ----------
    stats : Statistics
        Statistics of the iterate.
    instance : AbstractInstance
        The problem.

    Returns
    -------
    dict of str to Array
        ``adv_risk`` (``R_eps``, ridge excluded), ``clean_risk`` (``R_0``), ``norm``
        (``|theta|``), ``overlap`` (``<theta, theta*>``) and, for classification,
        ``clean_error`` ``sum_c pi_c Phi(-y_c m_c / sqrt(q_c))`` and ``robust_error``
        ``sum_c pi_c Phi((eps n - y_c m_c) / sqrt(q_c))``.
    """
    ex = expectations(stats, instance)
    pi = instance.weights
    norm_ = jnp.sqrt(stats.norm2)
    out = {
        "adv_risk": pi @ ex.adv_risk,
        "clean_risk": pi @ ex.clean_risk,
        "norm": norm_,
        "overlap": stats.overlap,
    }
    if instance.task == "classification":
        mom = class_moments(stats, instance)
        sd = jnp.sqrt(jnp.maximum(mom.q, 1e-300))
        ym = instance.labels * mom.m
        out["clean_error"] = pi @ norm.cdf(-ym / sd)
        out["robust_error"] = pi @ norm.cdf((instance.epsilon * norm_ - ym) / sd)
    return out
