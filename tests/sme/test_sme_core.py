"""The SME room against closed forms and the core: covariances, line search, streams.

Tolerances
----------
* Closed forms vs autodiff / dense algebra: float64 round-off (1e-12).
* The per-sample gradient covariance vs 400,000 samples: each entry's standard error is
  ``sqrt(Var(g_i g_j) / M)``, estimated from the same samples; 5 standard errors.
* Line search: exact identity (1e-12) for clean least squares with homogenized noise, where
  the risk is linear in the state; elsewhere the two differ by O(1/d): measured relative gaps
  2.5e-2 / 3.6e-3 (exact noise / adversarial, d = 50) and 1.3e-3 / 1.4e-4 at d = 1000; the
  test bounds them by 2/d.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from advdyn.sme import (
    SME,
    EmpiricalObjective,
    GaussianLeastSquares,
    line_search_rate,
    simulate_objective_sgd,
    solve_sme,
)


def _problem(d=3, eps=0.3, seed=0, **kw):
    rng = np.random.default_rng(seed)
    lam = jnp.asarray(rng.uniform(0.3, 2.0, d))
    return GaussianLeastSquares(lam, jnp.asarray(rng.normal(size=d)), 0.5, eps, **kw), rng


def test_gradient_and_factor_match_closed_forms():
    for eps in (0.0, 0.3):
        ob, rng = _problem(eps=eps)
        for theta in (jnp.asarray(rng.normal(size=3)), 0.5 * ob.theta_star):
            np.testing.assert_allclose(ob.gradient(theta), jax.grad(ob.loss)(theta), atol=1e-12)
            f = ob.noise_factor(theta)
            np.testing.assert_allclose(f @ f.T, ob.gradient_covariance(theta), atol=1e-12)
        hom = GaussianLeastSquares(ob.eigenvalues, ob.theta_star, 0.5, eps, noise="homogenized")
        f = hom.noise_factor(theta)
        m0 = 2 * ob.loss(theta)  # I = E l_eps' ^2 = 2 R_eps for least squares
        np.testing.assert_allclose(f @ f.T, m0 * jnp.diag(ob.eigenvalues), atol=1e-12)


def test_gradient_covariance_matches_monte_carlo():
    ob, rng = _problem(eps=0.3)
    theta = jnp.asarray(rng.normal(size=3))
    m = 400_000
    g = np.asarray(jax.vmap(lambda k: ob.stochastic_gradient(theta, k))(
        jax.random.split(jax.random.key(0), m)))
    np.testing.assert_array_less(np.abs(g.mean(0) - ob.gradient(theta)),
                                 5 * g.std(0) / np.sqrt(m))
    gc = g - g.mean(0)
    prod = gc[:, :, None] * gc[:, None, :]
    se = prod.std(0) / np.sqrt(m)
    assert np.all(np.abs(prod.mean(0) - ob.gradient_covariance(theta)) < 5 * se)


def _instance(d, eps):
    from advdyn.config.build import instantiate
    from advdyn.config.schema import ProblemConfig

    return instantiate(ProblemConfig(
        d=d, seed=0, spectrum={"kind": "uniform", "low": 0.2, "high": 1.8},
        task={"kind": "regression", "noise": 0.3}, epsilon=eps))


@pytest.mark.parametrize("d", [pytest.param(50, marks=pytest.mark.slow), 1000])
def test_optimal_control_rate_is_the_core_line_search(d):
    from advdyn.problem.state import DirectionState
    from advdyn.theory import LineSearch

    gamma_max = 2.0
    for eps in (0.0, 0.5):
        inst = _instance(d, eps)
        state = DirectionState.from_iterate(inst.theta0, inst)
        core = float(LineSearch(gamma_max)(0.0, state, inst))
        for noise in ("homogenized", "exact"):
            ob = GaussianLeastSquares.from_instance(inst, noise=noise)
            mine = float(line_search_rate(ob, inst.theta0, gamma_max, d))
            assert 0 < core < gamma_max
            if eps == 0.0 and noise == "homogenized":
                assert mine == pytest.approx(core, rel=1e-12)
            else:
                assert abs(mine / core - 1) < 2.0 / d, (eps, noise, mine, core)


def test_streams_are_reproducible_and_extend():
    ob, _ = _problem(eps=0.3)
    th0 = jnp.zeros(3)
    a = solve_sme(SME(ob, 0.05, 1), th0, jax.random.key(5), t_max=0.5, dt=0.05, n_times=3,
                  replicates=3)
    b = solve_sme(SME(ob, 0.05, 1), th0, jax.random.key(5), t_max=0.5, dt=0.05, n_times=3,
                  replicates=5)
    np.testing.assert_array_equal(a["adv_risk"], b["adv_risk"][:3])
    c = solve_sme(SME(ob, 0.05, 1), th0, jax.random.key(6), t_max=0.5, dt=0.05, n_times=3,
                  replicates=3)
    assert not np.allclose(a["adv_risk"][:, -1], c["adv_risk"][:, -1])
    s = simulate_objective_sgd(ob, 0.05, th0, jax.random.key(5), t_max=0.5, n_times=3, replicates=3)
    s2 = simulate_objective_sgd(ob, 0.05, th0, jax.random.key(5), t_max=0.5, n_times=3,
                                replicates=3)
    np.testing.assert_array_equal(s["adv_risk"], s2["adv_risk"])
    assert not np.allclose(s["adv_risk"][0], s["adv_risk"][1])


@pytest.mark.slow  # the PGD = exact statement is also in test_sme_minimax.py (default run)
def test_empirical_linear_exact_attack_matches_pgd_and_population_covariance():
    """Linear least squares on a finite sample: the endpoint rule equals an l2 PGD that
    reaches the ball's boundary, and the factor reproduces the sample covariance."""
    from advdyn.adversarial.attacks import Attack

    rng = np.random.default_rng(1)
    n, d, eps = 200, 4, 0.3
    x = jnp.asarray(rng.normal(size=(n, d)))
    theta_star = jnp.asarray(rng.normal(size=d))
    y = x @ theta_star + 0.5 * jnp.asarray(rng.normal(size=n))
    exact = EmpiricalObjective(x, y, linear_eps=eps, n_params=d)
    pgd = EmpiricalObjective(x, y, attack=Attack(eps, norm="l2", method="pgd", steps=5,
                                                 rel_step=1.0), n_params=d)
    theta = jnp.asarray(rng.normal(size=d))
    assert float(pgd.loss(theta)) == pytest.approx(float(exact.loss(theta)), rel=1e-10)
    np.testing.assert_allclose(pgd.gradient(theta), exact.gradient(theta), atol=1e-10)
    g = exact.per_sample_gradients(theta)
    f = exact.noise_factor(theta)
    np.testing.assert_allclose(f @ f.T, np.cov(np.asarray(g).T, bias=True), atol=1e-12)


