"""Coarser bins for the modes relaxed before the first record (spectral.relaxed_rank_edges)."""

from __future__ import annotations

import numpy as np
import pytest

import advdyn as ad
from advdyn.config import build as B
from advdyn.config.schema import ProblemConfig, validate_config
from advdyn.errors import ConfigError
from advdyn.problem.losses import LeastSquares, Logistic
from advdyn.theory import spectral as S
from advdyn.theory.stationary import adversarial_optimum
from advdyn.workflows import bins as W

GAMMA = 0.8
TIMES = np.linspace(0.0, 10.0, 61)
LR = ad.Constant(np.asarray(GAMMA, dtype=np.float64))


def power(d):
    return ProblemConfig(d=d, spectrum={"kind": "power_law", "exponent": 1.0},
                         task={"kind": "regression", "noise": 0.3}, epsilon=0.5)


def test_relaxed_eigenvalue_closed_form_and_where_it_applies():
    # 20 / (gamma t_1): the state decays at least like exp(-lambda gamma t) for least squares
    assert W.relaxed_eigenvalue(LR, TIMES, LeastSquares()) == pytest.approx(20 / (GAMMA / 6))
    # a decaying rule: the smaller end of [t_0, t_1] bounds int gamma from below
    decay = ad.Decay(1.0, 0.1, 1.0)
    g1 = float(decay(TIMES[1]))
    assert g1 < 1.0
    assert W.relaxed_eigenvalue(decay, TIMES, LeastSquares()) == pytest.approx(20 / (g1 / 6))
    # no bound: a rule with a state, a loss whose curvature h_1 can fall below 1
    assert W.relaxed_eigenvalue(ad.LineSearch(1.0), TIMES, LeastSquares()) is None
    assert W.relaxed_eigenvalue(LR, TIMES, Logistic()) is None


def test_relaxed_edges_split_the_count_by_log_length():
    n, n_bins, c, above = 10**6, 32, 1e4, 150.0

    def key_at(r):
        return c / (np.asarray(r, dtype=np.float64) + 1.0)

    edges = S.relaxed_rank_edges(n, n_bins, key_at, above)
    assert edges[0] == 0 and edges[-1] == n and np.all(np.diff(edges) > 0)
    assert len(edges) - 1 == n_bins
    cut = int(np.sum(key_at(np.arange(n)) > above))  # ranks above the threshold
    assert cut in edges
    # independent count of the bins above: log length / width against log length below
    top, low = np.log(c / above) / S.RELAXED_WIDTH, np.log(above / key_at(n - 1))
    n_top = round(n_bins * top / (top + low))
    assert int(np.sum(edges < cut)) == n_top
    # below the cut: equal widths in log rank (= log lambda here), up to rounding
    ratios = np.diff(np.log(edges[edges >= cut]))
    assert np.ptp(ratios) < 1e-3 * ratios.mean() + 2 / cut
    # nothing relaxed, or everything: the plain log edges
    plain = S.rank_edges(n, n_bins, "log")
    np.testing.assert_array_equal(S.relaxed_rank_edges(n, n_bins, key_at, 2 * c), plain)
    np.testing.assert_array_equal(S.relaxed_rank_edges(n, n_bins, key_at, 1e-9), plain)


def test_relaxed_bins_keep_the_node_count_flat_in_d():
    above = W.relaxed_eigenvalue(LR, TIMES, LeastSquares())
    counts = {d: B.binned_from_config(power(d), 32, gauss=True, relaxed_above=above).n_bins
              for d in (10**4, 10**6, 10**8)}
    assert len(set(counts.values())) == 1, counts
    # the multiplicities still add up to d: every direction is in exactly one bin
    inst = B.binned_from_config(power(10**6), 32, gauss=True, relaxed_above=above)
    assert float(np.sum(inst.multiplicity)) == pytest.approx(10**6, rel=1e-12)


