"""``advdyn run`` on a data problem: the three curves, the gaps over time and the diagnostics."""

from __future__ import annotations

import json

import numpy as np
import pytest

from advdyn.config import validate_config
from advdyn.workflows.run import run

D, N = 24, 4000  # the sizes of tests/problem/test_data.py (the same compiled solvers)


@pytest.fixture
def gaussian_csv(tmp_path):
    """A regression data set of Gaussian rows as a .csv with named columns."""
    rng = np.random.default_rng(7)
    X = rng.standard_normal((N, D)) * np.sqrt(np.linspace(0.3, 1.7, D))
    y = X @ (rng.standard_normal(D) / np.sqrt(D)) + 0.3 * rng.standard_normal(N)
    header = ",".join([f"x{i}" for i in range(D)] + ["target"])
    np.savetxt(tmp_path / "rows.csv", np.column_stack([X, y]), delimiter=",", header=header,
               comments="", fmt="%.17g")
    return tmp_path / "rows.csv"


@pytest.mark.parametrize("methods", [
    ["ode", "data_sgd"],
    pytest.param(["ode", "data_sgd", "sgd"], marks=pytest.mark.slow),  # + the surrogate's SGD
])
def test_run_writes_the_curves_and_the_gaps(tmp_path, gaussian_csv, methods):
    cfg = validate_config({
        "problem": {"loss": "least_squares", "epsilon": 0.4,
                    "data": {"path": str(gaussian_csv), "task": "regression",
                             "target": "target"}},
        "run": {"t_max": 2.0, "n_times": 5, "replicates": 8, "methods": methods},
    })
    assert cfg.problem.d == D and cfg.problem.task.kind == "regression"
    result = run(cfg, tmp_path / "out")
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert set(summary["files"]) == {f"{m}.nc" for m in methods} | {"summary.json",
                                                                     "risk.png"}
    data = summary["data"]
    assert data["n"] == N and data["d"] == D
    assert data["spectrum"] == "dense"
    # Gaussian rows: kurtosis within 4 standard errors of 0
    assert data["kurtosis_max_abs"] < 4 * data["kurtosis_standard_error"]
    for method in methods[1:]:
        gap = data["gap_over_time"][method]["adv_risk"]
        assert len(gap["time"]) == len(gap["relative_gap"]) == 5
        # same theta_0: at t = 0 only the rows' own sampling error, O(n^-1/2) = 0.016
        assert gap["relative_gap"][0] == pytest.approx(0.0, abs=2 * N**-0.5)
        # within 3 d^-1/2 / sqrt(R), as tests/problem/test_data.py derives
        assert gap["max_abs_relative_gap"] < 3 * gap["fluctuation_scale"] / np.sqrt(8)
    assert "surrogate_adv_risk" in result.datasets["data_sgd"]
    assert (tmp_path / "out" / "risk.png").stat().st_size > 0


@pytest.mark.slow
def test_phase_accepts_a_data_problem(tmp_path, gaussian_csv):
    """``advdyn phase`` batches the surrogate's ODE over eps x gamma as for a synthetic problem,
    and a point equals the host solve of the same surrogate."""
    import advdyn as ad
    from advdyn.config.phase import validate_phase_config
    from advdyn.simulate.sgd import time_grid
    from advdyn.workflows.phase import phase_diagram

    cfg = validate_phase_config({
        "problem": {"loss": "least_squares", "epsilon": 0.3,
                    "data": {"path": str(gaussian_csv), "task": "regression",
                             "target": "target"}},
        "run": {"t_max": 2.0, "n_times": 5, "methods": ["ode"]},
        "phase": {"x": {"field": "problem.epsilon", "values": [0.0, 0.4]},
                  "y": {"field": "lr.gamma", "values": [0.5, 1.0]}},
    })
    ds = phase_diagram(cfg, {"problem.epsilon": [0.0, 0.4], "lr.gamma": [0.5, 1.0]}).dataset
    assert (ds["result"].values == 0).all()
    run_cfg = cfg.run_config().with_overrides(**{"problem.epsilon": 0.4})
    inst = ad.instantiate(run_cfg.problem)
    ref = ad.solve_ode(inst, ad.Constant(1.0), time_grid(D, 2.0, 5).times)
    np.testing.assert_allclose(ds["adv_risk"].values[1, 1], ref.ys["adv_risk"], rtol=1e-7)
