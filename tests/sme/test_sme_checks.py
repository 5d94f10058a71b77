"""SME section 3, checks 1-5 (seed 002): each check is one test.

Tolerances
----------
* Check 1 has no Monte Carlo: exact second moments (advdyn.sme.moments), so the fitted
  slopes are deterministic; the windows are the spec's ([0.85, 1.15] and [1.85, 2.2]).
* Check 2 is Monte Carlo. In the default run (2,000 chains, d = 3, eta = 0.05 and 0.025)
  the weak errors carry standard errors of ~5e-3, larger than the errors, so only what
  survives this noise is tested: the order-1 slope's 95% interval (propagated from the
  standard errors) contains 1; the order-1 minus order-2 difference, on common Brownian
  paths (standard error ~50x smaller), halves with eta (ratio in [1.6, 2.6]: 2 up to its
  O(eta) relative correction); and the SME solve is converged in dt (paired difference
  dt = eta/2 vs eta/4 within 4 standard errors of 0, and below 10% of the order-1 minus
  order-2 difference). Why the spec's "order-2 error below order-1 error" fails on some
  instances is checked without Monte Carlo (exact moments, closed forms within 5%). The
  full check (d = 2..5, 10^6 chains) is marked slow.
* Check 3 is deterministic (ODE, rtol 1e-10): monotonicity beyond 1e-12, the two risk
  values to 1e-3 (the spec quotes three digits).
* Check 4: at d = 1000 every path's risk fluctuates by O(d^{-1/2}); with 4 paths of each the
  means must agree within 3 d^{-1/2} relative (measured gap: 4.8% at t = 0.5, 2.3% at t = 2,
  below 3/sqrt(1000) = 9.5%).
* Check 5: ODE solved at rtol 1e-12, compared with the closed form to 1e-8.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from advdyn.sme import (
    SME,
    GaussianLeastSquares,
    core_scaling,
    exact_second_moments,
    gradient_flow,
    loglog_fit,
    optimal_policy,
    simulate_objective_sgd,
    solve_control,
    solve_sme,
    switch_time,
    weak_error_study,
)
from advdyn.sme.objectives import C0

PATHS = 2000  # default-run Monte Carlo size (shared so that compiled solvers are reused)
CHECK1 = dict(eigenvalues=[0.5, 1.0, 2.0], sigma=0.5, delta0=[1.0, -1.0, 0.5], t_max=2.0)


# ------------------------------------------------------------------ check 1
def test_check1_weak_order_from_exact_moments():
    etas = 0.05 / 2.0 ** np.arange(5)  # 0.05 .. 0.003125
    study = weak_error_study(CHECK1["eigenvalues"], CHECK1["sigma"], CHECK1["delta0"], etas,
                             CHECK1["t_max"])
    s1, _ = loglog_fit(etas, study["order1"])
    s2, _ = loglog_fit(etas, study["order2"])
    assert 0.85 <= s1 <= 1.15, s1  # measured 0.889
    assert 1.85 <= s2 <= 2.2, s2  # measured 2.105
    # the order-1 error changes sign between eta = 0.2 and the fitted range (spec's note)
    big = [exact_second_moments(CHECK1["eigenvalues"], CHECK1["sigma"], CHECK1["delta0"], eta,
                                2.0) for eta in (0.2, 0.05)]
    signs = [np.sign(m.observable("sgd")[-1] - m.observable("sme1")[-1]) for m in big]
    assert signs[0] != signs[1]


def test_exact_moments_match_the_sgd_recursion_by_monte_carlo():
    """The SGD moment recursion against 20,000 SGD chains (within 4 standard errors)."""
    lam = jnp.asarray(CHECK1["eigenvalues"])
    ob = GaussianLeastSquares(lam, jnp.zeros(3), CHECK1["sigma"], 0.0, train="clean")
    eta, m = 0.05, 20_000
    sol = simulate_objective_sgd(ob, eta, jnp.asarray(CHECK1["delta0"]), jax.random.key(3),
                                 t_max=2.0, n_times=5, replicates=m)
    exact = exact_second_moments(lam, CHECK1["sigma"], CHECK1["delta0"], eta, 2.0)
    ref = exact.observable("sgd")[:: 10]
    x = sol["dist2"]
    se = x.std(0)[1:] / np.sqrt(m)
    assert np.all(np.abs(x.mean(0)[1:] - ref[1:]) < 4 * se)


def test_sme_solver_matches_exact_sme_moments():
    """Euler-Maruyama (order 1) and the extrapolated scheme (order 2) against the exact moment
    ODEs: within 4 Monte Carlo standard errors (4,000 paths) plus the scheme's bias."""
    lam = jnp.asarray(CHECK1["eigenvalues"])
    # eps = 0 with train="adversarial" is clean least squares (l_0 = l) and shares the
    # compiled solver with check 2
    ob = GaussianLeastSquares(lam, jnp.zeros(3), CHECK1["sigma"], 0.0)
    eta, m = 0.05, PATHS
    exact = exact_second_moments(lam, CHECK1["sigma"], CHECK1["delta0"], eta, 2.0)
    for order in (1, 2):
        sol = solve_sme(SME(ob, eta, order), jnp.asarray(CHECK1["delta0"]), jax.random.key(1),
                        t_max=2.0, dt=eta / 2, n_times=2, replicates=m, scheme="extrapolated")
        ref = exact.observable(f"sme{order}")[-1]
        x = sol["dist2"][:, -1]
        se = x.std() / np.sqrt(m)
        # + the extrapolated scheme's O(dt^2) bias (~1e-4 here)
        assert abs(x.mean() - ref) < 4 * se + 2e-4, (order, x.mean(), ref, se)


