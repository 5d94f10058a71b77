"""Config loading and validation: TOML, defaults, unions, paths, overrides, errors."""

from __future__ import annotations

import json
import tomllib
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from advdyn.config import schema as C
from advdyn.config.build import eigen_decomposition
from advdyn.config.schema import Config, default_config, load_config, validate_config
from advdyn.errors import ConfigError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
EXAMPLE_FILES = sorted(EXAMPLES.glob("*.toml"))


# ----------------------------------------------------------------------------- loading
def test_load_minimal_toml_fills_defaults(write_toml):
    cfg = load_config(write_toml("[problem]\nd = 10\n"))
    p = cfg.problem
    assert p.d == 10
    assert isinstance(p.spectrum, C.IdentitySpectrum)
    assert isinstance(p.task, C.RegressionTask)
    assert p.task.noise == 0.0 and p.task.teacher_norm == 1.0
    assert p.loss == "least_squares"
    assert p.epsilon == 0.0 and p.ridge == 0.0 and p.seed == 0
    assert isinstance(p.init, C.GaussianInit) and p.init.scale == 1.0
    assert p.components is None
    [comp] = p.resolved_components()
    assert comp.weight == 1.0 and comp.mean_norm == 0.0 and comp.label is None
    assert isinstance(cfg.lr, C.ConstantLR) and cfg.lr.gamma == 0.5
    assert cfg.run.methods == ["ode", "sgd"]
    assert cfg.run.replicates == 4 and cfg.run.dtype == "float32"


def test_problem_section_is_required():
    with pytest.raises(ConfigError, match="problem"):
        validate_config({})


def test_default_config_matches_embedded_toml():
    cfg = default_config()
    text = resources.files("advdyn").joinpath("defaults/default.toml").read_text()
    raw = tomllib.loads(text)
    assert cfg == validate_config(raw)
    assert cfg.problem.d == 1000
    assert cfg.problem.epsilon == 0.5
    assert cfg.problem.loss == "least_squares"
    assert isinstance(cfg.problem.spectrum, C.UniformSpectrum)
    assert (cfg.problem.spectrum.low, cfg.problem.spectrum.high) == (0.2, 1.8)
    assert cfg.problem.task == C.RegressionTask(noise=0.3)
    assert cfg.lr == C.ConstantLR(gamma=0.8)
    assert cfg.run.t_max == 6.0 and cfg.run.n_times == 61


def test_classification_default_mixture_is_symmetric():
    cfg = validate_config(
        {
            "problem": {
                "d": 5,
                "loss": "logistic",
                "task": {"kind": "classification", "mean_norm": 2},
            }
        }
    )
    comps = cfg.problem.resolved_components()
    assert [c.weight for c in comps] == [0.5, 0.5]
    assert [c.label for c in comps] == [1, -1]
    assert [c.mean_sign for c in comps] == [1, -1]
    assert all(c.mean_norm == 2 and c.mean_direction == "teacher" for c in comps)


def test_to_json_round_trip():
    cfg = default_config()
    assert validate_config(json.loads(cfg.to_json())) == cfg


def test_config_is_frozen():
    cfg = default_config()
    with pytest.raises(ValidationError):
        cfg.problem.d = 3  # type: ignore[misc]


# ----------------------------------------------------------------------------- examples
def test_examples_exist():
    names = {p.name for p in EXAMPLE_FILES}
    assert {
        "adversarial_least_squares_isotropic.toml",
        "least_squares_power_law.toml",
        "logistic_binary_mixture.toml",
        "regression_mixture.toml",
        "squared_hinge_classification.toml",
    } <= names
    readme = (EXAMPLES / "README.md").read_text()
    assert all(name in readme for name in names)


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.stem)
def test_every_example_validates(path):
    cfg = load_config(path)
    assert path.read_text().lstrip().startswith("#"), "examples start with a comment header"
    lam, _ = eigen_decomposition(cfg.problem.spectrum, cfg.problem.d)
    assert lam.shape == (cfg.problem.d,)
    for comp in cfg.problem.resolved_components():
        if comp.spectrum is not None:
            assert eigen_decomposition(comp.spectrum, cfg.problem.d)[0].min() >= 0


def test_power_law_example_is_sgd_stable():
    cfg = load_config(EXAMPLES / "least_squares_power_law.toml")
    lam, _ = eigen_decomposition(cfg.problem.spectrum, cfg.problem.d)
    assert cfg.lr.gamma * lam.sum() / cfg.problem.d < 2


