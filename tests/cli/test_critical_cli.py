"""``advdyn critical-eps``: files, summary, user errors; config validation."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
import tomllib

import pytest

from advdyn.config.critical import CriticalConfig, default_critical_config, load_critical_config
from advdyn.errors import ConfigError

TINY = """
[data]
kind = "gaussian_mixture"
n_train = 256
n_test = 256
d = 8
classes = 2
separation = 2.5

[model]
width = 16

[attack]
norm = "l2"
train_steps = 2
eval_steps = 3

[train]
epochs = 4
batch_size = 64
lr = 0.05

[scratch]
eps = [0.2, 0.5, 1.0]

[fast]
eps = [0.1, 0.2]
epochs = 1

[fgm]
eps = [0.5, 2.0]
epochs = 2

[strong]
steps = 4

[verdict]
repeats = 3
"""


def test_cli_writes_table_summary_and_figure(tmp_path, write_toml):
    from typer.testing import CliRunner

    from advdyn.cli import app  # in-process: no second interpreter start-up

    cfg = write_toml(TINY)
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["critical-eps", str(cfg), "--out", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    for name in ("critical_eps.csv", "critical_eps.nc", "critical_eps.json",
                 "critical_eps.png"):
        assert (out / name).stat().st_size > 0
    summary = json.loads((out / "critical_eps.json").read_text())
    for key in ("eps_star_scratch", "eps_star_fast", "clean_test_loss", "compute", "fgm"):
        assert key in summary
    c = summary["compute"]
    assert c["fast_grad_evals"] < c["scratch_grad_evals"]
    rows = list(csv.DictReader((out / "critical_eps.csv").open()))
    methods = [r["method"] for r in rows]
    # 2 fine-tuning radii + the clean point + 2 refinement radii (default refine = [0.5, 1])
    assert methods.count("scratch") == 4 and methods.count("finetune") == 5
    ft = [r for r in rows if r["method"] == "finetune"]
    refined = sorted(float(r["eps"]) for r in ft if r["stage"] == "1")
    assert len(refined) == 2 and refined[1] == pytest.approx(2 * refined[0])
    assert methods.count("fgm") == 2
    scratch = [r for r in rows if r["method"] == "scratch"]
    assert float(scratch[0]["eps"]) == 0.0
    # the summary's eps* is the interpolated crossing of the table's columns
    from advdyn.critical.estimators import crossing

    eps = [float(r["eps"]) for r in scratch]
    loss = [float(r["adv_train_loss"]) for r in scratch]
    expected = crossing(eps, loss, float(scratch[0]["clean_test_loss"]))
    got = summary["eps_star_scratch"]
    # beyond the grid: no silent "inf" but null and a warning naming the largest radius
    assert (math.isinf(expected) and got is None and any(
        "eps* > 1" in w for w in summary["warnings"])) or got == pytest.approx(expected)
    # compile time is reported apart from compute in every timing
    for key in ("scratch_timing", "clean_timing", "fast_timing"):
        t = c[key]
        assert t["compute_s"] == pytest.approx(t["wall_s"] - t["compile_s"])
        assert 0 <= t["compile_s"] <= t["wall_s"]
    # repeats over splits/seeds and the strong evaluation side by side
    assert [r["seeds"]["data"] for r in summary["repeats"]] == [0, 1, 2]
    assert summary["strong_evaluation"]["attacks"] == ["pgd-3", "apgd-ce"]  # 2 classes: no DLR


def test_cli_verdict_recipes_and_fgm_fine_tuning(tmp_path, write_toml):
    from typer.testing import CliRunner

    from advdyn.cli import app

    cfg = write_toml(TINY)
    out = tmp_path / "v"
    res = CliRunner().invoke(app, ["critical-eps", str(cfg), "--out", str(out), "--no-fgm",
                                   "--eps", "0.3", "--loss", "trades", "--optimizer", "adam",
                                   "--fast-attack", "fgm", "--quiet"])
    assert res.exit_code == 0, res.output
    s = json.loads((out / "critical_eps.json").read_text())
    assert s["recipe"] == {"loss": "trades", "optimizer": "adam", "fine_tune_attack": "fgm"}
    v = s["verdict"]
    assert v["eps"] == 0.3 and v["verdict"] in ("below", "near", "beyond")
    assert "prediction interval" in v["method"] and len(v["values"]) == 3
    assert "eps = 0.3 is" in res.stdout
    bad = CliRunner().invoke(app, ["critical-eps", str(cfg), "--eps", "eight", "--quiet"])
    assert bad.exit_code == 2 and "verdict.eps" in bad.stderr


def test_cli_user_errors_exit_2_naming_the_field(tmp_path, write_toml):
    from typer.testing import CliRunner

    from advdyn.cli._app import app

    bad = write_toml(TINY.replace("eps = [0.2, 0.5, 1.0]", "eps = [0.5, 0.2]"))
    res = CliRunner().invoke(app, ["critical-eps", str(bad), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2
    assert "scratch.eps" in res.stderr
    res = CliRunner().invoke(app, ["critical-eps", str(tmp_path / "missing.toml")])
    assert res.exit_code == 2 and "file not found" in res.stderr
    big = write_toml(TINY.replace("kind = \"gaussian_mixture\"", "kind = \"digits\"")
                     .replace("n_train = 256", "n_train = 5000"), "big.toml")
    res = CliRunner().invoke(app, ["critical-eps", str(big), "--quiet"])
    assert res.exit_code == 2 and "n_train" in res.stderr


def test_console_script_exit_code():
    # the console-script wrapper turns typer's exit into the process status
    res = subprocess.run([sys.executable, "-m", "advdyn", "critical-eps", "missing.toml"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "Traceback" not in res.stderr


def test_config_validation_and_default():
    cfg = default_critical_config()
    assert cfg.data.kind == "digits" and cfg.model.kind == "mlp"
    assert cfg == CriticalConfig()  # the embedded TOML spells out the model defaults
    with pytest.raises(ConfigError, match=r"model\.width"):
        cfg.with_overrides(**{"model.width": 0})
    with pytest.raises(ConfigError, match=r"fast\.bogus"):
        cfg.with_overrides(**{"fast.bogus": 1})
    with pytest.raises(ConfigError, match=r"train\.drops"):
        cfg.with_overrides(**{"train.drops": [1.5]})


def test_default_config_command_round_trips(tmp_path):
    from typer.testing import CliRunner

    from advdyn.cli._app import app

    res = CliRunner().invoke(app, ["critical-eps-config"])
    assert res.exit_code == 0
    path = tmp_path / "c.toml"
    path.write_text(res.output)
    assert tomllib.loads(res.output)["model"]["kind"] == "mlp"
    assert load_critical_config(path) == default_critical_config()


def test_digits_mlp_estimators_agree_and_fast_is_cheap():
    """The issue's acceptance check on the embedded default without the FGM study (~10 s)."""
    from advdyn.workflows.critical import run_critical

    res = run_critical(default_critical_config().with_overrides(
        **{"fgm.enabled": False, "strong.enabled": False, "verdict.repeats": 1}),
                       None, progress=False)
    s = res.summary
    assert abs(s["eps_star_fast"] - s["eps_star_scratch"]) / s["eps_star_scratch"] < 0.25
    assert s["compute"]["fast_plus_clean_over_scratch_grad_evals"] <= 1 / 3
