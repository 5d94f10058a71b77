"""``advdyn critical-exact``: eps*(n/d) of a run config from the exact ODE (issue 28), on a
synthetic problem and on a data set's surrogate, dense or binned."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

import advdyn as ad
from advdyn.critical import exact

SYNTHETIC = """
[problem]
d = 12
loss = "least_squares"
seed = 0
spectrum = { kind = "uniform", low = 0.5, high = 1.5 }
task = { kind = "regression", teacher_norm = 1.0, noise = 0.5 }

[lr]
kind = "decay"
gamma0 = 1.0
tau = 1.0
beta = 1.0

[run]
t_max = 4.0
n_times = 3
"""


def test_synthetic_cli_equals_the_api(tmp_path, dispatch):
    """The command's numbers are the Python API's on the same instance, rule, times and radii
    (``eps_over_radius`` times the regression radius ``sigma / |theta*|``): the same
    computation, so equal to rounding (1e-12)."""
    (tmp_path / "c.toml").write_text(SYNTHETIC + "[critical]\neps_over_radius = [0.5, 2.0]\n")
    status, out, err, _ = dispatch("critical-exact", tmp_path / "c.toml", "-o", tmp_path / "o")
    assert status == 0, err
    assert err.startswith("advdyn critical-exact: d = 12, loss = least_squares, per direction")
    assert "critical_exact.nc, critical_exact.png, critical_exact.json" in out.replace("\n", " ")
    got = xr.open_dataset(tmp_path / "o" / "critical_exact.nc")
    summary = json.loads((tmp_path / "o" / "critical_exact.json").read_text())

    cfg = ad.validate_config({k: v for k, v in ad.config.schema.read_toml(
        tmp_path / "c.toml").items() if k != "critical"})
    instance = ad.instantiate(cfg.problem)
    radius = exact.problem_radius(instance)
    assert radius == pytest.approx(0.5 / np.linalg.norm(np.asarray(instance.theta_star)),
                                   rel=1e-12)
    times = ad.time_grid(12, 4.0, 3).times
    ref = exact.instance_critical_radius(instance, times, radius * np.array([0.5, 2.0]),
                                         ad.Decay(1.0, 1.0, 1.0), 1.0)
    assert summary["radius"] == pytest.approx(radius, rel=1e-12)
    for name in ("adv_risk", "clean_risk", "eps_star", "eps_star_margin"):
        np.testing.assert_allclose(got[name].values, ref[name].values, rtol=1e-12,
                                   err_msg=name)
    assert summary["eps_star_margin"][1:] == pytest.approx(ref["eps_star_margin"].values[1:],
                                                           rel=1e-12)


def _two_classes(tmp_path, d: int = 6, n: int = 200):
    """A small two-class data set (class means +-0.8 along the first axis)."""
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, n)
    X = rng.standard_normal((n, d)) * np.sqrt(np.linspace(0.5, 1.5, d))
    X[:, 0] += 1.6 * y - 0.8
    np.savez(tmp_path / "rows.npz", X=X, y=y)


def _regression(tmp_path, d: int = 12, n: int = 240):
    """A small regression data set (the synthetic config's dimension: the ODE programs
    compiled for one serve the other)."""
    rng = np.random.default_rng(5)
    X = rng.standard_normal((n, d)) * np.sqrt(np.linspace(0.5, 1.5, d))
    y = X @ (rng.standard_normal(d) / np.sqrt(d)) + 0.5 * rng.standard_normal(n)
    np.savez(tmp_path / "rows.npz", X=X, y=y)


def _data_config(tmp_path, spectrum: str) -> str:
    binned = "probes = 4\nlanczos_steps = 2\n" if spectrum == "binned" else ""
    return SYNTHETIC.replace('spectrum = { kind = "uniform", low = 0.5, high = 1.5 }\n'
                             'task = { kind = "regression", teacher_norm = 1.0, noise = 0.5 }\n',
                             "").replace("d = 12\n", "") + f"""