def test_regression_mixture_example():
    cfg = load_config(EXAMPLES / "regression_mixture.toml")
    comps = cfg.problem.components
    assert [c.weight for c in comps] == [0.3, 0.7]
    assert comps[0].mean_norm != comps[1].mean_norm
    assert comps[0].mean_direction != comps[1].mean_direction
    assert sum(c.spectrum is not None for c in comps) == 1


# ----------------------------------------------------------------------------- unions
@pytest.mark.parametrize(
    ("spectrum", "cls"),
    [
        ({"kind": "identity"}, C.IdentitySpectrum),
        ({"kind": "two_level", "first": 2, "second": 0.5, "fraction": 0.3}, C.TwoLevelSpectrum),
        ({"kind": "uniform", "low": 0.5, "high": 1.5}, C.UniformSpectrum),
        ({"kind": "power_law", "exponent": 1.2}, C.PowerLawSpectrum),
        ({"kind": "marchenko_pastur", "aspect_ratio": 0.5}, C.MarchenkoPasturSpectrum),
    ],
)
def test_spectrum_union(spectrum, cls):
    cfg = validate_config({"problem": {"d": 8, "spectrum": spectrum}})
    assert type(cfg.problem.spectrum) is cls
    lam, basis = eigen_decomposition(cfg.problem.spectrum, 8)
    assert lam.shape == (8,) and basis is None and lam.min() >= 0


def test_task_init_and_lr_unions(tmp_path):
    np.save(tmp_path / "theta0.npy", np.zeros(4))
    cfg = validate_config(
        {
            "problem": {
                "d": 4,
                "loss": "squared_hinge",
                "task": {"kind": "classification"},
                "init": {"kind": "file", "path": "theta0.npy"},
            },
            "lr": {"kind": "decay", "gamma0": 1.0, "tau": 2.0, "beta": 0.5},
        },
        base_dir=tmp_path,
    )
    assert isinstance(cfg.problem.task, C.ClassificationTask)
    assert isinstance(cfg.problem.init, C.FileInit)
    assert isinstance(cfg.lr, C.DecayLR) and cfg.lr.tau == 2.0


@pytest.mark.parametrize(
    ("problem", "field"),
    [
        ({"d": 4, "spectrum": {"kind": "gamma"}}, "problem.spectrum"),
        ({"d": 4, "spectrum": {"kind": "uniform", "low": 0.5}}, "problem.spectrum.high"),
        ({"d": 4, "spectrum": {"kind": "uniform", "low": 2, "high": 1}}, "problem.spectrum"),
        ({"d": 4, "spectrum": {"kind": "identity", "scale": 2}}, "problem.spectrum.scale"),
        ({"d": 4, "task": {"kind": "ranking"}}, "problem.task"),
        ({"d": 4, "init": {"kind": "gaussian", "scale": -1}}, "problem.init.scale"),
    ],
)
def test_union_errors_name_the_field(problem, field):
    with pytest.raises(ConfigError) as info:
        validate_config({"problem": problem})
    assert field in str(info.value)


def test_lr_union_errors():
    with pytest.raises(ConfigError, match="lr"):
        validate_config({"problem": {"d": 4}, "lr": {"kind": "cosine", "gamma": 1}})
    with pytest.raises(ConfigError, match=r"lr\.gamma"):
        validate_config({"problem": {"d": 4}, "lr": {"kind": "constant", "gamma": 0}})


# ----------------------------------------------------------------------------- paths
def test_relative_paths_resolve_against_config_folder(tmp_path, monkeypatch):
    folder = tmp_path / "configs"
    (folder / "data").mkdir(parents=True)
    lam = np.linspace(0.5, 1.5, 6)
    np.save(folder / "data" / "eig.npy", lam)
    cov = np.diag(lam)
    np.save(folder / "data" / "cov.npy", cov)
    np.save(folder / "theta0.npy", np.ones(6))
    for kind, name in [("eigenvalues_file", "eig.npy"), ("covariance_file", "cov.npy")]:
        (folder / f"{kind}.toml").write_text(
            f'[problem]\nd = 6\nspectrum = {{ kind = "{kind}", path = "data/{name}" }}\n'
            'init = { kind = "file", path = "theta0.npy" }\n'
        )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # resolution must not depend on the working directory

    cfg = load_config(Path("..") / "configs" / "eigenvalues_file.toml")
    assert cfg.problem.spectrum.path.resolve() == (folder / "data" / "eig.npy").resolve()
    assert cfg.problem.init.path.resolve() == (folder / "theta0.npy").resolve()
    np.testing.assert_allclose(eigen_decomposition(cfg.problem.spectrum, 6)[0], lam)

    cfg = load_config(folder / "covariance_file.toml")
    assert cfg.problem.spectrum.path.resolve() == (folder / "data" / "cov.npy").resolve()
    got, basis = eigen_decomposition(cfg.problem.spectrum, 6)
    np.testing.assert_allclose(np.sort(got), lam, atol=1e-12)
    assert basis.shape == (6, 6)

    # paths are stored resolved: the config still works from another folder and after a copy
    assert cfg.problem.spectrum.path.is_absolute()
    assert cfg.with_overrides(**{"problem.seed": 3}).problem.spectrum.path.is_file()


