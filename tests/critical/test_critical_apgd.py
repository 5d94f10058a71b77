"""APGD (CE, DLR, restarts) and the worst case over attacks: exact on linear models, at
least as strong as PGD-10 on the models we ship."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from advdyn.adversarial.apgd import (
    APGD,
    apgd_classifier,
    apgd_maximize,
    checkpoints,
    dlr_loss,
    strong_attacks,
    strong_evaluate,
)
from advdyn.adversarial.attacks import Attack, linear_worst_case


def test_checkpoints_follow_the_paper():
    # p = 0, 0.22, 0.41, 0.57, 0.70, 0.80, 0.87, 0.93, 0.99 -> ceil(p * 100)
    np.testing.assert_array_equal(checkpoints(100), [22, 41, 57, 70, 80, 87, 93, 99])


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_apgd_reaches_the_exact_linear_worst_case(norm):
    rng = np.random.default_rng(0)
    theta = jnp.asarray(rng.standard_normal(30))
    x = jnp.asarray(rng.standard_normal((64, 30)))
    y = jnp.asarray(rng.standard_normal(64))
    a = APGD(eps=0.3, norm=norm, steps=25, restarts=2)
    adv = apgd_maximize(a, lambda xa: (xa @ theta - y) ** 2, x, jax.random.key(0))
    exact = linear_worst_case(theta, x, y, 0.3, norm)
    # the worst residual |r| + eps |theta|_* is reached from any random start: l-infinity
    # after the first step of length 2 eps (corner), l2 after the step-size halvings converge
    # (float64: 1e-6 relative is far below any statistical scale)
    np.testing.assert_allclose((adv @ theta - y) ** 2, (exact @ theta - y) ** 2, rtol=1e-6)
    size = jnp.linalg.norm(adv - x, axis=1) if norm == "l2" else jnp.abs(adv - x).max(axis=1)
    assert float(size.max()) <= 0.3 + 1e-12


def test_apgd_ce_matches_the_linear_classifier_worst_case():
    # two-class linear classifier: CE increases in the margin's negative, whose l-infinity
    # worst case is x - eps s sign(w1 - w0), s = +1 for class 1 and -1 for class 0
    rng = np.random.default_rng(1)
    w = jnp.asarray(rng.standard_normal((10, 2)))
    x = jnp.asarray(rng.standard_normal((40, 10)))
    y = jnp.asarray(rng.integers(0, 2, 40))
    adv = apgd_classifier(APGD(eps=0.2, norm="linf", steps=10), lambda v: v @ w, x, y,
                          jax.random.key(1))
    s = jnp.where(y == 1, 1.0, -1.0)[:, None]
    exact = x - 0.2 * s * jnp.sign(w[:, 1] - w[:, 0])[None, :]
    np.testing.assert_allclose(adv, exact, atol=1e-12)


def test_dlr_hand_computed():
    z = jnp.array([[3.0, 1.0, 0.0, -1.0]])
    # y = 0: -(3 - 1)/(3 - 0) ; y = 1: -(1 - 3)/(3 - 0)
    np.testing.assert_allclose(dlr_loss(z, jnp.array([0])), [-2 / 3], rtol=1e-6)
    np.testing.assert_allclose(dlr_loss(z, jnp.array([1])), [2 / 3], rtol=1e-6)


def _apgd_vs_pgd(kind, n_train, n_test, epochs, steps, restarts):
    from advdyn.adversarial.data import load_digits
    from advdyn.adversarial.models import make_model
    from advdyn.adversarial.training import Schedule, adversarial_train

    data = load_digits(n_train=n_train, n_test=n_test, seed=0)
    model = make_model(kind, data.input_shape, 10, 32, seed=0)
    att = Attack(eps=0.03, norm="linf", steps=3, clip=(0.0, 1.0))
    model = adversarial_train(model, data, att, None, Schedule(epochs=epochs, lr=0.1),
                              seed=0).model
    pgd = Attack(eps=0.08, norm="linf", steps=10, clip=(0.0, 1.0))
    r = strong_evaluate(model, data.x_test, data.y_test,
                        strong_attacks(pgd, 10, steps, restarts))
    # attack 0 is PGD-10, 1 APGD-CE, 2 APGD-DLR. Same samples, so the comparison is paired:
    # "within noise" = one test sample for the accuracy, 1% for the mean loss
    assert r["loss_1"] >= r["loss_0"] * 0.99
    assert r["acc_1"] <= r["acc_0"] + 1 / n_test
    assert r["adv_acc"] <= min(r["acc_0"], r["acc_1"], r["acc_2"]) + 1e-12
    assert r["adv_loss"] >= max(r["loss_0"], r["loss_1"], r["loss_2"]) - 1e-6
    assert r["adv_acc"] < r["clean_acc"]


def test_apgd_at_least_as_strong_as_pgd10_mlp():
    _apgd_vs_pgd("mlp", 200, 150, 4, 10, 1)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_apgd_at_least_as_strong_as_pgd10_shipped_models_full(kind):
    _apgd_vs_pgd(kind, 1000, 500, 10, 50, 3)
