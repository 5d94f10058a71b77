"""``advdyn sme`` and ``advdyn sme-config``: a small run of every part, bad inputs exit 2."""

from __future__ import annotations

import json
import tomllib

import pytest
from typer.testing import CliRunner

from advdyn.cli._app import app
from advdyn.config.sme import default_sme_config, validate_sme_config

runner = CliRunner()

SMALL = """
seed = 1
[risks]
replicates = 16
t_max = 0.5
n_times = 3
[weak_error]
etas = [0.05, 0.025, 0.0125]
[control]
t_max = 2.0
[flows]
t_max = 5.0
[minimax]
steps = [1]
n = 20
t_max = 0.2
[digits]
n_train = 40
steps = 4
batch = 4
replicates = 1
"""


def test_sme_config_prints_the_embedded_default():
    res = runner.invoke(app, ["sme-config"])
    assert res.exit_code == 0
    assert validate_sme_config(tomllib.loads(res.output)) == default_sme_config()


def test_cheap_parts_run_through_the_cli(tmp_path, write_toml):
    """CLI -> workflow -> NetCDF/PNG/JSON on the parts without Monte Carlo (fast)."""
    cfg = write_toml(SMALL)
    res = runner.invoke(app, ["sme", str(cfg), "-o", str(tmp_path / "out"),
                              "--only", "weak_error,control"])
    assert res.exit_code == 0, res.output
    assert "weak-error slope, order 1" in res.output
    for part in ("weak_error", "control"):
        assert (tmp_path / "out" / f"sme_{part}.png").is_file()
    summary = json.loads((tmp_path / "out" / "sme_summary.json").read_text())
    assert summary["control"]["max_policy_error"] < 1e-8
    assert set(summary["seconds"]) == {"weak_error", "control"}


def test_unknown_part_exits_2(tmp_path):
    res = runner.invoke(app, ["sme", "--only", "risks,bogus", "-o", str(tmp_path / "o")])
    assert res.exit_code == 2
    assert "only" in res.output


@pytest.mark.slow
def test_small_run_writes_every_part(tmp_path, write_toml):
    cfg = write_toml(SMALL)
    res = runner.invoke(app, ["sme", str(cfg), "-o", str(tmp_path / "out"), "-q"])
    assert res.exit_code == 0, res.output
    for part in ("risks", "weak_error", "control", "flows", "minimax", "digits"):
        assert (tmp_path / "out" / f"sme_{part}.nc").is_file()
        assert (tmp_path / "out" / f"sme_{part}.png").is_file()
    summary = json.loads((tmp_path / "out" / "sme_summary.json").read_text())
    assert summary["flows"]["max_adv_rate_adversarial_flow"] <= 1e-12
    assert summary["control"]["max_policy_error"] < 1e-8


@pytest.mark.slow
def test_default_run(tmp_path):
    res = runner.invoke(app, ["sme", "-o", str(tmp_path / "out"), "-q"])
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "out" / "sme_summary.json").read_text())
    assert 0.85 <= summary["weak_error"]["slope_order1_final"][0] <= 1.15
    assert 1.85 <= summary["weak_error"]["slope_order2_final"][0] <= 2.2


@pytest.mark.parametrize(("text", "field"), [
    ("[risks]\neta = -1.0\n", "risks.eta"),
    ("[problem]\nfoo = 1\n", "problem.foo"),
    ("[problem]\ntheta0 = [1.0]\n", "theta0"),
    ("[weak_error]\netas = [0.01, 0.02]\n", "weak_error.etas"),
    ("[control]\nfixed = [1.5]\n", "control.fixed"),
    ("[risks]\nscheme = \"milstein\"\n", "risks.scheme"),
])
def test_bad_inputs_exit_2_naming_the_field(write_toml, tmp_path, text, field):
    res = runner.invoke(app, ["sme", str(write_toml(text)), "-o", str(tmp_path / "o")])
    assert res.exit_code == 2, res.output
    assert field in res.output
    assert "Traceback" not in res.output


def test_missing_config_file_exits_2(tmp_path):
    res = runner.invoke(app, ["sme", str(tmp_path / "nope.toml")])
    assert res.exit_code == 2
    assert "config" in res.output
