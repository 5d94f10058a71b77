"""PAC-Bayes pieces: Gaussian KL and the expected quadratic loss against Monte Carlo, and
POSTERIOR check 5 (the bound holds on >= 95% of resampled training sets)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.stats import norm

from advdyn.posterior import (
    bound_terms,
    expected_quadratic_loss,
    gaussian_kl,
    gaussian_kl_diag,
    grid_bound,
    mcallester_bound,
    prior_variance_grid,
)


def _spd(rng, p):
    X = rng.standard_normal((p, 2 * p))
    return X @ X.T / (2 * p) + 0.2 * np.eye(p)


def test_gaussian_kl_against_monte_carlo_and_diagonal():
    rng = np.random.default_rng(0)
    p = 3
    m1, m0 = rng.standard_normal(p), rng.standard_normal(p)
    S1, S0 = _spd(rng, p), _spd(rng, p)
    kl = float(gaussian_kl(m1, S1, m0, S0))
    w = rng.multivariate_normal(m1, S1, size=200_000)

    def logpdf(w, m, S):
        d = w - m
        sol = np.linalg.solve(S, d.T).T
        return -0.5 * np.sum(d * sol, 1) - 0.5 * np.linalg.slogdet(2 * np.pi * S)[1]

    r = logpdf(w, m1, S1) - logpdf(w, m0, S0)
    assert abs(r.mean() - kl) < 4 * r.std() / np.sqrt(len(r))
    assert float(gaussian_kl(m1, S1, m1, S1)) == pytest.approx(0.0, abs=1e-12)
    v1, v0 = rng.uniform(0.5, 2, p), rng.uniform(0.5, 2, p)
    full = float(gaussian_kl(m1, np.diag(v1), m0, np.diag(v0)))
    np.testing.assert_allclose(float(gaussian_kl_diag(m1, v1, m0, v0)), full, rtol=1e-12)


def test_expected_quadratic_loss_against_monte_carlo():
    rng = np.random.default_rng(1)
    p = 4
    H, S = _spd(rng, p), 0.1 * _spd(rng, p)
    w_star, mu = rng.standard_normal(p), rng.standard_normal(p)
    w = rng.multivariate_normal(mu, S, size=200_000)
    d = w - w_star
    R = 0.7 + 0.5 * np.sum(d @ H * d, 1)
    exact = float(expected_quadratic_loss(0.7, H, mu, w_star, S))
    assert abs(R.mean() - exact) < 4 * R.std() / np.sqrt(len(R))


def test_grid_pays_union_bound():
    kl = jnp.array([5.0, 3.0, 8.0])
    g = grid_bound(0.1, kl, 1000, 0.05)
    assert int(g.index) == 1
    assert float(g.bound) == pytest.approx(float(mcallester_bound(0.1, 3.0, 1000, 0.05 / 3)))
    assert float(g.union_cost) == pytest.approx(np.log(3))
    single = grid_bound(0.1, kl[1:2], 1000, 0.05)
    assert float(single.bound) < float(g.bound)
    t = bound_terms(0.2, 0.1, kl, 1000, loss_scale=2.0)
    assert float(t.train) == pytest.approx(0.1) and float(t.curvature) == pytest.approx(0.05)
    assert float(t.bound) == pytest.approx(float(t.train + t.curvature + t.complexity))
    assert t.estimated == ("curvature", "kl") and int(t.grid_index) == 1


def _check5(n_sets, seed):
    """Fraction of resampled training sets on which the bound exceeds the robust risk.

    Two Gaussian classes ``x = y mu + z`` in ``d = 10``, the l2-robust 0-1 loss of a linear
    classifier at radius ``eps`` (exact worst case ``y <w, x> - eps |w| <= 0``), posterior
    ``N(w_hat, s^2 I)`` around the class-mean classifier, prior ``N(0, v I)`` with ``v``
    from a 10-point grid (union bound). The posterior expectations are Monte Carlo over 64
    draws shared by train and test terms; the robust test risk of each draw is exact:
    ``Phi(eps - <w, mu>/|w|)``.
    """
    d, n, eps, s2, delta, draws = 10, 200, 0.3, 0.05, 0.05, 64
    key = jax.random.key(seed)
    mu = jnp.zeros(d).at[0].set(1.0)
    grid = jnp.asarray(prior_variance_grid(0.01, 10.0, 10))

    def one(k):
        ky, kz, kw = jax.random.split(k, 3)
        y = jnp.where(jax.random.bernoulli(ky, 0.5, (n,)), 1.0, -1.0)
        x = y[:, None] * mu + jax.random.normal(kz, (n, d))
        w_hat = jnp.mean(y[:, None] * x, 0)
        w = w_hat + jnp.sqrt(s2) * jax.random.normal(kw, (draws, d))
        wn = jnp.linalg.norm(w, axis=1)
        margins = y[None, :] * (w @ x.T) - eps * wn[:, None]
        train = jnp.mean(margins <= 0)
        test = jnp.mean(norm.cdf(eps - (w @ mu) / wn))
        kl = jax.vmap(lambda v: gaussian_kl_diag(w_hat, jnp.full(d, s2), 0.0, v))(grid)
        # Catoni over (prior, lambda) pairs: 10 x 4 grid, union bound ln 40
        lams = jnp.asarray([0.25, 0.5, 1.0, 2.0]) * jnp.sqrt(8 * n)
        cat = grid_bound(train, jnp.repeat(kl, 4), n, delta, "catoni", jnp.tile(lams, 10))
        return grid_bound(train, kl, n, delta).bound, cat.bound, test

    bounds, catoni, risks = jax.jit(jax.vmap(one))(jax.random.split(key, n_sets))
    return (float(jnp.mean(bounds >= risks)), float(jnp.mean(bounds)), float(jnp.mean(risks)),
            float(jnp.mean(catoni >= risks)), float(jnp.mean(catoni)))


@pytest.mark.parametrize(
    "n_sets", [100, pytest.param(200, marks=pytest.mark.slow)], ids=["reduced", "full"]
)
def test_check5_bound_validity(n_sets):
    # with 100 sets, 95% means at most 5 violations (the bound holds with prob >= 0.95 per
    # set, so the count of violations is at most Binomial(100, 0.05) in law)
    frac, mean_bound, mean_risk, frac_cat, mean_cat = _check5(n_sets, 50)
    assert frac >= 0.95, (frac, mean_bound, mean_risk)
    assert frac_cat >= 0.95, (frac_cat, mean_cat, mean_risk)
    # non-vacuous here (below 1), so the check has teeth: a bound that is too small fails
    assert mean_bound < 1.0 and mean_cat < 1.0
