"""The explicit ODE solver resumes each recording interval with its last proposed step."""

from __future__ import annotations

import numpy as np
import pytest

import advdyn as ad
from advdyn.config.schema import ProblemConfig
from advdyn.theory.stationary import adversarial_optimum

LR = ad.Constant(np.asarray(0.8, dtype=np.float64))


@pytest.fixture(scope="module")
def problem():
    cfg = ProblemConfig(d=200, spectrum={"kind": "uniform", "low": 0.2, "high": 1.8},
                        task={"kind": "regression", "noise": 0.3}, epsilon=0.5)
    inst = ad.instantiate(cfg)
    return inst, adversarial_optimum(inst)


def test_many_records_cost_at_most_one_extra_step_per_interval(problem):
    # Each interval needs at least one step, so 101 records cost at most the 2-record
    # solve's steps plus one per extra interval when a step is resumed (measured 46 and 107
    # steps). When every interval selected a fresh first step, 101 records took 204 steps:
    # about two per interval (deterministic counts, so no noise margin is needed).
    inst, opt = problem
    few = ad.solve_ode(inst, LR, np.linspace(0.0, 10.0, 2), rtol=1e-6, optimum=opt)
    many = ad.solve_ode(inst, LR, np.linspace(0.0, 10.0, 101), rtol=1e-6, optimum=opt)
    assert many.stats["steps"] <= few.stats["steps"] + 100
    # the same end state: both solves are within rtol of the exact trajectory
    assert many["adv_risk"][-1] == pytest.approx(few["adv_risk"][-1], rel=3e-6)


@pytest.mark.parametrize("solver", ["tsit5", pytest.param("kvaerno5", marks=pytest.mark.slow)])
def test_resumed_steps_keep_the_tolerance(problem, solver):
    # against a solve at rtol 1e-11: every record within 3 rtol (measured 0.02 rtol for
    # Tsit5 at rtol 1e-6); a resumed step that were too large would be rejected, not accepted
    # (the implicit solver selects each interval's first step afresh: resumed, its errors
    # grew 2-10 times on power-law bins)
    inst, opt = problem
    times = np.linspace(0.0, 10.0, 101)
    ref = ad.solve_ode(inst, LR, times, rtol=1e-11, optimum=opt, solver="tsit5")
    sol = ad.solve_ode(inst, LR, times, rtol=1e-6, optimum=opt, solver=solver)
    assert sol.stats["solver"] == solver
    assert np.max(np.abs(sol["adv_risk"] / ref["adv_risk"] - 1)) < 3e-6