def test_absolute_path_is_kept(tmp_path, write_toml):
    np.save(tmp_path / "eig.npy", np.ones(3))
    other = tmp_path / "sub"
    other.mkdir()
    path = other / "c.toml"
    path.write_text(
        "[problem]\nd = 3\n"
        f"spectrum = {{ kind = 'eigenvalues_file', path = '{tmp_path / 'eig.npy'}' }}\n"
    )
    assert load_config(path).problem.spectrum.path == tmp_path / "eig.npy"


def test_missing_relative_file_is_reported_with_its_resolved_path(tmp_path, write_toml):
    path = write_toml('[problem]\nd = 3\ninit = { kind = "file", path = "nope.npy" }\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    msg = str(info.value)
    assert "problem.init.path" in msg and str(tmp_path / "nope.npy") in msg


# ----------------------------------------------------------------------------- overrides
def test_with_overrides():
    cfg = default_config()
    new = cfg.with_overrides(
        **{"problem.d": 50, "problem.task.noise": 0.1, "lr.gamma": 0.2, "run.methods": ["ode"]}
    )
    assert (new.problem.d, new.problem.task.noise, new.lr.gamma) == (50, 0.1, 0.2)
    assert new.run.methods == ["ode"]
    assert new.problem.spectrum == cfg.problem.spectrum
    assert cfg.problem.d == 1000 and cfg.lr.gamma == 0.8  # the original is untouched
    assert cfg.with_overrides() == cfg


def test_with_overrides_can_switch_a_union_member():
    cfg = default_config().with_overrides(
        **{"problem.spectrum": {"kind": "power_law", "exponent": 1}}
    )
    assert isinstance(cfg.problem.spectrum, C.PowerLawSpectrum)


@pytest.mark.parametrize(
    ("key", "value", "field"),
    [
        ("problem.d", -5, "problem.d"),
        ("problem.epsilon", float("nan"), "problem.epsilon"),
        ("run.replicates", 0, "run.replicates"),
        ("run.dtype", "float16", "run.dtype"),
        ("problem.dimension", 3, "problem.dimension"),
        ("nope.x", 1, "nope"),
        ("problem.d.x", 1, "problem.d.x"),
    ],
)
def test_with_overrides_revalidates(key, value, field):
    with pytest.raises(ConfigError) as info:
        default_config().with_overrides(**{key: value})
    assert field in str(info.value)


def test_with_overrides_keeps_a_custom_loss():
    def my_loss(r, y):
        return (r - y) ** 2

    cfg = Config(problem=C.ProblemConfig(d=5, loss=my_loss))
    new = cfg.with_overrides(**{"problem.d": 7})
    assert new.problem.loss is my_loss and new.problem.d == 7
    assert json.loads(cfg.to_json())["problem"]["loss"].startswith("custom:")


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"problem": {"d": 3}, "foo": 1}, "foo"),
        ({"problem": {"d": 3, "dimension": 4}}, "problem.dimension"),
        ({"problem": {"d": 3}, "run": {"tmax": 4}}, "run.tmax"),
        ({"problem": {"d": -3}}, "problem.d"),
        ({"problem": {"d": 0}}, "problem.d"),
        ({"problem": {"d": 2.5}}, "problem.d"),
        ({"problem": {"d": 3, "epsilon": -0.1}}, "problem.epsilon"),
        ({"problem": {"d": 3, "epsilon": float("nan")}}, "problem.epsilon"),
        ({"problem": {"d": 3, "ridge": float("inf")}}, "problem.ridge"),
        ({"problem": {"d": 3, "task": {"kind": "regression", "noise": -1}}}, "problem.task.noise"),
        ({"problem": {"d": 3, "loss": "hinge"}}, "problem.loss"),
        ({"problem": {"d": 3, "loss": "logistic"}}, "loss"),
        ({"problem": {"d": 3, "loss": "squared_hinge"}}, "loss"),
        ({"problem": {"d": 3, "components": [{"weight": 0.3}, {"weight": 0.3}]}}, "components"),
        ({"problem": {"d": 3, "components": [{"weight": 1.5}]}}, "problem.components.0.weight"),
        ({"problem": {"d": 3, "components": [{"weight": 1.0, "label": 1}]}}, "components[0].label"),
        (
            {
                "problem": {
                    "d": 3,
                    "task": {"kind": "classification"},
                    "components": [{"weight": 0.5, "label": 1}, {"weight": 0.5}],
                }
            },
            "components[1].label",
        ),
        ({"problem": {"d": 3}, "run": {"methods": ["ode", "mcmc"]}}, "run.methods"),
        ({"problem": {"d": 3}, "run": {"methods": []}}, "run.methods"),
        ({"problem": {"d": 3}, "run": {"methods": ["ode", "ode"]}}, "run.methods"),
        ({"problem": {"d": 3}, "run": {"t_max": float("nan")}}, "run.t_max"),
        ({"problem": {"d": 3}, "lr": {"kind": "constant", "gamma": -1}}, "lr.gamma"),
    ],
)
def test_validation_errors_name_the_field(data, field):
    with pytest.raises(ConfigError) as info:
        validate_config(data)
    msg = str(info.value)
    assert field in msg
    assert "\n" not in msg