# ------------------------------------------------------------------ check 2
def _check2_problem(d: int, seed: int = 0):
    rng = np.random.default_rng(seed + d)
    lam = jnp.asarray(np.linspace(0.5, 2.0, d))
    theta_star = jnp.asarray(rng.normal(size=d) / np.sqrt(d))
    ob = GaussianLeastSquares(lam, theta_star, 0.5, 0.3)
    return ob, jnp.asarray(0.5 * rng.normal(size=d) / np.sqrt(d))


def _check2_errors(d: int, etas, paths: int, t_max: float, seed: int = 0, div: int = 2):
    """Weak errors ``E dist2`` (SGD minus SME) at ``t_max``; the SMEs by the extrapolated
    scheme at ``dt = eta / div``, SGD and the SMEs on independent streams."""
    ob, theta0 = _check2_problem(d, seed)
    out = {k: [] for k in ("e1", "e2", "se1", "se2", "d12", "se12")}
    for eta in etas:
        sgd = simulate_objective_sgd(ob, float(eta), theta0, jax.random.key(seed), t_max=t_max,
                                     n_times=2, replicates=paths,
                                     chunk=min(paths, 50_000))["dist2"][:, -1]
        smes = [solve_sme(SME(ob, float(eta), o), theta0, jax.random.key(seed + 1), t_max=t_max,
                          dt=eta / div, n_times=2, replicates=paths, scheme="extrapolated",
                          chunk=min(paths, 50_000))["dist2"][:, -1] for o in (1, 2)]
        for o, x in zip((1, 2), smes, strict=True):
            out[f"e{o}"].append(sgd.mean() - x.mean())
            out[f"se{o}"].append(np.sqrt(sgd.var() / paths + x.var() / paths))
        out["d12"].append((smes[0] - smes[1]).mean())
        out["se12"].append((smes[0] - smes[1]).std() / np.sqrt(paths))
    return {k: np.asarray(v) for k, v in out.items()}


def _slope_interval(etas, err, se, draws: int = 2000):
    """Slope of log|err| on log eta and a 95% interval by resampling err within its SE."""
    rng = np.random.default_rng(0)
    slope, _ = loglog_fit(etas, np.abs(err))
    sims = [loglog_fit(etas, np.abs(err + se * rng.standard_normal(len(err))))[0]
            for _ in range(draws)]
    return slope, np.percentile(sims, [2.5, 97.5])


def test_check2_adversarial_weak_order_small_monte_carlo():
    etas = np.array([0.05, 0.025])
    r = _check2_errors(3, etas, paths=PATHS, t_max=2.0)
    _, (lo, hi) = _slope_interval(etas, r["e1"], r["se1"])
    assert lo <= 1.0 <= hi, (lo, hi, r)
    # common Brownian paths: the order-2 correction itself is O(eta) (its SE is ~50x
    # smaller than the weak errors'): halving eta halves it up to O(eta^2) (measured 2.24)
    assert np.all(np.abs(r["d12"]) > 5 * r["se12"])
    ratio = r["d12"][0] / r["d12"][1]
    assert 1.6 <= ratio <= 2.6, ratio
    # the SME solve is converged in dt: at eta = 0.05, dt = eta/2 (used above) against
    # dt = eta/4 on common Brownian paths (grid eta/8), the paired difference of E dist2 is
    # within 4 of its standard errors (~2e-4 with 2,000 paths) of 0, and that bound is below
    # 10% of the order-1 minus order-2 difference (1.65e-2), so the discretisation cannot
    # account for the order-2 SME's error at eta = 0.05 (1.1e-2, docs/sme.md). Measured
    # with 10^5 paths: +1.0e-5 +- 3.2e-5 (eta/2 vs eta/4), -1.8e-5 +- 2.2e-5 (eta/4 vs eta/8).
    ob, theta0 = _check2_problem(3)
    eta = etas[0]
    xs = [solve_sme(SME(ob, eta, 2), theta0, jax.random.key(1), t_max=2.0, dt=eta / div,
                    n_times=2, replicates=PATHS, scheme="extrapolated",
                    brownian_dt=eta / 8)["dist2"][:, -1] for div in (2, 4)]
    diff = xs[0] - xs[1]
    se = diff.std() / np.sqrt(PATHS)
    assert abs(diff.mean()) < 4 * se, (diff.mean(), se)
    assert abs(diff.mean()) + 4 * se < 0.1 * abs(r["d12"][0]), (diff.mean(), se, r["d12"])


