"""SGD vs the deterministic-equivalent ODE (THEORY section 5 and 12).

How these tests avoid flakiness
-------------------------------
Every random draw comes from a fixed seed (instance and SGD stream), so each run is
deterministic on a given platform; the tolerances are set from the measured fluctuation
scale, not tuned to one lucky draw. At ``d = 2000`` one replicate's adversarial risk
deviates from the ODE by about ``1.5 d^{-1/2}``, i.e. ~3.5% (measured: the replicate
standard error of the 8-replicate mean is ~1%); the 3% bound on the 8-replicate mean is
therefore about three standard errors plus the O(1/d) bias. Over instance seeds 0-3 the
largest gaps measured were 0.3-2.1%, so the bound holds with margin for any of them. The
shrinkage test averages the RMS gap over four instances so that one unlucky stream cannot
invert it; the expected ratio between d = 250 and d = 2000 is sqrt(8) ~ 2.8 and the
smallest measured over the three cases was 1.85, against the asserted 1.4.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

import advdyn as ad
from advdyn.config.schema import ProblemConfig
from advdyn.io import to_dataset
from advdyn.io.compare import relative_gap

REPLICATES = 8
SEEDS = (0, 1, 2, 3)


def case(name: str, d: int, seed: int):
    """(problem, learning rate, horizon) of the three reference cases of the issue."""
    if name == "ls-anisotropic":  # THEORY section 12, first check
        cfg = ProblemConfig(d=d, seed=seed, spectrum={"kind": "uniform", "low": 0.2, "high": 1.8},
                            task={"kind": "regression", "noise": 0.3}, epsilon=0.5)
        return cfg, 0.8, 6.0
    if name == "logistic-mixture":  # THEORY section 12, second check
        cfg = ProblemConfig(d=d, seed=seed, spectrum={"kind": "uniform", "low": 0.3, "high": 1.7},
                            task={"kind": "classification", "mean_norm": 1.5}, loss="logistic",
                            epsilon=0.4)
        return cfg, 2.0, 5.0
    if name == "ls-regression-mixture":  # two components, own spectrum for the second
        cfg = ProblemConfig(
            d=d, seed=seed, spectrum={"kind": "uniform", "low": 0.5, "high": 1.5},
            task={"kind": "regression", "noise": 0.2}, epsilon=0.3,
            components=[
                {"weight": 0.3, "mean_norm": 1.0},
                {"weight": 0.7, "mean_norm": 0.5, "mean_direction": "teacher", "mean_sign": -1,
                 "spectrum": {"kind": "uniform", "low": 0.2, "high": 1.0}},
            ],
        )
        return cfg, 0.8, 5.0
    raise KeyError(name)


CASES = ("ls-anisotropic", "logistic-mixture", "ls-regression-mixture")


@functools.cache
def gaps(name: str, d: int, seed: int) -> np.ndarray:
    """Relative gap over time between the SGD replicate mean and the ODE on adv_risk."""
    cfg, gamma, t_max = case(name, d, seed)
    inst = ad.instantiate(cfg)
    lr = ad.Constant(gamma)
    sgd = to_dataset(ad.simulate_sgd(inst, lr, ad.stream_key(seed), t_max=t_max, n_times=26,
                          replicates=REPLICATES))
    ode = to_dataset(ad.solve_ode(inst, lr, sgd.time.values))
    return relative_gap(ode.adv_risk, sgd.adv_risk.mean("replicate")).values


@pytest.mark.parametrize("name", CASES)
def test_sgd_mean_matches_ode_within_3_percent(name):
    rel = gaps(name, 2000, 0)
    assert rel.max() < 0.03, f"{name}: largest relative gap {rel.max():.4f}"


# one case in the default run (the slope over d is the same check for each); the other two
# under -m slow
@pytest.mark.parametrize("name", [CASES[0], *(pytest.param(c, marks=pytest.mark.slow)
                                              for c in CASES[1:])])
def test_gap_shrinks_with_dimension(name):
    def mean_rms(d):
        return np.mean([np.sqrt(np.mean(gaps(name, d, s) ** 2)) for s in SEEDS])

    small, large = mean_rms(250), mean_rms(2000)
    assert large < small / 1.4, f"{name}: RMS gap {small:.4f} at d=250, {large:.4f} at d=2000"


def test_isotropic_least_squares_sgd_matches_closed_form():
    """eps = 0, K = I: SGD against the hand-derived scalar solution (no ODE code involved).

    Same fluctuation argument as above: 3% on the mean of 8 replicates at d = 2000.
    """
    sigma, gamma = 0.3, 0.8
    cfg = ProblemConfig(d=2000, task={"kind": "regression", "noise": sigma}, epsilon=0.0)
    inst = ad.instantiate(cfg)
    sgd = to_dataset(ad.simulate_sgd(inst, ad.Constant(gamma), ad.stream_key(0), t_max=6.0,
                                     n_times=13, replicates=REPLICATES))
    t = sgd.time.values
    s2_0 = float(np.sum((np.asarray(inst.theta0) - np.asarray(inst.theta_star)) ** 2)) + sigma**2
    s2_inf = 2 * sigma**2 / (2 - gamma)
    want = 0.5 * (s2_inf + (s2_0 - s2_inf) * np.exp(-(2 * gamma - gamma**2) * t))
    got = sgd.clean_risk.mean("replicate").values
    assert np.max(np.abs(got - want) / want) < 0.03