# long: the default run keeps test_run_records_the_relaxed_eigenvalue on the same path
@pytest.mark.slow
def test_relaxed_bins_against_fine_plain_bins():
    """At d = 1e5 the coarse relaxed decades cost no accuracy and free bins for the decades
    that matter: 16 Gauss bins with the relaxed decades coarser are closer to a 128-bin
    reference than 16 plain log bins by more than 2x (measured 9.7e-6 against 3.8e-5), and
    within 2e-5 of it. No sampling is involved: the bounds are twice the measured
    deterministic quadrature errors (the Gauss-bin error falls as bins^-4,
    `docs/benchmarks.md`), and the explicit solver at rtol 1e-10 adds ~1e-10."""
    d = 10**5
    above = W.relaxed_eigenvalue(LR, TIMES, LeastSquares())

    def risk(bins, relaxed_above=None):
        inst = B.binned_from_config(power(d), bins, gauss=True, relaxed_above=relaxed_above)
        sol = ad.solve_ode(inst, LR, TIMES, rtol=1e-10, optimum=adversarial_optimum(inst),
                           solver="tsit5")
        return np.asarray(sol["adv_risk"])

    ref = risk(128)
    err_relaxed = np.max(np.abs(risk(16, above) / ref - 1))
    err_plain = np.max(np.abs(risk(16) / ref - 1))
    assert err_relaxed < 2e-5
    assert err_relaxed < err_plain / 2


def test_run_records_the_relaxed_eigenvalue():
    cfg = validate_config({
        "problem": {"d": 10**6, "epsilon": 0.5, "task": {"noise": 0.3},
                    "spectrum": {"kind": "power_law", "exponent": 1.0}},
        "lr": {"gamma": GAMMA},
        "run": {"methods": ["ode"], "bins": 16, "t_max": 2.0, "n_times": 11,
                "bins_check": False},
    })
    ds = ad.run(cfg).datasets["ode"]
    t1 = float(ds.time[1] - ds.time[0])
    assert ds.attrs["bins_relaxed_above"] == pytest.approx(20 / (GAMMA * t1))
    # the solve followed the same modes at the looser first-interval tolerance
    assert ds.attrs["relaxed_above"] == ds.attrs["bins_relaxed_above"]
    off = ad.run(cfg.with_overrides(**{"run.bins_relaxed": False})).datasets["ode"]
    assert np.isnan(off.attrs["bins_relaxed_above"]) and "relaxed_above" not in off.attrs
    # both are 16-bin quadratures of one problem: they agree to the quadrature error
    assert np.max(np.abs(ds.adv_risk / off.adv_risk - 1)) < 1e-2


def test_realised_instance_keeps_plain_bins():
    # its initial products vary by direction: coarse bins would misstate the record at t_0
    cfg = validate_config({
        "problem": {"d": 2000, "epsilon": 0.5, "task": {"noise": 0.3},
                    "spectrum": {"kind": "power_law", "exponent": 1.0}},
        "lr": {"gamma": GAMMA},
        "run": {"methods": ["ode", "sgd"], "bins": 8, "t_max": 1.0, "n_times": 3,
                "replicates": 1, "bins_check": False},
    })
    instance, binned = W.spectral_instances(cfg)
    assert instance is not None
    np.testing.assert_array_equal(binned.multiplicity, S.bin_instance(instance, 8).multiplicity)
    assert W.config_relaxed_eigenvalue(cfg) is not None  # it would apply to a config path


def _run_config(spectrum, d=10**6, **run):
    return validate_config({
        "problem": {"d": d, "epsilon": 0.5, "task": {"noise": 0.3}, "spectrum": spectrum},
        "lr": {"gamma": GAMMA},
        "run": {"methods": ["ode"], "bins": 32, "t_max": 10.0, "n_times": 61, **run},
    })


