"""AWP: the perturbation has the prescribed relative size per layer, is removed after the
step, and the warm-up switches it off; the robust-training loop records its terms."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from advdyn.adversarial import Attack, Schedule, gaussian_mixture, make_model
from advdyn.adversarial.training import sample_loss
from advdyn.posterior.awp import awp, awp_perturbation
from advdyn.posterior.robust import RECORDS, Measure, flip_labels, robust_training


def _setup():
    model = make_model("mlp", (6,), 3, width=5, seed=0)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((32, 6)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 3, 32), jnp.int32)
    params, static = eqx.partition(model, eqx.is_inexact_array)

    def objective(p):
        return sample_loss(eqx.combine(p, static), x, y)[0].mean()

    return params, objective


def test_perturbation_has_relative_size_per_layer():
    params, objective = _setup()
    grads = jax.grad(objective)(params)
    v = awp_perturbation(params, grads, 5e-3)
    for w, vl in zip(jax.tree.leaves(params), jax.tree.leaves(v), strict=True):
        if w.ndim >= 2:
            np.testing.assert_allclose(float(jnp.linalg.norm(vl) / jnp.linalg.norm(w)), 5e-3,
                                       rtol=1e-5)
        else:
            assert float(jnp.abs(vl).max()) == 0.0  # biases untouched


def test_step_is_plain_step_from_unperturbed_weights_with_perturbed_gradient():
    params, objective = _setup()
    lr, gamma = 0.1, 0.02
    grad_fn = jax.grad(objective)
    opt = awp(optax.sgd(lr), gamma)
    state = opt.init(params)
    g = grad_fn(params)
    updates, state = opt.update(g, state, params, grad_fn=grad_fn)
    new = optax.apply_updates(params, updates)
    v = awp_perturbation(params, g, gamma)
    g_pert = grad_fn(optax.apply_updates(params, v))
    expected = jax.tree.map(lambda w, gp: w - lr * gp, params, g_pert)
    for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)
    # the perturbation changed the gradient (otherwise the check above is empty)
    diff = max(float(jnp.abs(a - b).max()) for a, b in zip(jax.tree.leaves(g_pert),
                                                          jax.tree.leaves(g), strict=True))
    assert diff > 1e-6


def test_warmup_gives_plain_steps():
    params, objective = _setup()
    grad_fn = jax.grad(objective)
    opt = awp(optax.sgd(0.1), 0.05, warmup_steps=1)
    state = opt.init(params)
    g = grad_fn(params)
    updates, state = opt.update(g, state, params, grad_fn=grad_fn)
    for u, gl in zip(jax.tree.leaves(updates), jax.tree.leaves(g), strict=True):
        np.testing.assert_allclose(np.asarray(u), -0.1 * np.asarray(gl), rtol=1e-6)
    assert int(state.step) == 1


def test_flip_labels_changes_exactly_the_fraction():
    y = np.arange(100) % 10
    z = flip_labels(y, 10, 0.2, 0)
    assert np.sum(z != y) == 20


@pytest.mark.slow
def test_robust_training_records_terms():
    # the default run covers the loop through the CLI test (tests/posterior/test_posterior_cli)
    data = gaussian_mixture(128, 64, 6, classes=3, separation=3.0, seed=1)
    model = make_model("mlp", (6,), 3, width=8, seed=0)
    attack = Attack(0.1, norm="linf", method="pgd", steps=2)
    sched = Schedule(epochs=2, batch_size=32, lr=0.05, momentum=0.9, weight_decay=0.0)
    rec = robust_training(model, data, attack, sched, awp_gamma=5e-3,
                          measure=Measure(subset=64, top_k=2, lanczos_iterations=8, probes=4))
    assert set(rec.scalars) == set(RECORDS)
    assert rec.top_eigenvalues.shape == (2, 2)
    s = rec.scalars
    np.testing.assert_allclose(s["gap"], s["test_loss"] - s["train_loss"])
    assert np.all(s["bound"] >= s["train_loss"] / 5.0)
    assert np.all(np.isfinite(s["kl"])) and np.all(s["kl"] > 0)
