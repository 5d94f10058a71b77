"""One validation layer for the CLI and the Python API (config fields and constructors).

Every case here was accepted (or crashed with a traceback) before the fix.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from typer.testing import CliRunner

import advdyn as ad
from advdyn.cli._app import EXIT_USER_ERROR, app
from advdyn.config.schema import validate_config
from advdyn.errors import ConfigError
from advdyn.problem.losses import CustomLoss, make_loss
from advdyn.theory.rates import Constant, Decay, LineSearch, Polyak


def _config_error(data: dict) -> str:
    with pytest.raises(ConfigError) as info:
        validate_config(data)
    return str(info.value)


def test_latin1_config_exits_2_naming_the_file(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes('# r\u00e9glages\n[problem]\nd = 100\n'.encode("latin-1"))
    r = CliRunner().invoke(app, ["run", str(path), "-o", str(tmp_path / "o"), "-q"])
    assert r.exit_code == EXIT_USER_ERROR, r.output  # was exit 1 with a 59-line traceback
    assert "latin1.toml" in r.output and "UTF-8" in r.output
    assert "Traceback" not in r.output


@pytest.mark.parametrize(
    ("make", "field", "message"),
    [
        (lambda: Constant(-1.0), "gamma", "must be > 0, got -1"),
        (lambda: Constant(math.nan), "gamma", "must be finite"),
        (lambda: Constant(0.0), "gamma", "must be > 0"),
        (lambda: Decay(0.5, tau=0.0), "tau", "must be > 0"),
        (lambda: Decay(0.5, beta=-1.0), "beta", "must be >= 0"),
        (lambda: LineSearch(-2.0), "gamma_max", "must be > 0"),
        (lambda: Polyak(0.1, math.inf), "gamma_max", "must be finite"),
        (lambda: make_loss("hinge"), "loss", "unknown loss 'hinge'"),
        (lambda: CustomLoss(fn=None), "fn", "must be a function"),
    ],
)
def test_public_constructors_reject_what_the_config_rejects(make, field, message):
    with pytest.raises(ConfigError) as info:
        make()
    assert info.value.field == field and message in info.value.message


def test_same_message_from_the_config_and_the_api():
    for lr, rule in [({"kind": "constant", "gamma": -1.0}, lambda: Constant(-1.0)),
                     ({"kind": "decay", "gamma0": 0.5, "tau": 0.0},
                      lambda: Decay(0.5, tau=0.0))]:
        with pytest.raises(ConfigError) as api:
            rule()
        from_config = _config_error({"problem": {"d": 10}, "lr": lr})
        assert f"lr.{api.value.field}: {api.value.message}" in from_config
    with pytest.raises(ConfigError) as api:
        make_loss("hinge")
    assert f"problem.loss: {api.value.message}" in _config_error(
        {"problem": {"d": 10, "loss": "hinge"}})


def test_solvers_reject_bad_times_horizons_and_counts():
    inst = ad.instantiate(validate_config({"problem": {"d": 20}}).problem)
    lr = Constant(0.5)
    with pytest.raises(ConfigError, match="strictly increasing"):
        ad.solve_ode(inst, lr, [0.0, 2.0, 1.0])
    with pytest.raises(ConfigError, match="finite"):
        ad.solve_ode(inst, lr, [0.0, math.nan])
    with pytest.raises(ConfigError, match=r"t_max: must be > 0, got -1"):
        ad.simulate_sgd(inst, lr, ad.stream_key(0), t_max=-1.0)
    with pytest.raises(ConfigError, match="shorter than one SGD step"):
        ad.simulate_hsgd(inst, lr, ad.stream_key(0), t_max=0.01)  # 1/d = 0.05
    with pytest.raises(ConfigError, match="replicates: must be >= 1"):
        ad.simulate_sgd(inst, lr, ad.stream_key(0), t_max=1.0, replicates=0)


def test_config_rejects_strings_for_numbers_and_too_short_horizons():
    assert "problem.d" in _config_error({"problem": {"d": "50"}})
    assert "lr.gamma" in _config_error({"problem": {"d": 50}, "lr": {"gamma": "0.5"}})
    msg = _config_error({"problem": {"d": 50}, "run": {"t_max": 0.001}})
    assert "run.t_max" in msg and "shorter than one SGD step" in msg  # was silently 0.02
    validate_config({"problem": {"d": 50}, "run": {"t_max": 0.02}})  # one step is fine


def test_npy_files_complex_and_text_are_reported(tmp_path):
    from advdyn.config.build import instantiate

    np.save(tmp_path / "complex.npy", np.ones(5) + 1j)
    (tmp_path / "text.npy").write_text("1.0 2.0 3.0 4.0 5.0\n")
    for name, what in (("complex.npy", "complex numbers"), ("text.npy", "not a NumPy .npy")):
        cfg = validate_config({"problem": {"d": 5, "spectrum": {
            "kind": "eigenvalues_file", "path": str(tmp_path / name)}}})
        with pytest.raises(ConfigError) as info:
            instantiate(cfg.problem)
        assert info.value.field == "problem.spectrum.path" and what in info.value.message
        assert "pickled" not in info.value.message


@pytest.mark.parametrize(
    ("validate", "table"),
    [("critical", "train"), ("posterior", "robust")],
)
def test_training_tables_share_the_step_drop_fields(validate, table):
    """``critical-eps``'s ``train`` and ``posterior``'s ``robust`` declare momentum, weight
    decay and the rate drops once (`StepDropSGD`): same defaults, same refusals."""
    from advdyn.config.command import StepDropSGD
    from advdyn.config.critical import CriticalConfig, validate_critical_config
    from advdyn.config.posterior import PosteriorConfig, validate_posterior_config

    command = {"critical": (CriticalConfig, validate_critical_config),
               "posterior": (PosteriorConfig, validate_posterior_config)}[validate]
    section = command[0].model_fields[table].annotation
    assert issubclass(section, StepDropSGD)
    defaults = section()
    assert (defaults.momentum, defaults.weight_decay, defaults.drops) == (0.9, 5e-4, (0.5, 0.75))
    for value, message in (({"drops": [0.5, 1.0]}, "drop points are fractions of the epochs"),
                           ({"momentum": 1.0}, f"{table}.momentum: Input should be less than 1"),
                           ({"weight_decay": -1e-4}, f"{table}.weight_decay")):
        with pytest.raises(ConfigError, match=message):
            command[1]({table: value})


@pytest.mark.parametrize("command", ["phase", "critical-exact"])
def test_run_commands_refuse_what_the_run_config_refuses(command, tmp_path):
    """``advdyn phase`` and ``advdyn critical-exact`` share the run config's own checks
    (`RunCommandConfig`): a binned data spectrum's refusal (``sgd`` for phase, which runs
    ``run.methods``; ``run.bins`` for critical-exact, which runs the ODE only) is a
    ConfigError naming the field, not a pydantic traceback from building the run config
    later."""
    from advdyn.config.critical_exact import validate_critical_exact_config
    from advdyn.config.phase import validate_phase_config

    X = np.random.default_rng(0).standard_normal((20, 3))
    np.savez(tmp_path / "d.npz", X=X, y=X[:, 0])
    data = {"problem": {"loss": "least_squares", "data": {
                "path": str(tmp_path / "d.npz"), "task": "regression", "spectrum": "binned"}},
            "run": {"methods": ["ode", "sgd"]}}
    validate, field = validate_critical_exact_config, "run.bins"
    if command == "phase":
        data["phase"] = {"x": {"field": "problem.epsilon", "values": [0.0, 0.1]}}
        validate, field = validate_phase_config, "run.methods"
    else:
        data["run"] = {"bins": 4}
    with pytest.raises(ConfigError) as info:
        validate(data)
    assert field in str(info.value) and "binned" in str(info.value)
