"""``advdyn posterior`` and ``advdyn posterior-config``: files, summary, user errors."""

from __future__ import annotations

import json
import tomllib

import pytest
import xarray as xr

from advdyn.config.posterior import (
    PosteriorConfig,
    default_posterior_config,
    load_posterior_config,
)
from advdyn.errors import ConfigError

TINY = """
[small]
chains = 400
burn_in = 200
transient_steps = [0, 10, 50]

[sweep]
rates = [0.01, 0.1]
batches = [1, 8]

[highdim]
d = 60
n_times = 5
t_drop = 1.0
t_max = 2.0
replicates = 4
groups = 3

[robust]
data = "gaussian_mixture"
n_train = 64
n_test = 32
d = 6
classes = 3
width = 8
steps = 2
epochs = 2
batch_size = 32
subset = 32
top_k = 2
lanczos_iterations = 4
probes = 2
"""


def _invoke(args):
    from typer.testing import CliRunner

    from advdyn.cli import app  # in-process: no second interpreter start-up

    return CliRunner().invoke(app, args)


def test_cli_small_run_writes_files(tmp_path, write_toml):
    out = tmp_path / "out"
    res = _invoke(["posterior", str(write_toml(TINY)), "--out", str(out), "--quiet",
                   "--no-figures"])
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "posterior.json").read_text())
    assert set(summary["robust"]) == {"at", "awp"}
    with xr.open_dataset(out / "posterior_robust.nc") as ds:
        assert ds["bound"].shape == (2, 2)
        assert list(ds["run"].values) == ["at", "awp"]
        assert ds["top_eigenvalues"].shape == (2, 2, 2)
        assert (abs(ds["gap"] - (ds["test_loss"] - ds["train_loss"])) < 1e-6).all()
        assert (ds["kl"] > 0).all() and (ds["bound"] >= ds["train_loss"] / 5.0).all()
        assert ds["time"].attrs["units"] == "s"  # wall-clock seconds, not a time axis
    with xr.open_dataset(out / "posterior_highdim.nc") as ds:
        assert ds["ode_variance"].shape == (5, 60)
    with xr.open_dataset(out / "posterior_small.nc") as ds:
        # the additive theory at k = 0 is within O(eta) of the chains
        assert summary["small"]["lyapunov_relative_error_at_eta"] < 0.4
        assert ds["theory_variance"].shape == (3, 4)


def test_default_config_is_embedded_and_printed():
    cfg = default_posterior_config()
    assert cfg == PosteriorConfig()
    res = _invoke(["posterior-config"])
    assert res.exit_code == 0
    assert PosteriorConfig.model_validate(tomllib.loads(res.output)) == cfg


@pytest.mark.parametrize(
    "text, field",
    [
        ("[small]\neta = -1\n", "small.eta"),
        ("[small]\ntheta_star = [1.0]\n", "small.theta_star"),
        ("[robust]\ntop_k = 30\n", "robust.top_k"),
        ("[highdim]\nbogus = 1\n", "highdim.bogus"),
        ("[small]\neta = 2.0\n", "small.eta"),  # unstable: names the rate and h_max
    ],
)
def test_bad_inputs_exit_2_naming_the_field(tmp_path, write_toml, text, field):
    res = _invoke(["posterior", str(write_toml(text)), "--out", str(tmp_path / "o"), "-q",
                   "--no-robust", "--no-figures"])
    assert res.exit_code == 2, res.output
    assert field in res.output
    assert "Traceback" not in res.output


def test_unstable_rate_message_names_curvature(tmp_path, write_toml):
    res = _invoke(["posterior", str(write_toml("[small]\neta = 2.0\n")), "--out",
                   str(tmp_path / "o"), "-q", "--no-robust", "--no-figures"])
    assert "h_max" in res.output and "eta = 2" in res.output


def test_missing_file_is_a_user_error(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_posterior_config(tmp_path / "nope.toml")
    res = _invoke(["posterior", str(tmp_path / "nope.toml"), "-q"])
    assert res.exit_code == 2
