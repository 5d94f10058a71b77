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
import jax
import jax.numpy as jnp

from .losses import Expectations
from .problem import ProblemInstance
from .statistics import Statistics, expectations

Array = jax.Array


class DriftTerms(eqx.Module):
    """Per-direction drift and noise coefficients at given statistics.

    Attributes
    ----------
    D, H, N : Array, shape (d,)
        ``D_i``, ``H_i`` and the noise weight ``N_i``; see the module docstring.
    pe : Array, shape (C,)
        ``pi_c e_c``, so that the mean term is ``f = pe @ means``
        (:meth:`mean_term`).
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
        """``f_i = sum_c pi_c e_c mu_{c,i}`` for the given means, shape ``(d,)``."""
        return self.pe @ means


def drift_terms(stats: Statistics, instance: ProblemInstance) -> DriftTerms:
    """Evaluate the drift coefficients at ``stats``.

    At ``theta = 0`` the attack term ``theta/|theta|`` is taken as 0 (the subgradient
    choice of THEORY section 2), so ``rho = delta`` there.

    Parameters
    ----------
    stats : Statistics
        Statistics of the current iterate (or ODE state).
    instance : ProblemInstance
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