def test_brownian_grid_is_shared_across_steps():
    """``brownian_dt`` gives solves at different ``dt`` one Brownian path each: the default
    grid is reproduced exactly, and paths at ``dt`` and ``dt/2`` differ by the scheme's
    strong error only (per-path gap well below the spread across paths), unlike solves on
    independent paths (gap ~ sqrt(2) times the spread)."""
    ob, _ = _problem(eps=0.3)
    th0 = 0.5 * ob.theta_star
    kw = dict(t_max=0.5, n_times=2, replicates=200, scheme="euler")
    sme = SME(ob, 0.05, 1)
    base = solve_sme(sme, th0, jax.random.key(5), dt=0.05, **kw)["dist2"][:, -1]
    same = solve_sme(sme, th0, jax.random.key(5), dt=0.05, brownian_dt=0.05, **kw)
    np.testing.assert_array_equal(base, same["dist2"][:, -1])
    coarse = solve_sme(sme, th0, jax.random.key(5), dt=0.05, brownian_dt=0.025, **kw)
    fine = solve_sme(sme, th0, jax.random.key(5), dt=0.025, brownian_dt=0.025, **kw)
    assert coarse.stats["brownian_dt"] == pytest.approx(0.025)
    gap = coarse["dist2"][:, -1] - fine["dist2"][:, -1]
    assert gap.std() < 0.2 * fine["dist2"][:, -1].std(), (gap.std(), fine["dist2"].std())
    with pytest.raises(ValueError, match="brownian_dt"):
        solve_sme(sme, th0, jax.random.key(5), dt=0.05, brownian_dt=0.03, **kw)


def test_pure_sme_vmaps_over_its_parameters_and_marks_divergence():
    """jit + vmap of the SME over its time scale matches the host solves (same paths, same
    Euler steps: 1e-12 relative); at c = 1000 the Euler step c dt lambda ~ 50 is unstable and
    overflows within the horizon: a code and NaN records under vmap, a DivergenceError at the
    host boundary."""
    import equinox as eqx

    import advdyn as ad
    from advdyn.sme import integrate_sme, step_grid
    from advdyn.solution import RESULTS

    ob, _ = _problem(eps=0.3)
    th0 = 0.5 * ob.theta_star
    key, dt, kw = jax.random.key(5), 0.05, dict(t_max=5.0, n_times=3, replicates=3)
    ts = step_grid(kw["t_max"], dt, kw["n_times"])[0]
    base = SME(ob, 0.05, 1)

    def point(c):
        sme = eqx.tree_at(lambda s: s.time_scale, base, c)
        return integrate_sme(sme, th0, key, ts, dt, replicates=3, throw=False)

    batch = jax.jit(jax.vmap(point))(jnp.array([1.0, 1000.0]))
    assert np.asarray(batch.result).tolist() == [RESULTS.successful, RESULTS.diverged]
    host = solve_sme(base, th0, key, dt=dt, **kw)
    np.testing.assert_allclose(np.asarray(batch.ys["adv_risk"][0]), host["adv_risk"],
                               rtol=1e-12)
    diverged = np.asarray(batch.ys["adv_risk"][1])
    assert np.isfinite(diverged[:, 0]).all() and np.isnan(diverged[:, -1]).all()
    with pytest.raises(ad.DivergenceError, match="sme1 diverged"):
        solve_sme(SME(ob, 0.05, 1, time_scale=1000.0), th0, key, dt=dt, **kw)
