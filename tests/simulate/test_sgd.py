"""The streaming SGD simulator: per-sample gradient, randomness contract, divergence."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import advdyn as ad
from advdyn.config.schema import ProblemConfig
from advdyn.io import to_dataset
from advdyn.simulate.sgd import sgd_step, time_grid


def _problem(loss="least_squares", task=None, d=30, **kw):
    task = task or {"kind": "regression", "noise": 0.3}
    return ad.instantiate(ProblemConfig(d=d, loss=loss, task=task, epsilon=0.5, ridge=0.1, **kw))


@pytest.mark.parametrize(
    ("loss", "task"),
    [
        ("least_squares", {"kind": "regression", "noise": 0.3}),
        ("logistic", {"kind": "classification"}),
        ("squared_hinge", {"kind": "classification"}),
    ],
)
def test_step_is_gradient_of_worst_case_loss(loss, task):
    """grad = d/dtheta [ max_{|delta| <= eps} l(<theta, x + delta>, y) + ridge/2 |theta|^2 ].

    The inner maximum is computed here by brute force over the ball's boundary points
    along theta (where a linear model's worst case lies) and checked against random
    points of the ball; the gradient by autodiff of that maximum.
    """
    inst = _problem(loss, task)
    rng = np.random.default_rng(0)
    theta = jnp.asarray(rng.standard_normal(inst.d) / 3)
    x = jnp.asarray(rng.standard_normal(inst.d))
    y = 0.4 if task["kind"] == "regression" else -1.0
    eps, ridge = float(inst.epsilon), float(inst.ridge)
    clean = ad.make_loss(loss)

    def worst_case(th):
        u = th / jnp.linalg.norm(th)
        return jnp.maximum(clean(th @ (x + eps * u), y), clean(th @ (x - eps * u), y))

    # random points of the ball never beat the endpoint value
    deltas = rng.standard_normal((2000, inst.d))
    deltas *= eps * rng.uniform(0, 1, (2000, 1)) ** (1 / inst.d) / np.linalg.norm(
        deltas, axis=1, keepdims=True)
    assert float(jnp.max(clean((x + deltas) @ theta, y))) <= float(worst_case(theta)) + 1e-12

    objective = lambda th: worst_case(th) + 0.5 * ridge * th @ th  # noqa: E731
    want = jax.grad(objective)(theta)
    got = theta - sgd_step(theta, x, y, inst.d, inst)  # gamma/d = 1: theta - grad
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_step_at_zero_uses_subgradient_without_attack_term():
    inst = _problem()
    x = jnp.ones(inst.d)
    out = sgd_step(jnp.zeros(inst.d), x, 1.0, inst.d, inst)
    # r = 0, u = -1, a = 0: L_r = -1, so theta_1 = -(-1) x = x
    np.testing.assert_allclose(out, x, rtol=1e-14)


def _run(inst, replicates=3, seed=0, dtype="float64"):
    return to_dataset(ad.simulate_sgd(inst, ad.Constant(0.8), ad.stream_key(seed), t_max=1.0,
                                      n_times=5, replicates=replicates, dtype=dtype,
                                      block_size=16))


def test_same_seed_same_numbers_and_replicates_are_nested():
    inst = _problem(d=64)
    a, b = _run(inst), _run(inst)
    np.testing.assert_array_equal(a.adv_risk.values, b.adv_risk.values)
    # adding replicates leaves the existing streams unchanged
    more = _run(inst, replicates=5)
    np.testing.assert_array_equal(more.adv_risk.values[:3], a.adv_risk.values)
    # replicates and seeds differ
    assert not np.allclose(a.adv_risk.values[0, 1:], a.adv_risk.values[1, 1:])
    other = _run(inst, seed=1)
    assert not np.allclose(other.adv_risk.values[:, 1:], a.adv_risk.values[:, 1:])


def test_instance_and_stream_seeds_are_independent():
    """THEORY 10: instance and stream come from different children of SeedSequence(seed)."""
    seed, d = 5, 16
    inst = ad.instantiate(ProblemConfig(d=d, seed=seed))
    instance_child, stream_child = np.random.SeedSequence(seed).spawn(2)
    # the instance is drawn from the first child (teacher = first d normals, normalised) ...
    g = np.random.default_rng(instance_child).standard_normal(d)
    np.testing.assert_allclose(inst.theta_star, g / np.linalg.norm(g))
    # ... and the stream key from the second, never from the first or from the raw seed
    def key_of(child):
        return jax.random.key(int(child.generate_state(1, dtype=np.uint32)[0]))
    stream = jax.random.key_data(ad.stream_key(seed))
    np.testing.assert_array_equal(stream, jax.random.key_data(key_of(stream_child)))
    assert not np.array_equal(stream, jax.random.key_data(key_of(instance_child)))
    assert not np.array_equal(stream, jax.random.key_data(jax.random.key(seed)))


def test_float32_run_tracks_float64_statistically():
    """Different precision draws different samples; both must stay close to the ODE's scale
    (each replicate of a d = 400 run is within ~d^{-1/2} ~ 5% of the other precision's mean
    up to fluctuations; 15% is a loose bound that still catches a broken float32 path)."""
    inst = _problem(d=400)
    r64 = _run(inst, replicates=4).adv_risk.mean("replicate").values
    r32 = _run(inst, replicates=4, dtype="float32").adv_risk.mean("replicate").values
    assert np.max(np.abs(r32 - r64) / r64) < 0.15


def test_time_grid_never_runs_past_the_horizon_at_small_d():
    # t_max * d = 5 steps but 51 requested times: one record per step, ending at t_max
    g = time_grid(d=1, t_max=5.0, n_times=51)
    np.testing.assert_allclose(g.times, np.arange(6.0))
    g = time_grid(d=10, t_max=1.0, n_times=51)
    assert g.times[-1] == 1.0 and len(g.times) == 11


def test_time_grid_is_aligned_to_blocks():
    g = time_grid(d=1000, t_max=3.0, n_times=7, block_size=256)
    assert g.stride % g.block == 0
    np.testing.assert_allclose(g.times, np.arange(7) * g.stride / 1000)
    assert abs(g.times[-1] - 3.0) <= 6 * (g.stride // g.block) / 2 / 1000


def test_sgd_divergence_names_time_and_learning_rate():
    inst = _problem(d=100)
    with pytest.raises(ad.DivergenceError) as info:
        to_dataset(ad.simulate_sgd(inst, ad.Constant(6.0), ad.stream_key(0), t_max=10.0, n_times=21,
                        replicates=2))
    assert "gamma = 6" in str(info.value) and "t = " in str(info.value)
