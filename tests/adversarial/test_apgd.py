"""APGD (CE, DLR, targeted DLR, restarts) and the worst case over attacks: exact on linear
models, AutoAttack's per-sample bookkeeping, at least as strong as PGD-10 on the models we
ship."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from advdyn.adversarial.apgd import (
    APGD,
    apgd_classifier,
    apgd_maximize,
    attack_names,
    checkpoints,
    dlr_loss,
    strong_attacks,
    strong_evaluate,
    targeted_dlr_loss,
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
    a = APGD(eps=0.3, norm=norm, steps=25, restarts=4)
    adv = apgd_maximize(a, lambda xa: (xa @ theta - y) ** 2, x, jax.random.key(0))
    exact = linear_worst_case(theta, x, y, 0.3, norm)
    # the worst residual |r| + eps |theta|_* is reached from every random start whose
    # residual has the sign of the clean one: l-infinity after the first step of length 2 eps
    # (the corner), l2 after the step-size halvings converge. A start can flip the sign only
    # where |r| < |<theta, delta_0>| (a few samples with |r| ~ 0.1-0.4 here); ascent then ends
    # on the opposite corner, a local maximum, so 4 restarts (2 left one sample there).
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


# issue 25's toy: logits W x + b, clean point (0, 0) of class 0, l-infinity radius 1, inputs
# in [0, 1]^2. The cross-entropy is largest at the corner (1, 1), which is classified
# correctly; class 1 wins where 0.7 x1 > 0.5 + 0.25 x2, e.g. at (1, 0). From every start the
# CE ascent goes to (1, 1), so only a misclassified *starting point* breaks a sample: an
# attack that keeps the highest-loss iterate reports 100% robust.
_TOY_W = np.array([[0.0, -0.45], [0.7, -0.7], [0.0, 0.0]])
_TOY_B = np.array([0.5, 0.0, 0.0])
# Probability that a start eps t/|t|_inf (t uniform in [-1, 1]^2), clipped to [0, 1]^2, is
# misclassified: x1 dominant and positive (1/4) with x2 = max(0, u) < 0.8 (0.9), or x2
# dominant and negative (1/4) with x1 = max(0, u) > 5/7 (1/7); u uniform in [-1, 1].
_TOY_Q = 1 - (0.25 * 0.9 + 0.25 / 7)   # robust after one run: 0.7393


def _toy_robust(copies, restarts, seed):
    def model(v):
        return v @ jnp.asarray(_TOY_W).T + jnp.asarray(_TOY_B)

    x, y = jnp.zeros((copies, 2)), jnp.zeros(copies, int)
    adv = apgd_classifier(APGD(eps=1.0, loss="ce", restarts=restarts, clip=(0.0, 1.0)),
                          model, x, y, jax.random.key(seed))
    assert float(jnp.max(jnp.abs(adv))) <= 1.0 and float(jnp.min(adv)) >= 0.0
    return float(jnp.mean(jnp.argmax(model(adv), -1) == y))


def test_apgd_returns_a_misclassified_iterate_of_any_restart():
    # the numbers: 64 copies, 5 restarts; AutoAttack's APGD reported 28% robust. The
    # expected fraction is q^5 = 0.221 (sd 0.052 over 64 copies), so <= 0.28 is the bound
    assert _toy_robust(64, 5, 0) <= 0.28
    # and the law behind it, on 4096 copies: robust iff none of the runs' starting points
    # was misclassified, q^restarts; 4 binomial standard deviations (<= 0.027)
    for restarts in (1, 5):
        p = _TOY_Q ** restarts
        tol = 4 * np.sqrt(p * (1 - p) / 4096)
        assert abs(_toy_robust(4096, restarts, 1) - p) <= tol, restarts


def test_targeted_dlr_hand_computed():
    z = jnp.array([[3.0, 1.0, 0.0, -1.0], [3.0, 1.0, 0.0, -1.0], [0.0, 2.0, 1.0, 5.0]])
    y, t = jnp.array([0, 1, 3]), jnp.array([1, 0, 1])
    # denominator z_(1) - (z_(3) + z_(4))/2 = 3 - (-0.5) = 3.5 (rows 1, 2), 5 - 0.5 (row 3)
    np.testing.assert_allclose(targeted_dlr_loss(z, y, t), [-2 / 3.5, 2 / 3.5, -3 / 4.5],
                               rtol=1e-6)
    # 3 classes: denominator z_(1) - z_(3)
    np.testing.assert_allclose(targeted_dlr_loss(z[:1, :3], y[:1], t[:1]), [-2 / 3], rtol=1e-6)


def test_apgd_t_breaks_a_linear_classifier_at_its_exact_radius():
    # 4-class linear classifier, x in R^6, one class per sample: the smallest l-infinity
    # radius that makes class k beat the label is (z_y - z_k)/|w_y - w_k|_1; APGD-T against
    # the 3 other classes breaks exactly the samples whose smallest such radius is below eps
    # (samples within 2% of the boundary excluded: 20 iterations resolve the corner exactly,
    # the margin is for the random starts' clipping-free geometry)
    rng = np.random.default_rng(2)
    w = rng.standard_normal((6, 4))
    x = rng.standard_normal((200, 6))
    z = x @ w
    y = np.argmax(z, -1)
    need = np.full(200, np.inf)
    for k in range(4):
        gap = z[np.arange(200), y] - z[:, k]
        l1 = np.abs(w[:, y].T - w[:, k][None, :]).sum(-1)
        need = np.where(k == y, need, np.minimum(need, gap / np.where(l1 > 0, l1, 1)))
    eps = float(np.median(need))
    adv = apgd_classifier(APGD(eps=eps, loss="dlr-targeted", targets=3, steps=20),
                          lambda v: v @ jnp.asarray(w), jnp.asarray(x), jnp.asarray(y),
                          jax.random.key(0))
    broken = np.asarray(jnp.argmax(adv @ jnp.asarray(w), -1) != y)
    clear = np.abs(need / eps - 1) > 0.02
    np.testing.assert_array_equal(broken[clear], (need < eps)[clear])
    with pytest.raises(ValueError, match="targets needs at least"):
        apgd_classifier(APGD(eps=eps, loss="dlr-targeted", targets=4), lambda v: v @ w,
                        jnp.asarray(x), jnp.asarray(y), jax.random.key(0))


def test_strong_attacks_is_autoattack_standard_order():
    pgd = Attack(eps=0.1, norm="linf", steps=10)
    assert attack_names(strong_attacks(pgd, 10)) == ["pgd-10", "apgd-ce", "apgd-t"]
    assert strong_attacks(pgd, 10)[2].targets == 9
    assert strong_attacks(pgd, 5)[2].targets == 4    # all other classes when fewer than 10
    assert attack_names(strong_attacks(pgd, 2)) == ["pgd-10", "apgd-ce"]
    assert attack_names(strong_attacks(pgd, 10, attacks=("apgd-dlr",))) == ["pgd-10",
                                                                            "apgd-dlr"]
    with pytest.raises(ValueError, match="unknown attacks"):
        strong_attacks(pgd, 10, attacks=("fab-t",))


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
    # attack 0 is PGD-10, 1 APGD-CE, 2 APGD-T. Same samples, so the comparison is paired:
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
