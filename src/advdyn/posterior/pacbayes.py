"""PAC-Bayes bounds on the robust risk (POSTERIOR section 2).

For a loss in ``[0, 1]`` (scale a loss in ``[0, L]`` by ``L``), ``n`` i.i.d. samples and
probability at least ``1 - delta`` over the sample, simultaneously for every posterior
``Q`` and a prior ``P`` fixed before seeing the data:

* McAllester-Maurer: ``E_Q L <= E_Q L_hat + sqrt((KL(Q||P) + ln(2 sqrt(n)/delta)) / (2n))``;
* Catoni-type (fixed ``lambda > 0``):
  ``E_Q L <= E_Q L_hat + (KL + ln(1/delta)) / lambda + lambda / (8 n)``.

Choosing the prior variance (or ``lambda``) from a grid of ``G`` values after seeing the
data costs a union bound: ``delta -> delta / G``, i.e. ``+ ln G`` inside the bracket.

The paper's route (reconstruction) replaces ``E_Q L_hat`` by its quadratic expansion
``L_hat(w*) + 1/2 (mu - w*)^T H (mu - w*) + 1/2 tr(H Sigma)``;
[`BoundTerms`][advdyn.posterior.pacbayes.BoundTerms] records
which of the terms are then estimates rather than exact values.
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from advdyn.precision import float64


@float64
def gaussian_kl(
    m1: Float[ArrayLike, " p"],
    S1: Float[ArrayLike, "p p"],
    m0: Float[ArrayLike, " p"],
    S0: Float[ArrayLike, "p p"],
) -> Float[Array, ""]:
    """``KL(N(m1, S1) || N(m0, S0))``.

    ``1/2 [tr(S0^-1 S1) + (m0 - m1)^T S0^-1 (m0 - m1) - p + ln det S0 - ln det S1]``.

    Parameters
    ----------
    m1, S1 : arrays, shapes (p,), (p, p)
        Posterior mean and covariance (positive definite).
    m0, S0 : arrays, shapes (p,), (p, p)
        Prior mean and covariance.

    Returns
    -------
    scalar
    """
    m1, m0 = jnp.asarray(m1), jnp.asarray(m0)
    L0 = jnp.linalg.cholesky(jnp.asarray(S0))
    L1 = jnp.linalg.cholesky(jnp.asarray(S1))
    p = m1.shape[0]
    A = jnp.linalg.solve(L0, L1)  # L0^-1 L1: tr(S0^-1 S1) = |A|_F^2
    b = jnp.linalg.solve(L0, m0 - m1)
    logdet0 = 2 * jnp.sum(jnp.log(jnp.diag(L0)))
    logdet1 = 2 * jnp.sum(jnp.log(jnp.diag(L1)))
    return 0.5 * (jnp.sum(A * A) + b @ b - p + logdet0 - logdet1)


@float64
def gaussian_kl_diag(m1, v1, m0, v0) -> Float[Array, ""]:
    """KL between Gaussians with diagonal covariances (variances ``v1``, ``v0``).

    Parameters
    ----------
    m1, v1 : arrays, shape (p,)
        Posterior mean and variances.
    m0, v0 : arrays or scalars broadcastable to (p,)
        Prior mean and variances.

    Returns
    -------
    scalar
    """
    m1, v1 = jnp.asarray(m1), jnp.asarray(v1)
    r = v1 / v0
    return 0.5 * jnp.sum(r + (jnp.asarray(m0) - m1) ** 2 / v0 - 1.0 - jnp.log(r))


@float64
def expected_quadratic_loss(
    loss_at_optimum,
    H: Float[ArrayLike, "p p"],
    mu: Float[ArrayLike, " p"],
    w_star: Float[ArrayLike, " p"],
    Sigma: Float[ArrayLike, "p p"],
) -> Float[Array, ""]:
    """``E_Q R(w) = R(w*) + 1/2 (mu - w*)^T H (mu - w*) + 1/2 tr(H Sigma)`` for a quadratic R.

    Parameters
    ----------
    loss_at_optimum : float
        ``R(w*)``.
    H : array, shape (p, p)
        Hessian.
    mu, w_star : arrays, shape (p,)
        Posterior mean and the optimum.
    Sigma : array, shape (p, p)
        Posterior covariance.

    Returns
    -------
    scalar
    """
    d = jnp.asarray(mu) - jnp.asarray(w_star)
    return loss_at_optimum + 0.5 * d @ jnp.asarray(H) @ d + 0.5 * jnp.sum(H * jnp.asarray(Sigma).T)


@float64
def mcallester_complexity(kl, n: int, delta: float):
    """``sqrt((KL + ln(2 sqrt(n) / delta)) / (2 n))`` (McAllester-Maurer).

    Parameters
    ----------
    kl : float or array
        ``KL(Q || P)``.
    n : int
        Sample size.
    delta : float
        Confidence parameter.

    Returns
    -------
    float or array
    """
    return jnp.sqrt((kl + jnp.log(2 * jnp.sqrt(n) / delta)) / (2 * n))


@float64
def catoni_complexity(kl, n: int, delta: float, lam):
    """``(KL + ln(1/delta)) / lambda + lambda / (8 n)`` (Catoni-type, fixed ``lambda``).

    Parameters
    ----------
    kl : float or array
        ``KL(Q || P)``.
    n : int
        Sample size.
    delta : float
        Confidence parameter.
    lam : float or array
        Temperature ``lambda > 0``.

    Returns
    -------
    float or array
    """
    return (kl + jnp.log(1.0 / delta)) / lam + lam / (8 * n)


@float64
def mcallester_bound(empirical, kl, n: int, delta: float):
    """McAllester-Maurer bound ``E_Q L_hat + sqrt((KL + ln(2 sqrt n / delta)) / 2n)``.

    Parameters
    ----------
    empirical : float or array
        ``E_Q L_hat`` (loss in ``[0, 1]``).
    kl, n, delta
        See `mcallester_complexity`.

    Returns
    -------
    float or array
    """
    return empirical + mcallester_complexity(kl, n, delta)


@float64
def catoni_bound(empirical, kl, n: int, delta: float, lam):
    """Catoni-type bound ``E_Q L_hat + (KL + ln 1/delta)/lambda + lambda/(8n)``.

    Parameters
    ----------
    empirical, kl, n, delta, lam
        See `catoni_complexity`.

    Returns
    -------
    float or array
    """
    return empirical + catoni_complexity(kl, n, delta, lam)


class GridBound(eqx.Module):
    """A bound optimised over a grid of priors (or temperatures), union bound included.

    Attributes
    ----------
    bound : scalar
        The smallest bound over the grid, each computed at confidence ``delta / G``.
    index : int
        Grid index attaining it.
    union_cost : scalar
        ``ln G``: what the grid costs inside the complexity term.
    bounds : array, shape (G,)
        All bounds (at ``delta / G``).
    """

    bound: Float[Array, ""]
    index: Array
    union_cost: Float[Array, ""]
    bounds: Float[Array, " G"]


@float64
def grid_bound(empirical, kl, n: int, delta: float, kind: str = "mcallester",
               lam=None) -> GridBound:
    """Minimise a PAC-Bayes bound over a grid, paying ``ln G`` for the choice.

    Parameters
    ----------
    empirical : array, shape (G,) or scalar
        ``E_Q L_hat`` for each grid point.
    kl : array, shape (G,)
        ``KL(Q || P_g)`` for each prior of the grid.
    n : int
        Sample size.
    delta : float
        Overall confidence parameter.
    kind : {"mcallester", "catoni"}
        Which bound.
    lam : array, shape (G,), optional
        Catoni temperatures (one per grid point; with a single prior, pass the same
        ``kl`` for every ``lam``).

    Returns
    -------
    GridBound
    """
    kl = jnp.atleast_1d(jnp.asarray(kl))
    G = kl.shape[0]
    emp = jnp.broadcast_to(jnp.asarray(empirical), kl.shape)
    d = delta / G
    if kind == "mcallester":
        bounds = mcallester_bound(emp, kl, n, d)
    elif kind == "catoni":
        if lam is None:
            raise ValueError("the Catoni bound needs lam")
        bounds = catoni_bound(emp, kl, n, d, jnp.broadcast_to(jnp.asarray(lam), kl.shape))
    else:
        raise ValueError(f"kind must be mcallester or catoni, got {kind!r}")
    i = jnp.argmin(bounds)
    return GridBound(bounds[i], i, jnp.log(jnp.asarray(float(G))), bounds)


class BoundTerms(eqx.Module):
    """The terms of a PAC-Bayes bound on the robust risk, and which are estimates.

    Attributes
    ----------
    train : scalar
        Robust training loss at the mean weights (scaled to ``[0, 1]``).
    curvature : scalar
        ``1/2 tr(H Sigma)`` (scaled): the quadratic expansion's price of the posterior spread.
    kl : scalar
        ``KL(Q || P)`` at the chosen grid point.
    complexity : scalar
        The bound's complexity term (confidence ``delta / G``).
    bound : scalar
        ``train + curvature + complexity``.
    grid_index : int
        The chosen prior (or temperature) of the grid.
    estimated : tuple of str
        Names of the terms that are estimates (Hutchinson/Lanczos, quadratic expansion,
        Lyapunov model) rather than exact evaluations.
    """

    train: Float[Array, ""]
    curvature: Float[Array, ""]
    kl: Float[Array, ""]
    complexity: Float[Array, ""]
    bound: Float[Array, ""]
    grid_index: Array
    estimated: tuple[str, ...] = eqx.field(static=True, default=())


@float64
def bound_terms(
    train, curvature, kl, n: int, delta: float = 0.05, kind: str = "mcallester",
    loss_scale: float = 1.0, lam=None, estimated: tuple[str, ...] = ("curvature", "kl"),
) -> BoundTerms:
    """Assemble the bound ``train + curvature + complexity(KL)`` with its terms.

    Parameters
    ----------
    train : float
        Robust training loss at the posterior mean (in the loss's units).
    curvature : float
        ``1/2 tr(H Sigma)`` (in the loss's units).
    kl : float or array, shape (G,)
        ``KL(Q || P_g)`` over a prior grid (the best grid point is taken, ``ln G`` paid).
    n : int
        Sample size.
    delta : float
        Confidence parameter.
    kind : {"mcallester", "catoni"}
        Which bound.
    loss_scale : float
        ``L`` such that the loss lies in ``[0, L]``; train and curvature are divided by it.
    lam : array, optional
        Catoni temperatures (see [`grid_bound`][advdyn.posterior.pacbayes.grid_bound]).
    estimated : tuple of str
        Which of ``train``, ``curvature``, ``kl`` are estimates.

    Returns
    -------
    BoundTerms
        Scaled to ``[0, 1]``.
    """
    emp = (jnp.asarray(train) + jnp.asarray(curvature)) / loss_scale
    g = grid_bound(emp, kl, n, delta, kind, lam)
    kl = jnp.atleast_1d(jnp.asarray(kl))
    k = kl[g.index]
    return BoundTerms(
        jnp.asarray(train) / loss_scale,
        jnp.asarray(curvature) / loss_scale,
        k,
        g.bound - emp,
        g.bound,
        g.index,
        tuple(estimated),
    )


def prior_variance_grid(low: float, high: float, size: int) -> np.ndarray:
    """Geometric grid of prior variances (its size enters the union bound).

    Parameters
    ----------
    low, high : float
        Range.
    size : int
        Number of grid points.

    Returns
    -------
    numpy.ndarray, shape (size,)
    """
    return np.geomspace(low, high, size)