def test_check2_order2_error_is_twice_order1_near_stationarity():
    """Why the spec's "order-2 error below order-1 error" is not a theorem [R].

    For clean least squares the stationary covariances solve, with ``S = eta S1 + eta^2 S2``
    and ``S1 = sigma^2 I / 2``: SGD ``K S + S K - eta K S K = eta N(S)``, SME1 ``K S + S K =
    eta N(S)`` and SME2 ``(K + eta K^2/2) S + S (K + eta K^2/2) = eta N(S)``. Subtracting,
    ``E|Delta|^2`` of SGD exceeds SME1's by ``eta^2 sigma^2 tr K / 4`` and SME2's by
    ``eta^2 sigma^2 tr K / 2``: near stationarity both errors are O(eta^2) and the order-2
    SME's is twice the order-1 SME's. The order-2 SME only wins while the O(eta) error of
    the transient (the mean) dominates. Checked on check 1's instance from exact moments
    (no Monte Carlo) at T = 20, where the transient has decayed (exp(-2 lambda_min T) =
    e^-20): at eta = 0.003125 both errors within 5% of the closed forms (the O(eta)
    relative corrections measured 2%), and at the spec's eta = 0.05 the order-2 error is
    the larger one."""
    lam, sig, d0 = np.asarray(CHECK1["eigenvalues"]), CHECK1["sigma"], CHECK1["delta0"]
    for eta, check in ((0.003125, "closed form"), (0.05, "ordering")):
        m = exact_second_moments(lam, sig, d0, eta, 20.0)
        sgd = m.observable("sgd")[-1]
        e1, e2 = sgd - m.observable("sme1")[-1], sgd - m.observable("sme2")[-1]
        if check == "closed form":
            assert e1 == pytest.approx(eta**2 * sig**2 * lam.sum() / 4, rel=0.05)
            assert e2 == pytest.approx(eta**2 * sig**2 * lam.sum() / 2, rel=0.05)
        else:
            assert 0 < e1 < e2, (e1, e2)


@pytest.mark.slow
@pytest.mark.parametrize("d", [2, 3, 4, 5])
def test_check2_adversarial_weak_order_full(d):
    """Check 2 with 1.2e5 chains (the spec says 10^6: ~1 h of CPU per d on 2 cores; 1.2e5
    takes ~8 min and gives SEs of ~4e-4 to 9e-4), eta in {0.025, 0.0125, 0.00625}, T = 2, dt = eta/2
    (converged: see the default test).

    What theory guarantees is asserted for every d: the order-2 error is second order (the
    95% interval of its slope contains 2). The spec's two statements hold only where the
    transient's O(eta) error dominates (test above): on our d = 3 instance (far start),
    where the order-2 error is below the order-1 error for eta <= 0.025 (not at 0.05) --
    asserted; on the d = 2, 4, 5 instances (near stationarity by T = 2) the order-1 error
    is itself ~eta^2 and the order-2 error larger at every eta, so they are not asserted.
    The order-1 slope's interval is not asserted: at d = 3 its fit over this range is
    flattened by the eta^2 term (0.34, 95% interval 0.01-0.64 over [0.0125, 0.05] with
    1.2e5 chains), elsewhere it is ~2. Numbers in docs/sme.md.
    """
    etas = np.array([0.025, 0.0125, 0.00625])
    # the spec's 10^6 chains: ADVDYN_CHECK2_PATHS=1000000 (about an hour of CPU per d)
    paths = int(os.environ.get("ADVDYN_CHECK2_PATHS", "120000"))
    r = _check2_errors(d, etas, paths=paths, t_max=2.0)
    slope, (lo, hi) = _slope_interval(etas, r["e2"], r["se2"])
    print(f"check 2, d = {d}: order-2 slope {slope:.2f} ({lo:.2f}-{hi:.2f}); errors {r}")
    assert lo <= 2.0 <= hi, (lo, hi, r)
    if d == 3:
        assert np.all(np.abs(r["e2"]) < np.abs(r["e1"])), r


