"""The expected adversarial gradient in the eigenbasis (THEORY section 4).

    E grad = sum_c pi_c [ e_c mu_c + K_c (h_c1 theta + h_c2 theta*) ] + rho theta,
    rho    = eps * abar / |theta| + delta.

Coordinate-wise this is ``D_i theta_i + H_i theta*_i + f_i`` with

    D_i = sum_c pi_c lambda_{c,i} h_c1 + rho,   H_i = sum_c pi_c lambda_{c,i} h_c2,
    f_i = sum_c pi_c e_c mu_{c,i},

and the SGD noise weight is ``N_i = sum_c pi_c lambda_{c,i} I_c``. The ODE (and later the
SDE, the optimum and the limit) are all written in these per-direction coefficients.
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp

from advdyn.problem.instance import AbstractInstance
from advdyn.problem.losses import Expectations
from advdyn.theory.statistics import DirectionState, Statistics, expectations, statistics
from advdyn.typing import Array


class DriftTerms(eqx.Module):
    """Per-direction drift and noise coefficients at given statistics.

    Attributes
    ----------
    D, H, N : Array, shape (d,)
        ``D_i``, ``H_i`` and the noise weight ``N_i``; see the module docstring.
    pe : Array, shape (C,)
        ``pi_c e_c``, so that the mean term is ``f = pe @ means``
        (`mean_term`).
    rho : Array, scalar
        ``eps * abar / |theta| + delta``.
    expectations : Expectations
        The per-class expectations they were built from.
    """

    D: Array
    H: Array
    N: Array
    pe: Array
    rho: Array
    expectations: Expectations

    def mean_term(self, means: Array) -> Array:
        """Mean term ``f_i = sum_c pi_c e_c mu_{c,i}`` of the expected gradient.

        Parameters
        ----------
        means : Array, shape (C, d)
            Component means ``mu_c`` (a per-direction instance's ``means``).

        Returns
        -------
        Array, shape (d,)
        """
        return self.pe @ means


def drift_terms(stats: Statistics, instance: AbstractInstance) -> DriftTerms:
    """Evaluate the drift coefficients at ``stats``.

    At ``theta = 0`` the attack term ``theta/|theta|`` is taken as 0 (the subgradient
    choice of THEORY section 2), so ``rho = delta`` there.

    Parameters
    ----------
    stats : Statistics
        Statistics of the current iterate (or ODE state).
    instance : AbstractInstance
        Supplies ``pi_c``, ``lambda_{c,i}``, ``mu_c``, ``eps`` and ``delta``.

    Returns
    -------
    DriftTerms
        ``D``, ``H``, ``N``, ``pe``, ``rho`` and the expectations they were built from.
    """
    ex = expectations(stats, instance)
    pi = instance.weights
    n = jnp.sqrt(stats.norm2)
    safe_n = jnp.where(n > 0, n, 1.0)
    rho = jnp.where(n > 0, instance.epsilon * (pi @ ex.a) / safe_n, 0.0) + instance.ridge
    lam = instance.eigenvalues
    return DriftTerms(
        D=(pi * ex.h1) @ lam + rho,
        H=(pi * ex.h2) @ lam,
        N=(pi * ex.I) @ lam,
        pe=pi * ex.e,
        rho=rho,
        expectations=ex,
    )


def flow(
    state: DirectionState, instance: AbstractInstance
) -> tuple[DirectionState, DirectionState]:
    """The two parts of the ODE's velocity: ``d state/dt = gamma * drift + gamma^2 * noise``.

    In the error variables of `advdyn.theory.statistics` (``e = theta - theta*``),

        drift.err2_i        = -2 ( D_i err2_i + (D_i+H_i) err_teacher_i + sum_c pe_c err_mean_ci )
        drift.err_teacher_i =   -( D_i err_teacher_i + (D_i+H_i) theta*_i^2 + theta*_i f_i )
        drift.err_mean_ci   =   -( D_i err_mean_ci + (D_i+H_i) theta*_i mu_ci + mu_ci f_i )
        noise.err2_i        =   N_i / d,   noise.err_teacher = noise.err_mean = 0,

    which is THEORY's ``(P, Q, M)`` system after the substitution ``theta = e + theta*``,
    written with the constant products ``theta*_i^2``, ``theta*_i mu_ci``, ``mu_ci mu_c'i``
    so that a binned instance (`advdyn.theory.spectral`) evaluates it unchanged.

    Parameters
    ----------
    state : DirectionState
        Current per-direction state.
    instance : AbstractInstance
        Supplies the eigenvalues and the constant products.

    Returns
    -------
    drift, noise : DirectionState
        Velocity per unit ``gamma`` and per unit ``gamma^2``.
    """
    terms = drift_terms(statistics(state, instance), instance)
    D, DH, pe = terms.D, terms.D + terms.H, terms.pe
    ts_f = pe @ instance.teacher_mean  # theta*_i f_i
    mu_f = jnp.einsum("k,ckd->cd", pe, instance.mean_mean)  # mu_ci f_i
    drift = DirectionState(
        err2=-2 * (D * state.err2 + DH * state.err_teacher + pe @ state.err_mean),
        err_teacher=-(D * state.err_teacher + DH * instance.teacher2 + ts_f),
        err_mean=-(D * state.err_mean + DH * instance.teacher_mean + mu_f),
    )
    zeros = jnp.zeros_like
    noise = DirectionState(
        err2=terms.N / instance.d,
        err_teacher=zeros(state.err_teacher),
        err_mean=zeros(state.err_mean),
    )
    return drift, noise
