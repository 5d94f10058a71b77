"""Limit report, monotone scan and their CLI commands (`advdyn limit`, `advdyn monotone`)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

import advdyn
from advdyn.cli._app import EXIT_USER_ERROR, app
from advdyn.theory.stationary import adversarial_optimum, constant_rate_limit
from advdyn.workflows.limits import default_inits, limit_report, monotone_scan

runner = CliRunner()


def _instance(d=200, **over):  # (one d for the file's checks: shared compiled programs)
    cfg = advdyn.default_config().with_overrides(**{"problem.d": d, **over})
    return advdyn.instantiate(cfg.problem)


def test_limit_report_converges_only_for_small_rates():
    inst = _instance()
    small = limit_report(inst, 0.8)
    assert small["converges"] and small["fixed_point_converged"]
    assert small["ode_relative_gap"] < 1e-4  # the ODE reached the fixed point
    # least squares: lambda_eff > lambda_opt (the noise inflates the norm term) and the
    # limiting risk exceeds the minimum
    assert small["lambda_eff"] > small["lambda_opt"] > 0
    assert small["adv_risk_limit"] > small["adv_risk_opt"]
    big = limit_report(inst, 3.0)
    assert not big["converges"] and big["adv_risk_limit"] is None
    assert "ode_diverged" in big  # the ODE check confirms it: the risk blows up


def test_limit_report_classification_has_no_ridge():
    cfg = advdyn.load_config("examples/logistic_binary_mixture.toml")
    inst = advdyn.instantiate(cfg.with_overrides(**{"problem.d": 300}).problem)
    report = limit_report(inst, 1.0)
    assert report["converges"]
    assert report["lambda_opt"] is None and report["lambda_eff"] is None


def test_near_optimum_start_is_never_monotone():
    inst = _instance(d=200)
    opt = adversarial_optimum(inst)
    inits = default_inits(inst, opt, n_random=1, seed=0)
    rates = [0.05, 0.5, 1.0]
    scan = monotone_scan(inst, rates, inits, t_max=15.0, n_times=151, optimum=opt)
    near = scan.sel(init="near_optimum")
    start_dist = float(scan.dist_to_opt.sel(init="near_optimum").isel(time=0, lr=0))
    for g in rates:
        # independent reason: the limit sits at squared distance gamma-dependent > 0 from the
        # optimum, farther than this start, so the distance must increase somewhere
        lim_dist = float(opt.distance2(constant_rate_limit(inst, g, start=opt).state, inst))
        assert lim_dist > start_dist
        assert not bool(near.monotone_dist.sel(lr=g))
    # the criterion is not vacuous: from the config's start, a small rate descends monotonically
    assert bool(scan.monotone_risk.sel(lr=0.05, init="config"))
    assert bool(scan.monotone_dist.sel(lr=0.05, init="config"))


def test_limit_cli_writes_json(tmp_path):
    res = runner.invoke(app, ["limit", "--d", "200", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "limit.json").read_text())
    for key in ("adv_risk_opt", "adv_risk_limit", "lambda_opt", "lambda_eff", "converges"):
        assert key in report
    assert report["converges"] is True
    assert "adv_risk_opt" in res.output


def test_limit_cli_needs_a_constant_rate(write_toml, tmp_path):
    path = write_toml('[problem]\nd = 200\n[lr]\nkind = "polyak"\n')
    res = runner.invoke(app, ["limit", str(path), "--out", str(tmp_path)])
    assert res.exit_code == EXIT_USER_ERROR
    assert "lr" in res.output and "--gamma" in res.output
    res = runner.invoke(app, ["limit", str(path), "--gamma", "0.5", "--out", str(tmp_path),
                              "--no-ode-check"])
    assert res.exit_code == 0, res.output


def test_monotone_cli(tmp_path):
    res = runner.invoke(app, ["monotone", "--d", "100", "--lr", "0.2,1", "--random-inits", "1",
                              "--n-times", "101", "--t-max", "10", "-q", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    scan = advdyn.read_netcdf(tmp_path / "monotone.nc")
    assert list(scan.lr.values) == [0.2, 1.0]
    assert (tmp_path / "monotone.png").stat().st_size > 1000
    assert "no constant rate gives monotone descent" in res.output
    bad = runner.invoke(app, ["monotone", "--lr", "0.1,-2", "--out", str(tmp_path)])
    assert bad.exit_code == EXIT_USER_ERROR and "--lr" in bad.output
    np.testing.assert_array_equal(scan.monotone_risk.shape, (2, scan.sizes["init"]))


def test_limit_figure_numbers_cross_check():
    from advdyn.workflows.figures import figure_limit

    fig, info = figure_limit(d=150, rates=[0.2, 1.0])
    assert len(info["rows"]) == 2 and len(fig.axes) == 3
    # ODE after its slowest mode decayed by e^-25 vs the fixed point (ODE rtol 1e-10)
    assert info["max_gap_ode_vs_fixed_point"] < 1e-6
    # the limit's overlap is that of the ridge solution (K + lambda_eff I)^{-1} K theta*,
    # computed in closed form from the spectrum: equal up to the fixed point's residual
    assert info["max_gap_ridge_overlap_vs_fixed_point"] < 1e-9


def test_figure_cli_rejects_unknown_name(tmp_path):
    res = runner.invoke(app, ["figure", "nonsense", "--out", str(tmp_path)])
    assert res.exit_code == EXIT_USER_ERROR and "NAME" in res.output


def test_limit_cli_on_spectral_bins_at_huge_d(write_toml, tmp_path):
    # run.bins: no instance is drawn (d = 10^7 would need 80 MB per vector); the answer must
    # match the per-direction theory at d = 2000 up to the d^{-1/2} spread of the realised
    # teacher's spectral weights (~sqrt(2/d) * std(lambda)/mean(lambda) ~ 1.5%)
    path = write_toml(
        '[problem]\nd = 10000000\nepsilon = 0.5\n'
        'spectrum = { kind = "uniform", low = 0.2, high = 1.8 }\n'
        'task = { noise = 0.3 }\n[lr]\ngamma = 0.8\n[run]\nmethods = ["ode"]\nbins = 64\n'
    )
    res = runner.invoke(app, ["limit", str(path), "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "limit.json").read_text())
    small = limit_report(_instance(d=2000), 0.8, check_with_ode=False)
    assert report["converges"] and report["d"] == 10_000_000
    for key in ("adv_risk_opt", "adv_risk_limit", "lambda_eff"):
        assert abs(report[key] / small[key] - 1) < 0.02, key


def test_unphysical_fixed_point_is_not_a_limit():
    # clean least squares: s^2 (1 - gamma tr K / 2d) = const has a solution with s^2 < 0 for
    # gamma > 2 d / tr K = 2; it solves the algebra but is no limit (the ODE diverges)
    inst = _instance(d=200, **{"problem.epsilon": 0.0, "problem.spectrum": {"kind": "identity"}})
    lim = constant_rate_limit(inst, 2.4)
    assert not bool(lim.converged)
    report = limit_report(inst, 2.4)
    assert report["adv_risk_limit"] is None and not report["converges"]
    assert limit_report(inst, 1.6)["converges"]


def test_sweep_limit_point_kind():
    from advdyn.errors import ConfigError
    from advdyn.workflows.sweep import limit_point

    cfg = advdyn.default_config().with_overrides(**{"problem.d": 200})
    ds = limit_point(cfg)
    report = limit_report(advdyn.instantiate(cfg.problem), 0.8)
    assert float(ds["converges"]) == 1.0
    for key in ("adv_risk_opt", "adv_risk_limit", "lambda_eff"):
        np.testing.assert_allclose(float(ds[key]), report[key], rtol=1e-12)
    polyak = cfg.with_overrides(**{"lr": {"kind": "polyak"}})
    with pytest.raises(ConfigError, match="lr"):
        limit_point(polyak)


@pytest.mark.parametrize("check", [True, False])
def test_sweep_run_point_with_bins(check):
    # the shipped sweep examples/sweeps/epsilon_gamma.toml bins without the doubled-bins
    # check: its points once failed with KeyError 'bins_rel_change' (summary["bins"] then
    # holds only bins_relaxed_above)
    from advdyn.workflows.sweep import run_point

    cfg = advdyn.default_config().with_overrides(**{
        "problem.d": 10**6, "problem.spectrum": {"kind": "uniform", "low": 0.2, "high": 1.8},
        "run.methods": ["ode"], "run.bins": 8, "run.bins_check": check, "run.t_max": 1.0,
    })
    ds = run_point(cfg)
    assert "ode_adv_risk" in ds
    assert ("ode_bins_rel_change" in ds) == check
