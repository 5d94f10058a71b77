"""Old public names (advdyn 0.1) keep working for one release, with a DeprecationWarning
that names the replacement; the canonical names are exported once and warn nothing."""

from __future__ import annotations

import importlib
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

# rename29: keep file (this module names the old names on purpose)
#: (module, old name, the object it must still give)
RENAMED = [
    ("advdyn", "Loss", "advdyn.problem.losses:AbstractLoss"),
    ("advdyn", "LearningRate", "advdyn.theory.rates:AbstractLearningRate"),
    ("advdyn.problem", "Loss", "advdyn.problem.losses:AbstractLoss"),
    ("advdyn.problem.losses", "Loss", "advdyn.problem.losses:AbstractLoss"),
    ("advdyn.theory", "LearningRate", "advdyn.theory.rates:AbstractLearningRate"),
    ("advdyn.theory.rates", "LearningRate", "advdyn.theory.rates:AbstractLearningRate"),
    ("advdyn.sme", "simulate_sgd", "advdyn.sme.equations:simulate_objective_sgd"),
    ("advdyn.sme", "recording_grid", "advdyn.sme.equations:step_grid"),
    ("advdyn.sme", "loglog_slope", "advdyn.sme.moments:loglog_fit"),
    ("advdyn.sme.equations", "simulate_sgd", "advdyn.sme.equations:simulate_objective_sgd"),
    ("advdyn.sme.equations", "recording_grid", "advdyn.sme.equations:step_grid"),
    ("advdyn.sme.equations", "recorded_paths", "advdyn.sme.equations:recorded_replicates"),
    ("advdyn.sme.moments", "loglog_slope", "advdyn.sme.moments:loglog_fit"),
]


def _resolve(target: str):
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


@pytest.mark.parametrize(("module", "old", "new"), RENAMED)
def test_old_name_warns_and_gives_the_new_object(module, old, new):
    mod = importlib.import_module(module)
    with pytest.warns(DeprecationWarning, match=rf"{module}\.{old} is deprecated.*use "):
        value = getattr(mod, old)
    assert value is _resolve(new)
    assert old not in getattr(mod, "__all__", [])


def test_game_project_warns_and_projects_on_the_l2_ball():
    from advdyn.sme import game

    with pytest.warns(DeprecationWarning, match="advdyn.adversarial.attacks.project"):
        project = game.project
    np.testing.assert_allclose(project(jnp.array([3.0, 4.0]), 1.0), [0.6, 0.8], rtol=1e-12)


def test_canonical_names_warn_nothing_and_unknown_names_raise():
    import advdyn
    import advdyn.sme

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert advdyn.AbstractLoss is _resolve("advdyn.problem.losses:AbstractLoss")
        assert advdyn.sme.step_grid is _resolve("advdyn.sme.equations:step_grid")
    with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
        _ = advdyn.sme.nonsense


def test_the_paths_keyword_warns_and_still_sets_the_replicates(monkeypatch):
    from advdyn.sme import GaussianLeastSquares, equations

    runs = []

    def fake_recorded_replicates(step, observe, model, state0, key, rs, stride, n_rec, chunk):
        runs.append(len(rs))  # the many-run scan itself is tested in tests/sme
        return {"adv_risk": jnp.zeros((len(rs), n_rec + 1))}

    monkeypatch.setattr(equations, "recorded_replicates", fake_recorded_replicates)
    ob = GaussianLeastSquares(jnp.ones(2), jnp.ones(2), 0.5, eps=0.1)
    args = (ob, 0.1, jnp.zeros(2), jax.random.key(0))
    with pytest.warns(DeprecationWarning, match=r"sgd\(paths=...\).*replicates="):
        old = equations.simulate_objective_sgd(*args, t_max=0.2, n_times=2, paths=3)
    assert runs == [3] and old["adv_risk"].shape == (3, 2)


def test_the_paths_and_replicates_keywords_together_are_refused():
    from advdyn.sme import GaussianLeastSquares, equations

    ob = GaussianLeastSquares(jnp.ones(2), jnp.ones(2), 0.5, eps=0.1)
    args = (ob, 0.1, jnp.zeros(2), jax.random.key(0))
    # replicates=100 is the default's value: refused all the same (it was passed)
    with pytest.raises(TypeError, match=r"both paths= \(deprecated\) and replicates="):
        equations.simulate_objective_sgd(*args, t_max=0.2, n_times=2, paths=3, replicates=100)


