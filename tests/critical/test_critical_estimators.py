"""eps* estimators, training loop and schedules on small problems."""

from __future__ import annotations

import math

import numpy as np
import pytest

import advdyn  # noqa: F401
from advdyn.adversarial.attacks import Attack
from advdyn.adversarial.data import gaussian_mixture, load_digits
from advdyn.adversarial.models import make_model
from advdyn.adversarial.training import Schedule, adversarial_train
from advdyn.critical.estimators import crossing, extrapolate, fine_tune_estimate, from_scratch


def test_crossing_hand_computed():
    eps = [0.0, 1.0, 2.0, 3.0]
    # crosses 0.5 between eps=1 (0.4) and eps=2 (0.8): 1 + 0.1/0.4 = 1.25
    assert crossing(eps, [0.1, 0.4, 0.8, 1.2], 0.5) == pytest.approx(1.25)
    # non-monotone: the sup takes the *last* grid point below the level (eps=2, 0.3)
    assert crossing(eps, [0.1, 0.6, 0.3, 0.9], 0.5) == pytest.approx(2 + 0.2 / 0.6)
    assert crossing(eps, [0.1, 0.2, 0.3, 0.4], 0.5) == math.inf
    assert math.isnan(crossing(eps, [0.6, 0.7, 0.8, 0.9], 0.5))


def test_extrapolation_linear_and_isotonic():
    eps = np.array([0.0, 0.1, 0.2])
    line = 0.2 + 2.0 * eps  # crosses 1.0 at 0.4
    assert extrapolate(eps, line, 1.0, "linear") == pytest.approx(0.4)
    assert extrapolate(eps, line, 1.0, "isotonic") == pytest.approx(0.4)
    # isotonic pools the decreasing pair (0.5, 0.3) -> 0.4, 0.4; secant (0.4-0.2)/0.2 = 1
    # from (0.2, 0.4) reaches 1.0 at 0.8; inside the fitted range it interpolates
    noisy = np.array([0.2, 0.5, 0.3])
    assert extrapolate(eps, noisy, 1.0, "isotonic") == pytest.approx(0.8)
    assert extrapolate(eps, noisy, 0.3, "isotonic") == pytest.approx(0.05)
    assert extrapolate(eps, [0.5, 0.4, 0.3], 1.0, "linear") == math.inf
    with pytest.raises(ValueError, match="extrapolation"):
        extrapolate(eps, line, 1.0, "cubic")


def test_schedules():
    s = Schedule(epochs=4, lr=1.0, kind="step", drops=(0.5, 0.75), drop_factor=10)
    np.testing.assert_allclose(s.rates(2)[:, 0], [1.0, 1.0, 0.1, 0.01], rtol=1e-6)
    t = Schedule(epochs=2, lr=1.0, kind="triangle", warmup=0.5).rates(5).ravel()
    assert t.max() == pytest.approx(1.0) and t[0] < 0.25 and t[-1] < 0.25
    assert np.argmax(t) == 4  # peak after 5 of the 10 steps
    assert Schedule(epochs=3, lr=1.0, drops=()).rates(2).shape == (3, 2)


# one problem for the training and estimator tests: the jitted epoch and evaluation compile
# once for all of them
DATA = gaussian_mixture(512, 512, d=20, classes=2, separation=2.5, seed=1)
ATT = Attack(eps=0.0, norm="l2", method="pgd", steps=3)
EVAL = Attack(eps=0.0, norm="l2", method="pgd", steps=5)


def _fresh():
    return make_model("mlp", DATA.input_shape, 2, 32, seed=0)


def test_training_history_selection_and_compute_count():
    from advdyn.critical.estimators import with_eps

    sched = Schedule(epochs=4, batch_size=64, lr=0.05)
    r = adversarial_train(_fresh(), DATA, with_eps(ATT, 0.3), with_eps(EVAL, 0.3), sched, seed=0)
    h = r.history
    assert h.sizes["epoch"] == 4
    assert r.best_epoch == int(h["epoch"][int(np.argmin(h["test_loss"].values))])
    assert r.test_loss == pytest.approx(float(h["test_loss"].min()))
    # counted by hand: 8 batches x 64 x (3 attack + 1 parameter gradients) per epoch,
    # 512 test samples x 5 attack steps per epoch, 512 train samples x 5 at the end
    assert r.grad_evals == 4 * (8 * 64 * 4 + 512 * 5) + 512 * 5
    assert r.clean_test_loss < r.test_loss  # the attack raises the loss
    assert 0 < r.test_acc <= r.clean_test_acc


def test_cnn_trains_on_digits():
    data = load_digits(n_train=300, n_test=100)
    model = make_model("cnn", data.input_shape, 10, 16, seed=0)
    sched = Schedule(epochs=8, batch_size=32, lr=0.1, drops=())
    r = adversarial_train(model, data, None, None, sched, seed=0)
    assert r.clean_test_acc > 0.5  # chance is 0.1; 72 SGD steps already learn the digits
    assert r.history["train_loss"].values[-1] < r.history["train_loss"].values[0]


def test_estimators_agree_on_a_gaussian_mixture():
    """End to end on a small problem: both estimators finite, positive, close-ish, and the
    fine-tuning uses a fraction of the compute."""
    sched = Schedule(epochs=12, batch_size=64, lr=0.05)
    scratch = from_scratch(_fresh, DATA, [0.1, 0.2, 0.4, 0.8], ATT, EVAL, sched, seed=0)
    assert np.all(np.diff(scratch.table["adv_train_loss"].values) > 0)
    fast = fine_tune_estimate(scratch.clean, DATA, [0.05, 0.1, 0.15], ATT, EVAL,
                              Schedule(epochs=2, batch_size=64, lr=0.05, kind="triangle"))
    assert 0 < scratch.eps_star < 0.8 and 0 < fast.eps_star < math.inf
    assert fast.grad_evals < scratch.grad_evals / 3
    assert abs(fast.eps_star - scratch.eps_star) / scratch.eps_star < 0.5
