"""Attacks against closed forms (linear models) and on a trained neural network."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import advdyn  # noqa: F401  (float64 available)
from advdyn.adversarial.attacks import Attack, linear_worst_case, perturb, project, random_in_ball


def _linear_problem(d=30, n=64, seed=0):
    rng = np.random.default_rng(seed)
    theta = jnp.asarray(rng.standard_normal(d))
    x = jnp.asarray(rng.standard_normal((n, d)))
    y = jnp.asarray(rng.standard_normal(n))
    return theta, x, y


def _sq_loss(theta):
    return lambda xa, ya: (xa @ theta - ya) ** 2


@pytest.mark.parametrize("norm", ["l2", "linf"])
@pytest.mark.parametrize("method", ["pgd", "fgm"])
def test_linear_worst_case_reached(norm, method):
    theta, x, y = _linear_problem()
    eps = 0.3
    attack = Attack(eps=eps, norm=norm, method=method, steps=10)
    adv = perturb(attack, _sq_loss(theta), x, y)
    exact = linear_worst_case(theta, x, y, eps, norm)
    # FGM's single step of length eps along the exact direction is the worst case, and every
    # PGD step keeps it there (float64: only rounding, ~1e-15); the brief asks for 1e-6.
    np.testing.assert_allclose(adv, exact, atol=1e-6, rtol=0)
    # the worst residual has the closed form |r| + eps |theta|_* (dual norm), independently
    dual = jnp.linalg.norm(theta) if norm == "l2" else jnp.sum(jnp.abs(theta))
    np.testing.assert_allclose(
        jnp.abs(adv @ theta - y), jnp.abs(x @ theta - y) + eps * dual, rtol=1e-10
    )


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_pgd_from_random_start_stays_feasible_and_beats_clean(norm):
    theta, x, y = _linear_problem(seed=1)
    x01 = jax.nn.sigmoid(x)  # inputs inside the domain [0, 1]
    attack = Attack(eps=0.2, norm=norm, steps=5, random_start=True, clip=(0.0, 1.0))
    adv = perturb(attack, _sq_loss(theta), x01, y, jax.random.key(0))
    delta = adv - x01
    size = jnp.linalg.norm(delta, axis=1) if norm == "l2" else jnp.max(jnp.abs(delta), axis=1)
    assert float(size.max()) <= 0.2 + 1e-12
    assert float(adv.min()) >= 0.0 and float(adv.max()) <= 1.0
    assert bool(jnp.all(_sq_loss(theta)(adv, y) >= _sq_loss(theta)(x01, y) - 1e-12))


def test_random_in_ball_and_project():
    key = jax.random.key(3)
    for norm in ("l2", "linf"):
        v = random_in_ball(key, (2000, 5), 0.5, norm, jnp.float64)
        size = jnp.linalg.norm(v, axis=1) if norm == "l2" else jnp.max(jnp.abs(v), axis=1)
        assert float(size.max()) <= 0.5 + 1e-12
        if norm == "l2":
            # uniform in the 5-ball: P(|v| <= r/2) = 2^-5; 2000 draws, binomial sd ~ 0.004
            assert abs(float(jnp.mean(size <= 0.25)) - 2.0**-5) < 0.02
    big = jnp.array([[3.0, 4.0]])
    np.testing.assert_allclose(project(big, 1.0, "l2"), [[0.6, 0.8]], rtol=1e-12)
    np.testing.assert_allclose(project(big, 1.0, "linf"), [[1.0, 1.0]])


def test_random_start_requires_key():
    with pytest.raises(ValueError, match="PRNG key"):
        perturb(Attack(eps=0.1, random_start=True), lambda a, b: a.sum(1), jnp.ones((2, 3)),
                jnp.ones(2))
    with pytest.raises(ValueError, match="norm"):
        Attack(eps=0.1, norm="l1")


def test_neural_net_pgd_at_least_fgm_above_clean():
    from advdyn.adversarial.data import load_digits
    from advdyn.adversarial.models import make_model
    from advdyn.adversarial.training import Schedule, adversarial_train, evaluate

    data = load_digits(n_train=600, n_test=300, seed=0)
    model = make_model("mlp", data.input_shape, 10, 32, seed=0)
    model = adversarial_train(model, data, None, None, Schedule(epochs=8, lr=0.1), seed=0).model
    eps = 0.1
    pgd = evaluate(model, data.x_test, data.y_test,
                   Attack(eps=eps, norm="linf", method="pgd", steps=10, clip=(0.0, 1.0)))
    fgm = evaluate(model, data.x_test, data.y_test,
                   Attack(eps=eps, norm="linf", method="fgm", clip=(0.0, 1.0)))
    # PGD's first step is FGM's step scaled by 2.5/10 then nine more ascent steps; on a trained
    # ReLU net it must do at least as well on average (no tolerance needed beyond float32)
    assert pgd["adv_loss"] >= fgm["adv_loss"] - 1e-6
    assert fgm["adv_loss"] > pgd["clean_loss"]
    assert pgd["clean_loss"] == pytest.approx(fgm["clean_loss"])
