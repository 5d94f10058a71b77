"""Curvature and gradient noise: adversarial least-squares closed forms against autodiff and
Monte Carlo; Hutchinson and Lanczos against the exact Hessian of a small MLP."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from advdyn.adversarial import Attack, make_model
from advdyn.posterior import (
    adversarial_ls_gradient_moment,
    adversarial_ls_hessian,
    adversarial_ls_optimum,
    adversarial_ls_risk,
    adversarial_ls_sample_gradient,
    exact_hessian,
    flat_loss,
    gradient_covariance,
    gradient_noise_trace,
    hutchinson_trace,
    hvp,
    lanczos_top_k,
    subspace_gradient_covariance,
)

K = np.diag([0.5, 0.8, 1.2, 1.5])
TS = np.array([1.0, -0.7, 0.5, 0.3])
SIGMA, EPS = 0.3, 0.3
THETA = np.array([0.6, -0.2, 0.4, 0.1])


def test_ls_hessian_closed_form_matches_autodiff():
    H = adversarial_ls_hessian(THETA, K, TS, SIGMA, EPS)
    H_ad = jax.hessian(lambda t: adversarial_ls_risk(t, K, TS, SIGMA, EPS))(jnp.asarray(THETA))
    np.testing.assert_allclose(np.asarray(H), np.asarray(H_ad), atol=1e-12)


def test_ls_optimum_is_stationary():
    opt = adversarial_ls_optimum(K, TS, SIGMA, EPS)
    g = jax.grad(lambda t: adversarial_ls_risk(t, K, TS, SIGMA, EPS))(opt)
    assert np.abs(np.asarray(g)).max() < 1e-12
    # shrinkage towards 0 relative to the teacher
    assert np.linalg.norm(opt) < np.linalg.norm(TS)


def test_ls_gradient_moment_and_hessian_match_monte_carlo():
    M = 400_000
    kx, kz = jax.random.split(jax.random.key(7))
    x = jax.random.normal(kx, (M, 4)) * jnp.sqrt(jnp.diag(K))
    y = x @ TS + SIGMA * jax.random.normal(kz, (M,))
    g = np.asarray(adversarial_ls_sample_gradient(jnp.asarray(THETA), x, y, EPS))
    moment = np.asarray(adversarial_ls_gradient_moment(THETA, K, TS, SIGMA, EPS))
    emp = g.T @ g / M
    # entrywise SE of a mean of g_i g_j is sd(g_i g_j)/sqrt(M): 4 SE allows 16 entries
    se = np.sqrt(np.var(g[:, :, None] * g[:, None, :], axis=0) / M)
    assert np.all(np.abs(emp - moment) < 4 * se), (emp - moment) / se
    # the mean gradient is the gradient of the population risk
    mean = jax.grad(lambda t: adversarial_ls_risk(t, K, TS, SIGMA, EPS))(jnp.asarray(THETA))
    se_mean = g.std(axis=0) / np.sqrt(M)
    assert np.all(np.abs(g.mean(axis=0) - np.asarray(mean)) < 4 * se_mean)


def _small_mlp_loss():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (64, 10)).astype(np.float32)
    y = rng.integers(0, 3, 64).astype(np.int32)
    model = make_model("mlp", (10,), 3, width=8, seed=1)
    attack = Attack(0.05, norm="linf", method="pgd", steps=3)
    return flat_loss(model, x, y, attack, dtype=jnp.float64)


def test_hutchinson_and_lanczos_match_exact_hessian():
    loss = _small_mlp_loss()
    p = loss.w.shape[0]
    H = np.asarray(exact_hessian(loss))
    np.testing.assert_allclose(H, H.T, atol=1e-10)
    product = hvp(loss)
    v = np.random.default_rng(1).standard_normal(p)
    np.testing.assert_allclose(np.asarray(product(jnp.asarray(v))), H @ v, atol=1e-9)
    est = hutchinson_trace(product, p, jax.random.key(3), probes=200)
    # unbiased; its own standard error says how close it must be (4 SE)
    assert abs(float(est.value) - np.trace(H)) < 4 * float(est.stderr)
    top = lanczos_top_k(product, p, 3, jax.random.key(4), iterations=60)
    exact = np.sort(np.linalg.eigvalsh(H))[::-1][:3]
    np.testing.assert_allclose(np.asarray(top.values), exact, rtol=1e-6)
    # eigenvector residuals
    V = np.asarray(top.vectors)
    res = H @ V - V * np.asarray(top.values)
    assert np.linalg.norm(res, axis=0).max() < 1e-5 * exact[0]


def test_gradient_covariance_in_subspace():
    loss = _small_mlp_loss()
    C = np.asarray(gradient_covariance(loss))
    p = C.shape[0]
    V = np.linalg.qr(np.random.default_rng(2).standard_normal((p, 4)))[0]
    sub = np.asarray(subspace_gradient_covariance(loss, jnp.asarray(V)))
    np.testing.assert_allclose(sub, V.T @ C @ V, atol=1e-10)
    np.testing.assert_allclose(float(gradient_noise_trace(loss)), np.trace(C), rtol=1e-10)