# ----------------------------------------------------------------- renamed config keys
def test_old_config_key_paths_warns_and_sets_the_replicates():
    from advdyn.config.sme import validate_sme_config

    data = {"risks": {"paths": 7}, "digits": {"paths": 2}}
    with pytest.warns(DeprecationWarning) as record:
        cfg = validate_sme_config(data)
    messages = sorted(str(w.message) for w in record)
    assert len(messages) == 2
    assert "config key digits.paths is deprecated" in messages[0]
    assert messages[1].startswith("config key risks.paths is deprecated and will be removed")
    assert messages[1].endswith("use risks.replicates")
    assert (cfg.risks.replicates, cfg.digits.replicates) == (7, 2)
    assert data == {"risks": {"paths": 7}, "digits": {"paths": 2}}  # the input is kept
    with pytest.warns(DeprecationWarning, match=r"risks\.paths .*use risks\.replicates"):
        assert cfg.with_overrides(**{"risks.paths": 9}).risks.replicates == 9


def test_old_and_new_config_key_together_are_refused():
    from advdyn.config.sme import validate_sme_config
    from advdyn.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^risks\.paths: deprecated name of "
                       r"risks\.replicates, which is also given"):
        validate_sme_config({"risks": {"paths": 7, "replicates": 8}})


def test_the_new_config_key_warns_nothing():
    from advdyn.config.sme import default_sme_config, validate_sme_config

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert validate_sme_config({"risks": {"replicates": 7}}).risks.replicates == 7
        assert default_sme_config().risks.replicates == 500  # defaults/sme.toml's new name


def test_the_paths_option_warns_and_overrides_the_replicates():
    from typer.testing import CliRunner

    from advdyn.cli._app import app

    # 10^12 replicates: refused by the memory check (naming the new key) before any part runs
    with pytest.warns(DeprecationWarning, match="option --paths is deprecated.*use --replicates"):
        res = CliRunner().invoke(app, ["sme", "--paths", "1000000000000", "--only", "risks"])
    assert res.exit_code == 2 and "risks.replicates" in res.output
    res = CliRunner().invoke(app, ["sme", "--paths", "3", "--replicates", "3"])
    assert res.exit_code == 2
    assert res.output.strip() == ("error: --paths is the deprecated name of --replicates: give "
                                  "only --replicates")


def test_the_command_line_shows_advdyn_deprecations():
    from advdyn.cli import show_deprecations
    from advdyn.config.sme import validate_sme_config

    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("ignore", DeprecationWarning)  # Python's default outside __main__
        show_deprecations()
        validate_sme_config({"risks": {"paths": 7}})
        warnings.warn("someone else's deprecation", DeprecationWarning, stacklevel=1)
    assert [str(w.message) for w in record] == [
        "config key risks.paths is deprecated and will be removed in advdyn 0.2: use "
        "risks.replicates"]


# ------------------------------------------------------------- d, not dimension
def test_instance_dimension_warns_and_gives_d_as_an_int():
    import advdyn
    from advdyn.config.schema import default_config

    inst = advdyn.instantiate(default_config().with_overrides(**{"problem.d": 12}).problem)
    binned = advdyn.bin_instance(inst, 4)
    assert binned.n_bins == 4 and float(binned.d) == 12.0  # d: the ambient dimension, not bins
    for instance in (inst, binned):
        with pytest.warns(DeprecationWarning, match=r"Instance\.dimension is deprecated.*use d"):
            value = instance.dimension
        assert value == 12 and type(value) is int


# ------------------------------------------------- warnings name the user's line
def _attributed_to_this_file(action) -> list[str]:
    """The files each DeprecationWarning of ``action()`` is attributed to."""
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        action()
    files = [w.filename for w in record if issubclass(w.category, DeprecationWarning)]
    assert files, "no DeprecationWarning"
    return files