def test_relaxed_eigenvalue_only_where_it_changes_the_bins():
    law = {"kind": "power_law", "exponent": 1.0}
    assert W.config_relaxed_eigenvalue(_run_config(law)) is not None
    # a bounded spectrum keeps quantile bins; a small d has no eigenvalue above lambda_r
    # (lambda_max = 1000 / H_1000 = 134 < 150): the bins stay plain, so nothing is reported
    assert W.config_relaxed_eigenvalue(
        _run_config({"kind": "uniform", "low": 0.2, "high": 1.8})) is None
    assert W.config_relaxed_eigenvalue(_run_config(law, d=1000)) is None
    assert W.config_relaxed_eigenvalue(_run_config(law, bins_relaxed=False)) is None


@pytest.mark.parametrize("value", ["yes", 1])
def test_bins_relaxed_is_a_strict_boolean(value):
    with pytest.raises(ad.ConfigError, match=r"run\.bins_relaxed"):
        _run_config({"kind": "power_law", "exponent": 1.0}, bins_relaxed=value)


def test_relaxed_tolerance_saves_steps_and_keeps_the_solver_error():
    # solve_ode(relaxed_above=...) weighs the relaxed modes 1e-3 in the first interval's error
    # norm. Reference: the same bins without it at rtol 1e-10 (Kvaerno5, the plain norm), so
    # the difference is the relaxed solve's own solver error. Bound 3 rtol: a solver held to
    # rtol stays within a small multiple of it (measured 0.27 rtol on the benchmark), and
    # the bins' quadrature error (~1e-3 for 32 mean bins) is the same in both and cancels.
    d, rtol = 10**6, 1e-7
    above = W.relaxed_eigenvalue(LR, TIMES, LeastSquares())
    binned = B.binned_from_config(power(d), 32, relaxed_above=above)
    opt = adversarial_optimum(binned)
    plain = ad.solve_ode(binned, LR, TIMES, rtol=rtol, optimum=opt)
    relaxed = ad.solve_ode(binned, LR, TIMES, rtol=rtol, optimum=opt, relaxed_above=above)
    ref = ad.solve_ode(binned, LR, TIMES, rtol=1e-10, optimum=opt)
    assert relaxed.stats["solver"] == "kvaerno5" and relaxed.stats["relaxed_above"] == above
    assert "relaxed_above" not in plain.stats
    # the transients above lambda_r (3 of the 32 bins, 2.7 of the spectrum's 6 decades) take
    # fewer steps: 288 -> 269 measured (deterministic counts; 250 -> 241 at d = 1e4)
    assert relaxed.stats["steps"] < 0.97 * plain.stats["steps"]
    err = np.max(np.abs(relaxed["adv_risk"] / ref["adv_risk"] - 1))
    assert err < 3 * rtol


def test_relaxed_above_is_checked_against_the_proven_bound():
    d = 10**4
    above = W.relaxed_eigenvalue(LR, TIMES, LeastSquares())
    binned = B.binned_from_config(power(d), 8, relaxed_above=above)
    # not a positive number
    for bad in (0.0, -1.0, float("nan"), "150"):
        with pytest.raises(ConfigError, match="relaxed_above"):
            ad.solve_ode(binned, LR, TIMES, relaxed_above=bad)
    # below 20 / int gamma: modes there have not provably relaxed by the first record
    with pytest.raises(ConfigError, match="at least 150"):
        ad.solve_ode(binned, LR, TIMES, relaxed_above=0.5 * above)
    # a rule with a state has no bound
    with pytest.raises(ConfigError, match="rule without state"):
        ad.solve_ode(binned, ad.LineSearch(1.0), TIMES, relaxed_above=above)
    # the explicit solver, whose steps the stability limit sets, ignores it (and says so)
    explicit = ad.solve_ode(binned, LR, TIMES, relaxed_above=above, solver="tsit5")
    assert "relaxed_above" not in explicit.stats
    plain = ad.solve_ode(binned, LR, TIMES, solver="tsit5")
    np.testing.assert_array_equal(explicit["adv_risk"], plain["adv_risk"])
