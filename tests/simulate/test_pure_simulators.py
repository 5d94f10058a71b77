"""The pure simulators: jit and vmap go through SGD and the homogenized SGD; a diverging
point is a result code and NaN records under vmap, an exception at the host boundary."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import advdyn as ad
from advdyn.config.schema import ProblemConfig
from advdyn.simulate import integrate_hsgd, integrate_sgd, simulate_hsgd, simulate_sgd, time_grid
from advdyn.solution import RESULTS

D, T_MAX, N_TIMES, REPS = 24, 1.0, 5, 2
KEY = ad.stream_key(3)
PURE = {"sgd": integrate_sgd, "hsgd": integrate_hsgd}
HOST = {"sgd": simulate_sgd, "hsgd": simulate_hsgd}


def _instance():
    task = {"kind": "regression", "noise": 0.3}
    return ad.instantiate(ProblemConfig(d=D, loss="least_squares", task=task, epsilon=0.5,
                                        ridge=0.1))


def _point(method, base, eps, gamma, dtype="float64", optimum=None):
    inst = eqx.tree_at(lambda i: i.epsilon, base, jnp.asarray(eps, jnp.float64))
    rate = eqx.tree_at(lambda r: r.gamma, ad.Constant(1.0), jnp.asarray(gamma, jnp.float64))
    grid = time_grid(D, T_MAX, N_TIMES)
    return PURE[method](inst, rate, KEY, grid, replicates=REPS, dtype=dtype, throw=False,
                        optimum=optimum)


def _host(method, base, eps, gamma, dtype="float64", optimum=None):
    inst = eqx.tree_at(lambda i: i.epsilon, base, jnp.asarray(eps, jnp.float64))
    return HOST[method](inst, ad.Constant(float(gamma)), KEY, t_max=T_MAX, n_times=N_TIMES,
                        replicates=REPS, dtype=dtype, optimum=optimum)


def _check_batch(method, pointwise, eps, optimum=None):
    base = _instance()
    # gamma = 6: 2 gamma - gamma^2 tr K / d < 0, the iterate blows up (THEORY 6)
    gamma = jnp.array([0.8, 0.5, 6.0])
    batch = jax.jit(jax.vmap(lambda e, g: _point(method, base, e, g, optimum=optimum)))(
        eps, gamma)
    assert np.asarray(batch.result).tolist() == [RESULTS.successful] * 2 + [RESULTS.diverged]
    for k in range(2):
        one = pointwise(method, base, eps[k], gamma[k], optimum=optimum)
        for name in ("adv_risk", "clean_risk", "dist_to_opt", "norm"):
            # the same streams and steps; batching may only reorder a float64 reduction
            # (relative rounding ~1e-16 a step, contracted by the stable dynamics), far below
            # the d^{-1/2} ~ 0.2 fluctuations that a wrong sample or step would show
            np.testing.assert_allclose(np.asarray(batch.ys[name][k]), np.asarray(one[name]),
                                       rtol=1e-12, atol=0)
    diverged = np.asarray(batch.ys["adv_risk"][2])  # (replicate, time)
    assert np.all(np.isfinite(diverged[:, 0])) and np.all(np.isnan(diverged[:, -1]))
    first = int(np.argmax(np.isnan(diverged[0])))
    assert np.all(np.isnan(diverged[:, first:]))  # NaN from the divergent record on
    assert int(batch.steps[2]) < int(batch.steps[0]) == time_grid(D, T_MAX, N_TIMES).steps
    with pytest.raises(ad.DivergenceError, match=f"^{method} diverged"):  # the host boundary
        _host(method, base, 0.5, 6.0, optimum=optimum)


def test_vmapped_sgd_over_gamma_matches_the_host_runs_and_marks_divergence():
    # one eps, so one optimum given to all (the pure optimum under vmap costs its own compile)
    base = _instance()
    _check_batch("sgd", _host, jnp.full(3, 0.5), optimum=ad.adversarial_optimum(base))


@pytest.mark.slow
@pytest.mark.parametrize("method", ["sgd", "hsgd"])
def test_vmapped_simulator_over_eps_matches_point_solves_and_marks_divergence(method):
    """Slow sibling: both simulators over (eps, gamma), each point with its own optimum,
    against the pure per-point solves and the host runs."""
    _check_batch(method, lambda *a, **k: _point(*a, **k).ys, jnp.array([0.0, 0.5, 0.5]))
    _check_batch(method, _host, jnp.array([0.0, 0.5, 0.5]))


def test_pure_simulator_throws_on_a_single_failed_call():
    with pytest.raises(Exception, match="hsgd diverged"):
        sol = integrate_hsgd(_instance(), ad.Constant(6.0), KEY, time_grid(D, T_MAX, N_TIMES),
                             replicates=REPS)
        jax.block_until_ready(sol.ys)


@pytest.mark.slow
def test_host_simulator_is_the_pure_one_in_float32():
    """float32 iterates: the host run (one compiled call per record) and the pure scan give
    the same iterates, so the float64 records agree to rounding (1e-12 relative; a different
    sample or step would move them by ~d^{-1/2})."""
    base = _instance()
    pure = jax.jit(lambda: _point("hsgd", base, 0.5, 0.8, "float32"))()
    host = _host("hsgd", base, 0.5, 0.8, "float32")
    assert int(pure.result) == RESULTS.successful and pure.ys["adv_risk"].shape == (REPS, 5)
    np.testing.assert_allclose(np.asarray(pure.ys["adv_risk"]), host["adv_risk"], rtol=1e-12)


@pytest.mark.slow
def test_gradient_through_the_homogenized_sgd_matches_finite_differences():
    """grad of the replicate-mean final adversarial risk with respect to eps, through every
    Euler-Maruyama step (fixed Brownian increments, float64): the SDE is smooth in eps away
    from theta = 0, so autodiff and a central difference (h = 1e-5: truncation ~h^2 ~ 1e-10
    relative, rounding ~1e-16 / h ~ 1e-11) agree to 1e-8 (measured 1.3e-11)."""
    base = _instance()
    # adv_risk does not read the optimum: one for all eps
    opt = ad.adversarial_optimum(base)

    def risk(eps):
        inst = eqx.tree_at(lambda i: i.epsilon, base, eps)
        sol = integrate_hsgd(inst, ad.Constant(0.8), KEY, time_grid(D, T_MAX, 3), replicates=2,
                             dtype="float64", throw=False, optimum=opt)
        return jnp.mean(sol.ys["adv_risk"][:, -1])

    grad = float(jax.jit(jax.grad(risk))(jnp.asarray(0.5)))
    value = jax.jit(risk)
    h = 1e-5
    fd = float((value(jnp.asarray(0.5 + h)) - value(jnp.asarray(0.5 - h))) / (2 * h))
    assert grad == pytest.approx(fd, rel=1e-8) and abs(grad) > 1e-3
