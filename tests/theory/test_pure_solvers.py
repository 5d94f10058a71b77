"""The pure ODE and optimum: jit, vmap and grad go through; failure is data under vmap."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import advdyn as ad
from advdyn.config.build import binned_from_config
from advdyn.config.schema import ProblemConfig
from advdyn.solution import RESULTS
from advdyn.theory.ode import integrate_ode, make_integrator, solve_ode
from advdyn.theory.stationary import adversarial_optimum, optimum

TIMES = np.linspace(0.0, 4.0, 9)


def _binned(loss="least_squares", d=10**6, bins=16, **task):
    if loss == "least_squares":
        task = {"kind": "regression", "noise": 0.3, **task}
        spectrum = {"kind": "uniform", "low": 0.2, "high": 1.8}
    else:
        task = {"kind": "classification", "mean_norm": 1.5, **task}
        spectrum = {"kind": "uniform", "low": 0.3, "high": 1.7}
    cfg = ProblemConfig(d=d, loss=loss, epsilon=0.3, spectrum=spectrum, task=task)
    return binned_from_config(cfg, bins)


def _point(base, integrator, eps, gamma):
    inst = eqx.tree_at(lambda i: i.epsilon, base, eps)
    rate = eqx.tree_at(lambda r: r.gamma, ad.Constant(1.0), gamma)
    return integrate_ode(inst, rate, TIMES, integrator, throw=False)


def test_vmapped_binned_ode_matches_point_solves_and_marks_divergence():
    base = _binned()
    integrator = make_integrator("tsit5", rtol=1e-8, atol=1e-20)
    eps = jnp.array([0.0, 0.3, 0.8, 0.3])
    # gamma = 6: 2 gamma - gamma^2 tr K / d < 0, the ODE blows up (THEORY 6)
    gamma = jnp.array([0.5, 1.2, 0.3, 6.0])
    batch = jax.jit(jax.vmap(lambda e, g: _point(base, integrator, e, g)))(eps, gamma)
    codes = np.asarray(batch.result)
    assert codes.tolist() == [RESULTS.successful] * 3 + [RESULTS.diverged]
    for k in range(3):
        inst = eqx.tree_at(lambda i: i.epsilon, base, eps[k])
        ref = solve_ode(inst, ad.Constant(float(gamma[k])), TIMES, solver="tsit5")
        for name in ("adv_risk", "clean_risk", "dist_to_opt"):
            # the same integration, batched: only rounding differs (the adaptive steps are
            # each point's own), far below the 1e-8 tolerance
            np.testing.assert_allclose(np.asarray(batch.ys[name][k]), ref[name], rtol=1e-9,
                                       atol=0)
    diverged = np.asarray(batch.ys["adv_risk"][3])
    assert np.isfinite(diverged[0]) and np.isnan(diverged[-1])
    # once NaN, NaN to the end (later intervals are skipped)
    first = int(np.argmax(np.isnan(diverged)))
    assert np.all(np.isnan(diverged[first:]))
    with pytest.raises(ad.DivergenceError):  # the host boundary raises
        solve_ode(base, ad.Constant(6.0), TIMES, solver="tsit5")


def test_dense_records_take_fewer_steps_agree_and_keep_failure_codes():
    """`Integrator.dense`: one pass of steps, records off Tsit5's interpolant. 41 records on
    [0, 4] are closer than the steps rtol 1e-8 allows, so the record-to-record solve takes
    at least 40 steps and the dense one fewer; the two agree to the integrators' own error
    (a few rtol each: 1e-6 = 100 rtol asserted); failures stay data under vmap; the
    program holds no host callback (JAX's persistent cache stores it)."""
    base = _binned(bins=8)
    times = np.linspace(0.0, 4.0, 41)
    dense = make_integrator("tsit5", rtol=1e-8, atol=1e-20, dense=True)
    steps = make_integrator("tsit5", rtol=1e-8, atol=1e-20)
    eps = jnp.array([0.0, 0.3, 0.8, 0.3, 0.3])
    # gamma = 6 diverges (THEORY 6); gamma = 1e200: gamma^2 overflows at the start
    gamma = jnp.array([0.5, 1.2, 0.3, 6.0, 1e200])

    def solve(integrator):
        def point(e, g):
            inst = eqx.tree_at(lambda i: i.epsilon, base, e)
            rate = eqx.tree_at(lambda r: r.gamma, ad.Constant(1.0), g)
            return integrate_ode(inst, rate, times, integrator, throw=False)

        fn = jax.jit(jax.vmap(point))
        assert "callback" not in fn.lower(eps, gamma).as_text().lower()
        return fn(eps, gamma)

    fast, ref = solve(dense), solve(steps)
    assert np.asarray(fast.result).tolist() == [RESULTS.successful] * 3 + [RESULTS.diverged] * 2
    assert np.asarray(ref.result).tolist() == np.asarray(fast.result).tolist()
    assert (np.asarray(fast.steps[:3]) < np.asarray(ref.steps[:3])).all()
    assert (np.asarray(ref.steps[:3]) >= len(times) - 1).all()
    for name in ("adv_risk", "clean_risk", "dist_to_opt"):
        np.testing.assert_allclose(np.asarray(fast.ys[name][:3]), np.asarray(ref.ys[name][:3]),
                                   rtol=1e-6, atol=0)
    diverged = np.asarray(fast.ys["adv_risk"][3])
    first = int(np.argmax(np.isnan(diverged)))
    assert first > 0 and np.all(np.isnan(diverged[first:]))


def test_dense_records_step_budget_bounds_the_whole_solve():
    short = make_integrator("tsit5", rtol=1e-8, atol=1e-20, max_steps=5, dense=True)
    sol = integrate_ode(_binned(bins=8), ad.Constant(0.5), np.linspace(0.0, 4.0, 41), short,
                        throw=False)
    assert int(sol.result) == RESULTS.max_steps_reached and int(sol.steps) == 5
    assert np.isnan(np.asarray(sol.ys["adv_risk"])[-1])


def test_pure_ode_throws_on_a_single_failed_call():
    base = _binned()
    integrator = make_integrator("tsit5", rtol=1e-8, atol=1e-20)
    with pytest.raises(Exception, match="diverged"):
        sol = integrate_ode(base, ad.Constant(6.0), TIMES, integrator)
        jax.block_until_ready(sol.ys)


def test_pure_optimum_matches_host_optimum_under_vmap():
    base = _binned()
    eps = jnp.array([0.0, 0.3, 3.0])  # eps = 3: the optimum sits at theta = 0
    points = jax.jit(jax.vmap(lambda e: optimum(eqx.tree_at(lambda i: i.epsilon, base, e))))(eps)
    for k in range(3):
        host = adversarial_optimum(eqx.tree_at(lambda i: i.epsilon, base, eps[k]))
        assert bool(points.at_zero[k]) == bool(host.at_zero)
        np.testing.assert_allclose(float(points.adv_risk[k]), float(host.adv_risk), rtol=1e-12)
    assert bool(points.at_zero[2]) and not bool(points.at_zero[1])


GRAD_TIMES = np.linspace(0.0, 2.0, 3)


# logistic under -m slow: the same gradient path, a dearer Gaussian expectation
@pytest.mark.parametrize(
    "loss", ["least_squares", pytest.param("logistic", marks=pytest.mark.slow)])
def test_gradient_of_final_adversarial_risk_matches_finite_differences(loss):
    base = _binned(loss, d=10**4, bins=8)
    # rtol 1e-12: the solve's error (~1e-12) over the step h = 1e-4 is 1e-8 of the
    # derivative, the central difference's own error (h^2 f''') about as small; both far
    # below the 1e-6 asserted
    integrator = make_integrator("tsit5", rtol=1e-12, atol=1e-30)
    gamma0 = 1.0 if loss == "least_squares" else 2.0
    opt = adversarial_optimum(base)

    def final(eps, gamma):
        inst = eqx.tree_at(lambda i: i.epsilon, base, eps)
        rate = eqx.tree_at(lambda r: r.gamma, ad.Constant(1.0), gamma)
        return integrate_ode(inst, rate, GRAD_TIMES, integrator, optimum=opt).ys["adv_risk"][-1]

    x = (jnp.asarray(0.3), jnp.asarray(gamma0))
    grads = jax.jit(jax.grad(final, argnums=(0, 1)))(*x)
    f = jax.jit(final)
    for k, g in enumerate(grads):
        h = 1e-4 * float(x[k])
        up = [*x]
        down = [*x]
        up[k] = x[k] + h
        down[k] = x[k] - h
        fd = (float(f(*up)) - float(f(*down))) / (2 * h)
        np.testing.assert_allclose(float(g), fd, rtol=1e-6)


def test_dense_records_with_the_implicit_solver():
    """Kvaerno5 stepped by hand (`Integrator.dense`): its root finder takes the controller's
    tolerances, as in ``diffeqsolve`` (without them tracing failed). Its records agree with
    Tsit5's to the tolerance: atol 1e-12 on per-direction entries of order 1/d = 1e-6 is a
    relative 1e-6 per entry, so 1e-5 is asserted."""
    base = _binned(d=10**6, bins=2)
    times = np.linspace(0.0, 2.0, 5)
    kw = {"rtol": 1e-8, "atol": 1e-12, "dense": True}
    implicit = integrate_ode(base, ad.Constant(0.5), times, make_integrator("kvaerno5", **kw),
                             throw=False)
    explicit = integrate_ode(base, ad.Constant(0.5), times, make_integrator("tsit5", **kw),
                             throw=False)
    assert int(implicit.result) == RESULTS.successful
    np.testing.assert_allclose(np.asarray(implicit.ys["adv_risk"]),
                               np.asarray(explicit.ys["adv_risk"]), rtol=1e-5, atol=0)


def test_dense_records_by_mask_and_by_indexed_update_agree(monkeypatch):
    """`_integrate_dense` writes up to `MASKED_RECORDS` records through a mask, more by an
    indexed update into equinox's buffers: the same steps and interpolant, so the same
    records up to rounding, batched (``vmap`` over eps, a diverging point among them) or
    not. (The two programs fuse differently: 2e-15 relative was seen; 1e-13 is far below the
    tolerance 1e-8 that a wrong record index or time would break.)"""
    import advdyn.theory.ode as ode

    base = _binned(d=10**6, bins=4)
    times = np.linspace(0.0, 2.0, 40)
    integrator = make_integrator("tsit5", rtol=1e-8, dense=True)

    def solve(eps, gamma):
        inst = eqx.tree_at(lambda i: i.epsilon, base, eps)
        lr = eqx.tree_at(lambda r: r.gamma, ad.Constant(0.5), gamma)
        sol = integrate_ode(inst, lr, times, integrator, throw=False)
        return sol.ys["adv_risk"], sol.result

    eps, gamma = jnp.asarray([0.0, 0.3, 0.6]), jnp.asarray([0.5, 1.0, 6.0])  # 6: diverges
    results = []
    for masked in (100, 10):  # 40 records: masked, then buffered
        monkeypatch.setattr(ode, "MASKED_RECORDS", masked)
        batched = jax.jit(jax.vmap(solve))(eps, gamma)
        single = jax.jit(solve)(eps[1], gamma[1])
        results.append((batched, single))
    (b_mask, s_mask), (b_buf, s_buf) = results
    np.testing.assert_array_equal(np.asarray(b_mask[1]), np.asarray(b_buf[1]))
    assert int(b_mask[1][2]) == RESULTS.diverged and int(b_mask[1][0]) == RESULTS.successful
    np.testing.assert_allclose(np.asarray(b_mask[0]), np.asarray(b_buf[0]), rtol=1e-13)
    np.testing.assert_allclose(np.asarray(s_mask[0]), np.asarray(s_buf[0]), rtol=1e-13)
