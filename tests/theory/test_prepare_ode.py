"""prepare_ode: the ODE compiled from the optimum's shape is the program solve_ode runs.

The command line compiles the ODE in a second thread while the optimum is computed
(:mod:`advdyn.workflows.run`), from :func:`optimum_shape` in place of the optimum. Should
that stand-in differ from the real optimum in any leaf's shape, dtype or weak type, or
should ``prepare_ode`` build other arguments than ``solve_ode``, the prepared program
would be keyed differently and compiled for nothing: the store would gain a second ODE
entry on the solve. These tests count the entries.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

import advdyn as ad
from advdyn.config import build as B
from advdyn.config.schema import ProblemConfig
from advdyn.problem.losses import LeastSquares
from advdyn.theory.ode import prepare_ode
from advdyn.theory.stationary import adversarial_optimum, optimum_shape
from advdyn.workflows import bins as W


def _default(d=64):
    return ad.instantiate(ad.default_config().with_overrides(**{"problem.d": d}).problem)


def _binned():  # a stiff power law on relaxed Gauss bins: the implicit solver
    times = np.linspace(0.0, 10.0, 11)
    above = W.relaxed_eigenvalue(ad.Constant(0.8), times, LeastSquares())
    problem = ProblemConfig(d=10**4, spectrum={"kind": "power_law", "exponent": 1.0},
                            task={"kind": "regression", "noise": 0.3}, epsilon=0.5)
    return B.binned_from_config(problem, 8, gauss=True, relaxed_above=above), times, above


@pytest.mark.parametrize("case", ["per_direction", "binned_implicit"])
def test_prepared_ode_is_the_solved_one(program_store, case):
    store = program_store
    if case == "per_direction":
        inst, times, above = _default(), np.linspace(0.0, 2.0, 5), None
    else:
        inst, times, above = _binned()
    lr = ad.Constant(0.8)
    kwargs = {"rtol": 1e-7, "relaxed_above": above}
    assert prepare_ode(inst, lr, times, optimum=optimum_shape(inst), **kwargs)
    prepared = set(store.data)
    assert len(prepared) == 1  # the ODE alone (the optimum's shape is traced, not compiled)
    opt = adversarial_optimum(inst)
    after_optimum = set(store.data)
    sol = ad.solve_ode(inst, lr, times, optimum=opt, **kwargs)
    assert set(store.data) == after_optimum  # the solve ran the prepared program
    assert sol.stats["solver"] == ("tsit5" if case == "per_direction" else "kvaerno5")
    assert np.all(np.isfinite(sol.ys["adv_risk"]))


def test_optimum_shape_matches_the_optimum():
    inst = _default()
    shape = optimum_shape(inst)
    opt = adversarial_optimum(inst)
    leaves = jax.tree.leaves(opt)
    stand_ins = jax.tree.leaves(shape)
    assert jax.tree.structure(opt) == jax.tree.structure(shape)
    assert [(a.shape, a.dtype) for a in leaves] == [(s.shape, s.dtype) for s in stand_ins]
