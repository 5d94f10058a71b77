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

    def fake_recorded_paths(step, observe, model, state0, key, rs, stride, n_rec, chunk):
        runs.append(len(rs))  # the many-run scan itself is tested in tests/sme
        return {"adv_risk": jnp.zeros((len(rs), n_rec + 1))}

    monkeypatch.setattr(equations, "recorded_paths", fake_recorded_paths)
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