def test_every_deprecation_is_attributed_to_the_callers_file(tmp_path):
    # Python's default filters show a DeprecationWarning only where it names __main__'s
    # code, so each must name the user's line, not a frame inside advdyn or equinox
    import advdyn
    from advdyn.config.schema import default_config
    from advdyn.config.sme import default_sme_config, load_sme_config, validate_sme_config
    from advdyn.sme import GaussianLeastSquares, equations

    inst = advdyn.instantiate(default_config().with_overrides(**{"problem.d": 6}).problem)
    binned = advdyn.bin_instance(inst, 3)
    toml = tmp_path / "old.toml"
    toml.write_text("[risks]\npaths = 3\n")
    ob = GaussianLeastSquares(jnp.ones(2), jnp.ones(2), 0.5, eps=0.1)

    def from_import():
        from advdyn import Loss  # noqa: F401  # rename29: keep

    actions = {
        "instance.dimension": lambda: inst.dimension,  # rename29: keep
        "binned.dimension": lambda: binned.dimension,  # rename29: keep
        "module attribute": lambda: advdyn.sme.simulate_sgd,  # rename29: keep
        "from import": from_import,
        "config key (mapping)": lambda: validate_sme_config({"risks": {"paths": 3}}),
        "config key (file)": lambda: load_sme_config(toml),
        "config key (override)": lambda: default_sme_config().with_overrides(
            **{"risks.paths": 3}),
        "keyword": lambda: equations.simulate_objective_sgd(
            ob, 0.1, jnp.zeros(2), jax.random.key(0), t_max=0.1, n_times=2,
            paths=2),  # rename29: keep
    }
    for what, action in actions.items():
        assert set(_attributed_to_this_file(action)) == {__file__}, what


# --------------------------------------------------------- one name inside the package
#: old names the package itself must no longer use (attributes, names, keywords)
OLD_ATTRIBUTES = {"dimension", "paths"}
OLD_NAMES = {"Loss", "LearningRate"}
OLD_KEYWORDS = {"paths"}
OLD_KEYS = ("risks.paths", "digits.paths")


def _old_name_uses(path) -> list[str]:
    import ast

    text = path.read_text()
    keep = {i + 1 for i, line in enumerate(text.splitlines()) if "rename29: keep" in line}
    tree = ast.parse(text)
    bad = []
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if line in keep:
            continue
        if isinstance(node, ast.Attribute) and node.attr in OLD_ATTRIBUTES | OLD_NAMES:
            bad.append(f"{line}: .{node.attr}")
        elif isinstance(node, ast.Name) and node.id in OLD_NAMES:
            bad.append(f"{line}: {node.id}")
        elif isinstance(node, ast.Call):
            bad += [f"{line}: {k.arg}=" for k in node.keywords if k.arg in OLD_KEYWORDS]
            if isinstance(node.func, ast.Name) and node.func.id in ("getattr", "hasattr"):
                bad += [f"{line}: {node.func.id}(..., {a.value!r})" for a in node.args
                        if isinstance(a, ast.Constant) and a.value in OLD_ATTRIBUTES]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            bad += [f"{line}: {k!r}" for k in OLD_KEYS if k in node.value]
    for node in tree.body:  # a module-level alias of a class: "Loss = AbstractLoss"
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name) and isinstance(node.value, ast.Name)
                and node.value.id[:1].isupper() and node.lineno not in keep):
            bad.append(f"{node.lineno}: alias {node.targets[0].id} = {node.value.id}")
    return bad


def test_the_package_uses_only_the_canonical_names():
    from pathlib import Path

    import advdyn

    src = Path(advdyn.__file__).parent
    bad = {str(p.relative_to(src)): u for p in sorted(src.rglob("*.py"))
           if (u := _old_name_uses(p))}
    assert not bad, f"old names used inside the package: {bad}"
    toml = "\n".join(p.read_text() for p in sorted((src / "defaults").glob("*.toml")))
    assert "\npaths =" not in toml
    # advdyn.__all__ names each concept once: no repeated name, no two names for one object
    objects = [id(getattr(advdyn, n)) for n in advdyn.__all__]
    assert len(set(advdyn.__all__)) == len(advdyn.__all__) == len(set(objects))
