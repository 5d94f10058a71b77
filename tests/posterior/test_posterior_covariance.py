"""POSTERIOR section 4, checks 1-4: stationary and transient covariance of SGD near an optimum.

Monte Carlo tolerances: for M independent chains the sample variance of a Gaussian
coordinate has standard error ``var sqrt(2 / M)``; every chain comparison is at 3 SE.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from advdyn.posterior import (
    UnstableRateError,
    adversarial_ls_gradient_moment,
    adversarial_ls_hessian,
    adversarial_ls_optimum,
    adversarial_ls_sample_gradient,
    eigenbasis_variance,
    least_squares_fixed_point,
    least_squares_transient,
    noise_matrix,
    solve_discrete_lyapunov,
    stationary_covariance,
    transient_covariance,
    transition_matrix,
)

SPECTRUM = np.array([0.5, 0.8, 1.2, 1.5])
K = np.diag(SPECTRUM)
SIGMA = 0.3
THETA_STAR = np.array([1.0, -0.7, 0.5, 0.3])


def _random_commuting(rng, p, eta, m):
    U, _ = np.linalg.qr(rng.standard_normal((p, p)))
    h = rng.uniform(0.1, 0.95 * 2 * (1 + m) / eta, p)
    c = rng.uniform(0.1, 2.0, p)
    return U @ np.diag(h) @ U.T, U @ np.diag(c) @ U.T, U, h, c


@pytest.mark.parametrize("m", [0.0, 0.5, 0.9])
def test_check1_momentum_closed_form_matches_lyapunov(m):
    rng = np.random.default_rng(1)
    eta, batch = 0.1, 8
    for _ in range(3):
        H, C, U, h, c = _random_commuting(rng, 6, eta, m)
        closed = U @ np.diag(np.asarray(eigenbasis_variance(h, c, eta, m, batch))) @ U.T
        for method in ("kron", "doubling"):
            S = stationary_covariance(H, C, eta, m, batch, method=method)
            assert S.method == method
            np.testing.assert_allclose(np.asarray(S.position), closed, rtol=0,
                                       atol=1e-10 * np.abs(closed).max())
        auto = stationary_covariance(H, C, eta, m, batch)
        assert auto.method == "eigen"
        np.testing.assert_allclose(np.asarray(auto.position), closed, atol=1e-12)


def test_repeated_curvature_keeps_the_off_diagonal_noise():
    # H = I commutes with every C, but eigh(I) need not diagonalise C: the stationary
    # covariance is eta C / (B h (2 - eta h)) = C / 19 entry by entry (m = 0, B = 1)
    C = np.array([[1.0, 0.5], [0.5, 1.0]])
    S = stationary_covariance(np.eye(2), C, 0.1)
    assert S.method == "eigen"
    np.testing.assert_allclose(np.asarray(S.position), C / 19, rtol=1e-14)


def _curvatures(kind, rng, p, eta, m):
    """Hessians whose eigenbasis does not diagonalise a generic C, and one such C."""
    U, _ = np.linalg.qr(rng.standard_normal((p, p)))
    h = rng.uniform(0.1, 0.95 * 2 * (1 + m) / eta, p)
    if kind == "repeated":
        h[: p // 2] = h[0]
    elif kind == "nearly repeated":  # commutes with C to ~1e-12, below any tolerance
        h[: p // 2] = h[0] * (1 + 1e-12 * np.arange(p // 2))
    H = U @ np.diag(h) @ U.T
    Y = rng.standard_normal((p, p))
    if kind == "non-commuting":
        C = Y @ Y.T / p
    else:  # commutes with H up to rounding, dense inside the (nearly) repeated eigenspace
        k = p // 2
        Ce = np.diag(rng.uniform(0.1, 2.0, p))
        Ce[:k, :k] = Y[:k, :k] @ Y[:k, :k].T / k + 0.1 * np.eye(k)
        C = U @ Ce @ U.T
    return H, C


@pytest.mark.parametrize("kind", ["repeated", "nearly repeated", "non-commuting"])
@pytest.mark.parametrize(("m", "batch"), [(0.0, 1), (0.5, 8), (0.9, 3)])
def test_eigenbasis_path_matches_dense_solve(kind, m, batch):
    # the dense (kron) solve of the 2p x 2p Lyapunov system is the reference; both are
    # exact, so they agree to rounding amplified by the conditioning of I - A (x) A
    # (~ 1 / (eta h_min (1 - m)) <= 1e3 here): 1e-11 of the largest entry
    rng = np.random.default_rng(7)
    eta, p = 0.1, 6
    H, C = _curvatures(kind, rng, p, eta, m)
    dense = stationary_covariance(H, C, eta, m, batch, method="kron")
    scale = np.abs(np.asarray(dense.full)).max()
    for method in ("eigen", "auto"):
        fast = stationary_covariance(H, C, eta, m, batch, method=method)
        np.testing.assert_allclose(np.asarray(fast.position), np.asarray(dense.position),
                                   rtol=0, atol=1e-11 * scale)
        np.testing.assert_allclose(np.asarray(fast.full), np.asarray(dense.full), rtol=0,
                                   atol=1e-11 * scale)
        assert fast.method == "eigen"


def test_doubling_solves_lyapunov_without_commuting():
    rng = np.random.default_rng(2)
    p = 15
    X = rng.standard_normal((p, 2 * p))
    H = X @ X.T / (2 * p) + 0.1 * np.eye(p)
    Y = rng.standard_normal((p, p))
    C = Y @ Y.T / p
    A = np.asarray(transition_matrix(H, 0.2, 0.9))
    Q = np.asarray(noise_matrix(C, 0.2, 4))
    S_dbl = np.asarray(solve_discrete_lyapunov(A, Q, "doubling"))
    S_kron = np.asarray(solve_discrete_lyapunov(A, Q, "kron"))
    np.testing.assert_allclose(S_dbl, S_kron, atol=1e-10 * np.abs(S_kron).max())
    np.testing.assert_allclose(S_dbl, A @ S_dbl @ A.T + Q, atol=1e-11 * np.abs(S_dbl).max())


def test_unstable_rate_names_rate_and_curvature():
    with pytest.raises(UnstableRateError, match=r"eta = 1\.5.*h_max = 1\.5"):
        stationary_covariance(K, K, 1.5, 0.0)
    # momentum widens the stable range to eta h < 2 (1 + m)
    stationary_covariance(K, K, 1.5, 0.5)


def _ls_chains(key, theta0, eta_of_step, steps, eps=0.0, theta_star=THETA_STAR):
    """Independent SGD chains (batch 1) on adversarial least squares; returns iterates."""
    sq = jnp.sqrt(jnp.asarray(SPECTRUM))
    ts = jnp.asarray(theta_star)

    def body(theta, k):
        kx, kz = jax.random.split(jax.random.fold_in(key, k))
        x = sq * jax.random.normal(kx, theta.shape)
        y = x @ ts + SIGMA * jax.random.normal(kz, theta.shape[:1])
        if eps == 0.0:
            g = (jnp.sum(x * theta, -1) - y)[:, None] * x
        else:
            g = adversarial_ls_sample_gradient(theta, x, y, eps)
        return theta - eta_of_step(k) * g, None

    theta, _ = jax.lax.scan(body, theta0, jnp.arange(steps))
    return theta


@pytest.mark.parametrize(
    "M", [10_000, pytest.param(40_000, marks=pytest.mark.slow)], ids=["reduced", "full"]
)
def test_check2_multiplicative_fixed_point_matches_chains(M):
    eta = 0.05
    theta0 = jnp.broadcast_to(jnp.asarray(THETA_STAR), (M, 4))
    theta = _ls_chains(jax.random.key(20), theta0, lambda k: eta, 600)
    var = np.asarray(jnp.var(theta - THETA_STAR, axis=0))
    exact = np.diag(np.asarray(least_squares_fixed_point(K, SIGMA, eta).position))
    se = exact * np.sqrt(2 / M)
    assert np.all(np.abs(var - exact) < 3 * se), (var - exact) / se
    # the additive (paper-type) formula, noise frozen at the optimum, is 12-15% low here
    additive = np.diag(np.asarray(stationary_covariance(K, SIGMA**2 * K, eta).position))
    shortfall = 1 - additive / exact
    assert np.all((shortfall > 0.10) & (shortfall < 0.17)), shortfall


def _adv_lyapunov_error(eta, M, steps, seed):
    eps = 0.3
    opt = np.asarray(adversarial_ls_optimum(K, THETA_STAR, SIGMA, eps))
    H = adversarial_ls_hessian(opt, K, THETA_STAR, SIGMA, eps)
    C = adversarial_ls_gradient_moment(opt, K, THETA_STAR, SIGMA, eps)
    S = np.asarray(stationary_covariance(H, C, eta).position)
    theta0 = jnp.broadcast_to(jnp.asarray(opt), (M, 4))
    theta = np.asarray(_ls_chains(jax.random.key(seed), theta0, lambda k: eta, steps, eps))
    emp = np.cov(theta.T)
    return np.linalg.norm(S - emp) / np.linalg.norm(emp)


@pytest.mark.slow
def test_check3_adversarial_lyapunov_error_scales_like_eta():
    # 20,000 chains: entry-wise relative SE ~ sqrt(2/M) = 1%, so the errors (0.20, 0.069
    # in the spec) are resolved to about +-0.02; their ratio must track eta (2.5)
    e05 = _adv_lyapunov_error(0.05, 20_000, 800, 30)
    e02 = _adv_lyapunov_error(0.02, 20_000, 2000, 31)
    assert 0.16 < e05 < 0.24, e05
    assert 0.045 < e02 < 0.095, e02
    assert 2.0 < e05 / e02 < 4.0, e05 / e02


def test_check3_reduced():
    # 5,000 chains: relative SE per entry ~ sqrt(2/5000) = 2%, the Frobenius noise a few
    # percent, so the bands are wider than in the full check; the ordering is the test of
    # the O(eta) scaling
    e05 = _adv_lyapunov_error(0.05, 5_000, 800, 30)
    e02 = _adv_lyapunov_error(0.02, 5_000, 2000, 31)
    assert 0.14 < e05 < 0.26, e05
    assert 0.03 < e02 < 0.11, e02
    assert e05 > 1.6 * e02, (e05, e02)


@pytest.mark.parametrize(
    "M", [10_000, pytest.param(40_000, marks=pytest.mark.slow)], ids=["reduced", "full"]
)
def test_check4_transient_after_decay_matches_chains(M):
    eta1, eta2 = 0.05, 0.005
    before = 600
    steps = np.array([0, 10, 100])

    def rate(k):
        return jnp.where(k < before, eta1, eta2)

    theta0 = jnp.broadcast_to(jnp.asarray(THETA_STAR), (M, 4))
    key = jax.random.key(40)
    S0 = least_squares_fixed_point(K, SIGMA, eta1).full
    tr = least_squares_transient(K, SIGMA, eta2, S0, steps)
    theta = _ls_chains(key, theta0, rate, before)
    done = before
    for i, k in enumerate(steps):
        theta_k = _ls_chains(jax.random.fold_in(key, 10_000 + i), theta, lambda j: eta2, k - done)
        theta, done = theta_k, k
        var = np.asarray(jnp.var(theta - THETA_STAR, axis=0))
        exact = np.diag(np.asarray(tr.total[i]))
        se = exact * np.sqrt(2 / M)
        assert np.all(np.abs(var - exact) < 3 * se), (k, (var - exact) / se)
    # shrinkage: the covariance falls towards the new fixed point, propagation decays
    assert np.all(np.diag(tr.total[2]) < np.diag(tr.total[0]))
    assert np.all(np.diag(tr.propagation[2]) < np.diag(tr.propagation[1]))


def test_additive_transient_equals_iterated_map():
    rng = np.random.default_rng(5)
    H, C, *_ = _random_commuting(rng, 3, 0.9, 0.5)
    eta, m, B = 0.3, 0.5, 2
    S_old = stationary_covariance(H, C, 3 * eta, m, B, method="kron").full
    tr = transient_covariance(H, C, eta, S_old, [0, 1, 7, 40], m, B)
    A = np.asarray(transition_matrix(H, eta, m))
    Q = np.asarray(noise_matrix(C, eta, B))
    S = np.asarray(S_old)
    out = {}
    for k in range(41):
        out[k] = S[:3, :3]
        S = A @ S @ A.T + Q
    for i, k in enumerate([0, 1, 7, 40]):
        np.testing.assert_allclose(np.asarray(tr.total[i]), out[k], atol=1e-12)
    np.testing.assert_allclose(np.asarray(tr.injected[0]), 0.0, atol=1e-12)