def test_component_spectrum_cannot_be_dense(tmp_path):
    np.save(tmp_path / "cov.npy", np.eye(3))
    data = {
        "problem": {
            "d": 3,
            "components": [
                {"weight": 1.0, "spectrum": {"kind": "covariance_file", "path": "cov.npy"}}
            ],
        }
    }
    with pytest.raises(ConfigError, match=r"problem\.components\.0\.spectrum"):
        validate_config(data, base_dir=tmp_path)


def test_nan_in_toml(write_toml):
    with pytest.raises(ConfigError, match=r"problem\.epsilon"):
        load_config(write_toml("[problem]\nd = 3\nepsilon = nan\n"))


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "absent.toml")
    assert info.value.field == "config" and "absent.toml" in str(info.value)


def test_invalid_toml(write_toml):
    with pytest.raises(ConfigError) as info:
        load_config(write_toml("[problem\nd = 3\n"))
    assert info.value.field == "config" and "not valid TOML" in str(info.value)


def test_missing_npy_file(write_toml):
    path = write_toml(
        '[problem]\nd = 3\nspectrum = { kind = "eigenvalues_file", path = "x.npy" }\n'
    )
    with pytest.raises(ConfigError, match=r"problem\.spectrum\.path: file not found"):
        load_config(path)


def test_file_content_errors_name_the_field(tmp_path, write_toml):
    np.save(tmp_path / "eig5.npy", np.ones(5))
    np.save(tmp_path / "eigneg.npy", np.array([1.0, -0.5, 1.0]))
    np.save(tmp_path / "eignan.npy", np.array([1.0, np.nan, 1.0]))
    np.save(tmp_path / "negcov.npy", np.diag([1.0, -1.0, 1.0]))
    np.save(tmp_path / "asym.npy", np.array([[1.0, 0.5, 0], [0, 1, 0], [0, 0, 1]]))
    np.save(tmp_path / "cov_shape.npy", np.eye(4))
    (tmp_path / "garbage.npy").write_bytes(b"not a numpy file")
    cases = [
        ("eigenvalues_file", "eig5.npy", "expected shape"),
        ("eigenvalues_file", "eigneg.npy", ">= 0"),
        ("eigenvalues_file", "eignan.npy", "finite"),
        ("eigenvalues_file", "garbage.npy", "cannot read"),
        ("covariance_file", "negcov.npy", "positive semidefinite"),
        ("covariance_file", "asym.npy", "symmetric"),
        ("covariance_file", "cov_shape.npy", "expected shape"),
    ]
    for kind, name, what in cases:
        cfg = load_config(
            write_toml(f'[problem]\nd = 3\nspectrum = {{ kind = "{kind}", path = "{name}" }}\n')
        )
        with pytest.raises(ConfigError) as info:
            eigen_decomposition(cfg.problem.spectrum, 3)
        assert info.value.field == "problem.spectrum.path", name
        assert what in str(info.value), name


def test_kind_may_be_omitted_where_a_default_is_obvious():
    cfg = validate_config({"problem": {"d": 10, "task": {"noise": 0.1}}, "lr": {"gamma": 0.3}})
    assert (cfg.lr.kind, cfg.problem.task.kind, cfg.problem.init.kind) == (
        "constant", "regression", "gaussian")
    with pytest.raises(ConfigError, match=r"lr: .*'bogus'"):
        validate_config({"problem": {"d": 10}, "lr": {"kind": "bogus", "gamma": 0.3}})