# ------------------------------------------------------------------ check 3
def test_check3_adversarial_flow_never_increases_and_clean_flow_does():
    d = 2
    kw = dict(eigenvalues=jnp.ones(d), theta_star=jnp.array([1.0, 0.0]), sigma=0.1, eps=1.0)
    times = np.linspace(0.0, 30.0, 601)
    adv = gradient_flow(GaussianLeastSquares(**kw), jnp.zeros(d), times)
    clean = gradient_flow(GaussianLeastSquares(**kw, train="clean"), jnp.zeros(d), times)
    r_adv, r_clean = adv["adv_risk"], clean["adv_risk"]
    assert r_clean[0] == pytest.approx(0.505, abs=1e-12)
    expected_end = 0.5 * (0.1 + C0) ** 2 + 0.5 * (1 - C0**2)  # R_eps(theta*) = 0.585
    assert expected_end == pytest.approx(0.585, abs=1e-3)
    assert r_clean[-1] == pytest.approx(expected_end, abs=1e-8)
    assert np.max(np.diff(r_adv)) <= 1e-12  # never increases
    assert np.all(adv["adv_rate"] <= 1e-12)
    assert np.max(clean["adv_rate"]) > 1e-3  # the clean flow raises R_eps ...
    assert r_clean[-1] > r_clean[0]  # ... above its initial value, late in training
    # and ends above the adversarial flow's limit
    assert r_adv[-1] < r_clean[-1]


# ------------------------------------------------------------------ check 4
def test_check4_exact_noise_sme_agrees_with_homogenized_sgd_and_ode():
    from advdyn.config.build import instantiate
    from advdyn.config.schema import ProblemConfig
    from advdyn.problem import stream_key
    from advdyn.simulate import simulate_hsgd, time_grid
    from advdyn.theory import Constant, solve_ode

    d, gamma, t_max = 1000, 0.8, 0.5
    cfg = ProblemConfig(d=d, seed=0, spectrum={"kind": "uniform", "low": 0.2, "high": 1.8},
                        task={"kind": "regression", "noise": 0.3}, epsilon=0.5)
    inst = instantiate(cfg)
    grid = time_grid(d, t_max, 2, block_size=50)
    hsgd = simulate_hsgd(inst, Constant(gamma), stream_key(0), t_max=t_max, n_times=2,
                         replicates=4, dtype="float64", block_size=50)
    ode = solve_ode(inst, Constant(gamma), grid.times)
    for noise in ("exact", "homogenized"):
        ob = GaussianLeastSquares.from_instance(inst, noise=noise)
        sme = solve_sme(core_scaling(ob, gamma, d), inst.theta0, jax.random.key(0),
                        t_max=t_max, dt=1 / d, n_times=2, replicates=4)
        np.testing.assert_allclose(sme.ts, hsgd.ts, atol=1e-12)
        tol = 3 / np.sqrt(d)
        m_sme, m_h = sme["adv_risk"].mean(0), hsgd["adv_risk"].mean(0)
        assert np.all(np.abs(m_sme / m_h - 1) < tol), (noise, m_sme, m_h)
        assert np.all(np.abs(m_sme / ode["adv_risk"] - 1) < tol), (noise, m_sme, ode["adv_risk"])


# ------------------------------------------------------------------ check 5
def test_check5_control_policy_closed_form():
    a, noise, eta, m0 = 1.5, 2.0, 0.1, 4.0
    t_star = switch_time(a, noise, eta, m0)
    assert t_star > 0
    times = np.linspace(0.0, 10.0, 401)
    out = solve_control(a, noise, eta, m0, times)
    np.testing.assert_allclose(out["u"], optimal_policy(times, a, noise, eta, m0), atol=1e-8)
    after = times > t_star + 1e-6
    np.testing.assert_allclose(out["u"][after], 1 / (1 + a * (times[after] - t_star)),
                               atol=1e-8)
    # the feedback beats every fixed multiplier at every time
    for u in (1.0, 0.5, 0.2, 0.05):
        fixed = solve_control(a, noise, eta, m0, times, policy=u)
        assert np.all(out["m"] <= fixed["m"] * (1 + 1e-9)), u
