"""The contract every solver and simulator keeps, checked on one small problem each.

A solver returns an :class:`advdyn.Solution`: increasing float64 times starting at 0, the
THEORY section 11 quantities as finite float64 arrays of shape ``(T,)`` (or ``(R, T)`` for a
simulator), the same output for the same inputs (seeded streams), and a dataset that
:func:`advdyn.to_dataset` labels and that survives a NetCDF round trip unchanged.
"""

from __future__ import annotations

import numpy as np
import pytest

import advdyn as ad

REQUIRED = ("adv_risk", "clean_risk", "norm", "overlap", "lr")


def _instance():
    cfg = ad.ProblemConfig(d=200, epsilon=0.3, seed=3,
                           spectrum={"kind": "uniform", "low": 0.5, "high": 1.5},
                           task={"kind": "regression", "noise": 0.2})
    return ad.instantiate(cfg)


def _ode(inst):
    return ad.solve_ode(inst, ad.Constant(0.7), ad.time_grid(inst.d, 2.0, 9).times)


def _sgd(inst):
    return ad.simulate_sgd(inst, ad.Constant(0.7), ad.stream_key(3), t_max=2.0, n_times=9,
                           replicates=3, dtype="float64")


def _hsgd(inst):
    return ad.simulate_hsgd(inst, ad.Constant(0.7), ad.stream_key(3), t_max=2.0, n_times=9,
                            replicates=3, dtype="float64")


def _binned_ode(inst):
    return ad.solve_ode(ad.bin_instance(inst, 16), ad.Constant(0.7),
                        ad.time_grid(inst.d, 2.0, 9).times)


def _ridge_ode(inst):
    ode = _ode(inst)
    return ad.solve_ridge_ode(inst, ode.ts, ode["eff_lr"], ode["eff_ridge"], ode["noise_factor"])


SOLVERS = {"ode": (_ode, False), "binned_ode": (_binned_ode, False), "sgd": (_sgd, True),
           "hsgd": (_hsgd, True), "ridge_ode": (_ridge_ode, False)}


@pytest.fixture(scope="module")
def instance():
    return _instance()


@pytest.mark.parametrize("name", list(SOLVERS))
def test_solver_contract(name, instance, tmp_path):
    solve, replicated = SOLVERS[name]
    sol = solve(instance)
    assert isinstance(sol, ad.Solution)
    assert sol.replicated is replicated
    ts = np.asarray(sol.ts)
    assert ts.dtype == np.float64 and ts[0] == 0.0 and np.all(np.diff(ts) > 0)
    required = ("adv_risk", "clean_risk", "norm", "overlap") if name == "ridge_ode" else REQUIRED
    for key in required:
        y = np.asarray(sol[key])
        assert y.dtype == np.float64, key
        assert y.shape == ((3, ts.size) if replicated else (ts.size,)), key
        assert np.all(np.isfinite(y)), key
    # deterministic: the same inputs (and seed) give the same numbers, bit for bit
    again = solve(instance)
    for key in required:
        np.testing.assert_array_equal(np.asarray(again[key]), np.asarray(sol[key]))
    # labelled and written: the NetCDF round trip keeps every value
    ds = ad.to_dataset(sol)
    path = ad.write_netcdf(ds, tmp_path / f"{name}.nc")
    back = ad.read_netcdf(path)
    for key in required:
        np.testing.assert_array_equal(back[key].values, np.asarray(sol[key]))
    assert back.attrs["method"] == sol.method
