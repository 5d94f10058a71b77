"""The optimum and the constant-rate limit as pure, differentiable functions.

Tolerances:
- Values against an independent minimisation: 1e-9 relative. The fixed point is solved to a
  residual of ~1e-12; the reference minimises the closed-form risk over the ridge family
  ``theta = (K + lambda I)^{-1} K theta*`` (where the least-squares optimum lies, THEORY 7)
  with a bounded scalar search to ``xatol = 1e-10`` in ``lambda``, and the risk is flat
  there, so its error is quadratic in that: far below 1e-9.
- Gradients against central differences: 1e-6 relative (the issue's figure). The step is
  ``h = 1e-5`` times the parameter: the difference's truncation error ``h^2 f''' / 6`` is
  ~1e-11 of the derivative for these smooth (analytic away from the kinks) functions, its
  rounding error ``1e-16 f / h`` ~1e-11 too, and the fixed point's own error (~1e-12
  relative) over ``h`` ~1e-7 at worst; every evaluated point stays more than ``100 h`` from
  a kink of the optimum.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from scipy.optimize import minimize_scalar

from advdyn.config.build import binned_from_config
from advdyn.config.schema import ProblemConfig
from advdyn.precision import x64
from advdyn.theory.stationary import adversarial_optimum, constant_rate_limit, optimum

C0 = np.sqrt(2 / np.pi)


def _binned(noise=0.0, eps=0.5, bins=8):
    cfg = ProblemConfig(d=10**6, loss="least_squares", epsilon=eps,
                        spectrum={"kind": "uniform", "low": 0.2, "high": 1.8},
                        task={"kind": "regression", "noise": noise})
    return binned_from_config(cfg, bins)


def _with_eps(base, eps):
    return eqx.tree_at(lambda i: i.epsilon, base, eps)


def _ridge_family_minimum(inst, eps):
    """min over lambda of the closed-form adversarial risk on theta = (K + lambda)^-1 K theta*."""
    lam = np.asarray(inst.eigenvalues[0])
    t2 = np.asarray(inst.teacher2) * np.asarray(inst.multiplicity)  # per bin |theta*_bin|^2
    sigma2 = float(inst.noise) ** 2

    def risk(log_ridge):
        shrink = lam / (lam + np.exp(log_ridge))
        s = np.sqrt(np.sum(lam * (1 - shrink) ** 2 * t2) + sigma2)
        n = np.sqrt(np.sum(shrink**2 * t2))
        return (s**2 + 2 * eps * n * C0 * s + eps**2 * n**2) / 2

    res = minimize_scalar(risk, bounds=(-30.0, 10.0), method="bounded",
                          options={"xatol": 1e-10})
    teacher = risk(-np.inf) if sigma2 == 0 else np.inf  # theta = theta*
    return min(res.fun, teacher)


def test_noiseless_least_squares_optimum_leaves_the_teacher_past_the_kink():
    # exact labels: theta* is optimal (the residual's kink) up to
    # eps_c = sqrt(2/pi) |theta*| / |K^(-1/2) theta*| = 0.683 here, and beyond it the
    # optimum moves; the solve used to stay at theta* there (risk 0.32 instead of 0.3117
    # at eps = 0.8) and failed to converge at eps = 0.95
    base = _binned()
    lam = np.asarray(base.eigenvalues[0])
    t2 = np.asarray(base.teacher2) * np.asarray(base.multiplicity)
    eps_c = C0 * np.sqrt(t2.sum() / np.sum(t2 / lam))
    assert 0.6 < eps_c < 0.7
    for eps in (0.5, 0.8, 0.95):
        point = adversarial_optimum(_with_eps(base, eps))
        assert bool(point.converged)
        np.testing.assert_allclose(float(point.adv_risk), _ridge_family_minimum(base, eps),
                                   rtol=1e-9)
        assert (float(point.mean_sq_dist) == 0.0) == (eps < eps_c)


def test_optimum_gradient_matches_finite_differences_at_and_between_kinks():
    # noiseless: at theta* (0.5), past the kink (0.95), at theta = 0 (3.0); with label noise
    # (0.5): the plain fixed point
    cases = [(0.0, 0.5), (0.0, 0.95), (0.0, 3.0), (0.3, 0.5)]
    noise = jnp.array([c[0] for c in cases])
    eps = jnp.array([c[1] for c in cases])
    base = _binned()

    def risk(sigma, e):
        inst = eqx.tree_at(lambda i: (i.noise, i.epsilon), base, (sigma, e))
        return optimum(inst).adv_risk

    with x64():
        grads = jax.jit(jax.vmap(jax.grad(risk, argnums=1)))(noise, eps)
        f = jax.jit(jax.vmap(risk))
        h = 1e-5 * eps
        fd = (f(noise, eps + h) - f(noise, eps - h)) / (2 * h)
    assert np.all(np.isfinite(np.asarray(grads)))
    np.testing.assert_allclose(np.asarray(grads), np.asarray(fd), rtol=1e-6)
    # and the derivative of the minimum itself (envelope theorem: d/deps min_theta R =
    # dR/deps at the minimiser = |theta| (c0 s + eps |theta|), THEORY 5), which a solve
    # stuck at a wrong point fails even where its differences agree with its gradient
    points = [adversarial_optimum(eqx.tree_at(lambda i: (i.noise, i.epsilon), base, c))
              for c in cases]
    envelope = [np.sqrt(p.stats.norm2) * (C0 * np.sqrt(p.stats.qe[0] + c[0] ** 2)
                                          + c[1] * np.sqrt(p.stats.norm2))
                for p, c in zip(points, cases, strict=True)]
    np.testing.assert_allclose(np.asarray(grads), np.asarray(envelope, dtype=float), rtol=1e-6)
    assert float(grads[2]) == 0.0  # theta = 0: R = E y^2 / 2 does not depend on eps


def test_constant_rate_limit_is_pure_and_differentiable():
    base = _binned(noise=0.3)
    gammas = jnp.array([0.4, 1.0])

    def risk(gamma, e):
        return constant_rate_limit(_with_eps(base, e), gamma).adv_risk

    with x64():
        # one program: values (for the differences too) and gradients, batched
        f = jax.jit(jax.vmap(jax.value_and_grad(risk, argnums=(0, 1))))
        e = jnp.full_like(gammas, 0.5)
        values, grads = f(gammas, e)
        hg, he = 1e-5 * gammas, 1e-5 * e
        fd_gamma = (f(gammas + hg, e)[0] - f(gammas - hg, e)[0]) / (2 * hg)
        fd_eps = (f(gammas, e + he)[0] - f(gammas, e - he)[0]) / (2 * he)
    host = constant_rate_limit(_with_eps(base, 0.5), float(gammas[1]))
    assert bool(host.converged)
    np.testing.assert_allclose(float(values[1]), float(host.adv_risk), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(grads[0]), np.asarray(fd_gamma), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(grads[1]), np.asarray(fd_eps), rtol=1e-6)
    assert np.all(np.asarray(grads[0]) > 0)  # a larger rate, a larger stationary risk