[problem.data]
path = "{tmp_path / 'rows.npz'}"
task = "regression"
spectrum = "{spectrum}"
{binned}
[critical]
eps_over_radius = [0.5, 2.0]
"""


@pytest.mark.parametrize("spectrum", [
    "dense",
    # compile-bound (the binned ODE's own programs); sibling: the dense case, and
    # tests/problem/test_data_exact.py for the binned ODE's eps* itself
    pytest.param("binned", marks=pytest.mark.slow)])
def test_runs_on_a_data_problem(tmp_path, dispatch, spectrum):
    """A data config runs on either spectrum path: the radii are multiples of the
    data-scaled radius (regression: the residual noise over the teacher's norm), the path
    taken is recorded, and the gap-matched eps* is a radius or beyond the grid at every
    record after the first."""
    _regression(tmp_path)
    (tmp_path / "c.toml").write_text(_data_config(tmp_path, spectrum))
    status, _, err, _ = dispatch("critical-exact", tmp_path / "c.toml", "-o", tmp_path / "o")
    assert status == 0, err
    summary = json.loads((tmp_path / "o" / "critical_exact.json").read_text())
    assert summary["radius_source"] == "data" and summary["data"]
    assert summary["spectrum"].startswith(spectrum)
    assert spectrum in err.splitlines()[0]
    cfg = ad.validate_config({k: v for k, v in ad.config.schema.read_toml(
        tmp_path / "c.toml").items() if k != "critical"})
    radius = ad.data_problem(cfg.problem).statistics.radius
    assert summary["eps"] == pytest.approx([0.5 * radius, 2.0 * radius], rel=1e-12)
    assert len(summary["eps_star"]) == 3
    assert all(v == "inf" or v > 0 for v in summary["eps_star_margin"][1:])


def test_problem_radius_is_the_data_scaled_radius(tmp_path):
    """`problem_radius` of a dense data surrogate is the data-scaled radius of its statistics
    (the same definition read from the eigenbasis, equal to rounding)."""
    _two_classes(tmp_path)
    cfg = ad.validate_config({"problem": {"loss": "logistic", "data": {
        "path": str(tmp_path / "rows.npz"), "task": "classification"}}})
    dp = ad.data_problem(cfg.problem)
    assert exact.problem_radius(dp.instance) == pytest.approx(dp.statistics.radius, rel=1e-10)


@pytest.mark.parametrize(("extra", "args", "field"), [
    ("[critical]\neps = [0.5, 0.2]\n", (), "critical.eps"),
    ("[critical]\neps = [0.1]\neps_over_radius = [1.0]\n", (), "critical"),
    ("", ("--eps", "0.1,abc"), "--eps"),
    ("", ("--eps", "-0.1"), "--eps: radii must be positive"),
    ("", ("--eps", "0.5,0.2"), "--eps: radii must be strictly increasing"),
    ("[critical]\neps = [0.0, 0.5]\n", (), "critical.eps: radii must be positive (eps = 0 "
     "is always solved first"),
    ("[critical]\nbogus = 1\n", (), "critical.bogus"),
    ("", ("--t-max", "-1"), "run.t_max"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, dispatch, extra, args, field):
    """A bad radius list, an unknown key, a bad option: exit 2, one ``error:`` line naming
    the field, no folder written."""
    (tmp_path / "c.toml").write_text(SYNTHETIC + extra)
    status, _, err, _ = dispatch("critical-exact", tmp_path / "c.toml", "-o", tmp_path / "o",
                                 *args)
    assert status == 2
    assert err.count("\n") == 1 and err.startswith("error:") and field in err, err
    assert not (tmp_path / "o" / "critical_exact.json").exists()


def test_polyak_and_a_noiseless_radius_are_refused(tmp_path, dispatch):
    """Polyak's minimum objective belongs to one radius (refused, lr.kind); a regression
    without noise defines no radius to scale by (refused, naming critical.eps)."""
    polyak = SYNTHETIC.replace('kind = "decay"\ngamma0 = 1.0\ntau = 1.0\nbeta = 1.0',
                               'kind = "polyak"')
    (tmp_path / "p.toml").write_text(polyak)
    status, _, err, _ = dispatch("critical-exact", tmp_path / "p.toml", "-o", tmp_path / "o")
    assert status == 2 and "lr.kind" in err, err
    (tmp_path / "n.toml").write_text(SYNTHETIC.replace("noise = 0.5", "noise = 0.0"))
    status, _, err, _ = dispatch("critical-exact", tmp_path / "n.toml", "-o", tmp_path / "o")
    assert status == 2 and "critical.eps" in err and err.count("\n") == 1, err


@pytest.mark.parametrize("n", [1, 2, 3, 11, 12, 61])
def test_the_table_spreads_its_rows_and_ends_at_t_max(n):
    """The printed table: at most ten records after ``t = 0``, increasing, the last one
    ``t_max`` (index ``n - 1``) whenever there is a record after ``t = 0``."""
    from advdyn.cli.critical import _shown_records

    shown = _shown_records(n)
    assert shown == sorted(set(shown))
    assert len(shown) == min(10, n - 1)
    if n > 1:
        assert shown[0] == 1 and shown[-1] == n - 1
