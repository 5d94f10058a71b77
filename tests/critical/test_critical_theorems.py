"""Theorems 1 and 2 of the paper re-examined on linear regression with enough repetitions
(pooled vs per-dataset estimators), and eps* of streaming least squares from the exact ODE
against finite-d SGD."""

from __future__ import annotations

import numpy as np
import pytest

from advdyn.critical import exact, linear

PAIRS = [(8, 400), (16, 400), (32, 400), (64, 400)]


def _study(pairs, reps, seed):
    # 200 steps: the slowest contraction per step is ~0.82 at d/n = 0.16, so gradient
    # descent has converged to rounding (see test_critical_linear for the convergence check)
    return linear.critical_study(pairs, eps_grid=np.geomspace(1e-4, 1.0, 33), reps=reps,
                                 steps=200, seed=seed)


def _slopes(ds):
    r = ds["d"].values / ds["n"].values
    return {k: linear.loglog_slope(r, ds[k].values) for k in (
        "eps_cross", "eps_cross_per_dataset", "eps_surrogate", "eps_surrogate_per_dataset",
        "eps_surrogate_first_order")}


def test_theorem2_surrogate_scales_like_d_over_n_fast():
    """Pooled surrogate eps* ~ (d/n)^1, tracking the first-order prediction
    Delta / (2 |theta| E|r|); a fast version of the slow test below (60 datasets, 2 pairs)."""
    ds = _study([(16, 400), (64, 400)], 60, seed=0)
    s = _slopes(ds)
    # the pooled estimate and the first-order prediction share the datasets' gap noise, so
    # they agree much more closely than either agrees with its expectation: 5%
    np.testing.assert_allclose(ds["eps_surrogate"].values,
                               ds["eps_surrogate_first_order"].values, rtol=0.05)
    # gap noise at 60 datasets: ~16% at d = 16, 4% at d = 64 -> slope sd ~ 0.12 over ln 4
    assert 0.7 < s["eps_surrogate"] < 1.35
    assert abs(s["eps_cross"] - 0.5) < 0.1


@pytest.mark.slow
def test_theorem1_and_2_slopes_with_400_datasets():
    """The slopes the docs quote (400 datasets per pair, 3 seeds: stable to +-0.02)."""
    for seed in (0, 1):
        s = _slopes(_study(PAIRS, 400, seed))
        # Theorem 1 crossing: 0.457-0.464 (pooled = per dataset); the theorem's 1/2 up to
        # the O(sqrt(d/n)) corrections of sqrt(pi/2) sqrt(d/(n-d-1))
        assert 0.43 < s["eps_cross"] < 0.49 and 0.43 < s["eps_cross_per_dataset"] < 0.49
        # Theorem 2's surrogate, pooled: 1.03-1.06, the first-order d/n law (1.04-1.07)
        assert 0.97 < s["eps_surrogate"] < 1.12
        assert abs(s["eps_surrogate"] - s["eps_surrogate_first_order"]) < 0.03
        # per dataset, excluding the datasets with a negative gap (eps* undefined): 0.72-0.75
        assert 0.65 < s["eps_surrogate_per_dataset"] < 0.82


@pytest.mark.slow
def test_streaming_eps_star_is_zero_by_the_papers_definition():
    """With fresh samples there is no train/test gap: the adversarial risk of the
    adversarially trained iterate exceeds the clean risk of the clean one at every eps > 0."""
    times = np.array([0.0, 2.0, 8.0, 32.0])
    ds = exact.ode_critical_radius(50, times, [1e-3, 1e-2, 1e-1])
    assert np.all(ds["eps_star"].values[1:] == 0.0)
    gap = ds["adv_risk"].values[1:, 1:] - ds["clean_risk"].values[None, 1:]
    assert np.all(gap > 0)
    # the gap-matched analogue decreases with n
    m = ds["eps_star_margin"].values[1:]
    assert np.all(np.diff(m) < 0)


@pytest.mark.slow
def test_streaming_ode_matches_sgd_and_scales_like_d_over_n():
    d, grid = 100, np.geomspace(1e-3, 1.0, 16)
    from advdyn.simulate.sgd import time_grid

    times = time_grid(d, 32.0, 11).times
    ode = exact.ode_critical_radius(d, times, grid)
    sgd = exact.sgd_critical_radius(d, 32.0, 11, grid, replicates=8)
    assert np.all(sgd["eps_star"].values[:, 1:] == 0.0)  # the paper's definition, SGD too
    m = sgd["eps_star_margin"].values[:, 1:]
    # the ODE is the d -> inf limit: within 2.5 standard errors of the 8-replicate SGD mean
    # plus the O(1/d) finite-size bias (1% of the value)
    se = m.std(axis=0, ddof=1) / np.sqrt(m.shape[0])
    err = np.abs(ode["eps_star_margin"].values[1:] - m.mean(axis=0))
    assert np.all(err <= 2.5 * se + 0.01 * m.mean(axis=0) + 1e-3)
    slope = exact.scaling_slope(times, ode["eps_star_margin"].values, 4.0)
    assert -1.2 < slope < -0.95  # eps* ~ d/n (measured -1.06 at d = 200)


def test_a_diverged_radius_is_infinite_risk_and_named():
    """A radius whose ODE diverges does not stop the study: its adversarial risk is infinite
    from the divergence on (eps* then lies below it), its code is ``diverged``, and the
    warning names it. gamma = 1.9 on isotropic least squares (tr K / d = 1) with the
    divergence bound at 4 (|theta_0 - theta*|^2 + |theta*|^2 + 1) = 12: |theta - theta*|^2
    reaches 12.8 by t = 4 at eps = 0.3 and stays below 8 at eps = 3 (10.6 < 12 at eps = 0)."""
    import advdyn as ad
    from advdyn.solution import RESULTS
    from advdyn.workflows.critical_exact import failed_radii

    times = np.linspace(0.0, 4.0, 9)
    ds = exact.instance_critical_radius(exact.least_squares_instance(50, 0.0), times,
                                        [0.3, 3.0], ad.Constant(1.9), margin=1.0, floor=0.5,
                                        solver="tsit5", divergence_factor=4.0)
    assert ds["result"].values.tolist() == [RESULTS.successful, RESULTS.diverged,
                                            RESULTS.successful]
    adv = ds["adv_risk"].values
    lost = ~np.isfinite(adv[1])
    assert lost[-1] and not lost[0] and np.all(np.isposinf(adv[1][lost]))
    assert np.all(np.isfinite(adv[[0, 2]]))
    # the paper's eps* is 0 (module docstring); the gap-matched one lies below the diverged
    # radius where it diverged
    assert np.all(ds["eps_star"].values[lost] == 0.0)
    assert np.all(ds["eps_star_margin"].values[lost] <= 0.3)
    (warning,) = failed_radii(ds)
    assert "eps = 0.3 diverged from n/d = " in warning and "below that radius" in warning
