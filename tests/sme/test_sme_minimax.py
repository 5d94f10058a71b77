"""The alternating K-step PGD game against the exact inner maximum (linear least squares).

For a linear model K normalised l2 PGD steps of length alpha reach the radius
``min(K alpha, eps)`` exactly, so the game's loss, gradient and gradient covariance (hence
its SME) equal those of exact adversarial training at that radius: compared to round-off
(1e-10), for K alpha below and above eps.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from advdyn.sme import EmpiricalObjective
from advdyn.sme.minimax import alternating_descent, effective_radius, game_objective


@pytest.fixture
def data():
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.normal(size=(150, 3)))
    y = x @ jnp.asarray([1.0, -0.5, 0.3]) + 0.4 * jnp.asarray(rng.normal(size=150))
    return x, y, jnp.asarray(rng.normal(size=3))


@pytest.mark.parametrize(("steps", "alpha"), [(1, 0.1), (2, 0.1), (3, 0.2)])
def test_game_equals_exact_training_at_effective_radius(data, steps, alpha):
    x, y, theta = data
    eps = 0.5
    game = game_objective(x, y, steps, alpha, eps)
    r = effective_radius(steps, alpha, eps)
    assert r == pytest.approx(min(steps * alpha, eps))
    exact = EmpiricalObjective(x, y, linear_eps=r, n_params=3)
    assert float(game.loss(theta)) == pytest.approx(float(exact.loss(theta)), rel=1e-10)
    np.testing.assert_allclose(game.gradient(theta), exact.gradient(theta), atol=1e-10)
    np.testing.assert_allclose(game.noise_factor(theta), exact.noise_factor(theta), atol=1e-10)
    # the game's adv_risk observable is the exact inner maximum at the full radius eps
    full = EmpiricalObjective(x, y, linear_eps=eps, n_params=3)
    assert float(game.observables(theta)["adv_risk"]) == pytest.approx(
        float(full.loss(theta)), rel=1e-12)


def test_weak_adversary_ends_with_higher_adversarial_risk(data):
    """Training against eps_K < eps leaves R_eps above the exact game's (which minimises it)."""
    x, y, _ = data
    th0 = jnp.zeros(3)
    _, weak = alternating_descent(game_objective(x, y, 1, 0.1, 0.5), th0, 0.05, 20.0)
    _, strong = alternating_descent(EmpiricalObjective(x, y, linear_eps=0.5, n_params=3), th0,
                                    0.05, 20.0)
    assert strong[-1] < weak[-1]
    assert np.all(np.diff(strong[1:]) <= 1e-12)  # full-batch descent on R_eps: monotone
