"""``advdyn phase`` with ``data_sgd``: SGD on a data set's rows batched over the grid (issue 28)."""

from __future__ import annotations

import numpy as np
import pytest

import advdyn as ad


@pytest.mark.slow
def test_phase_batches_sgd_on_the_rows(tmp_path):
    """Every point runs the replicates of SGD on the rows from the seed's streams: a point's
    records equal the host run's at that point (same trajectories; float64, so only the
    batched reductions' order differs, 1e-9), measured on the rows."""
    from advdyn.config.phase import validate_phase_config
    from advdyn.simulate.sgd import time_grid
    from advdyn.workflows.phase import phase_diagram

    rng = np.random.default_rng(3)
    d, n = 12, 600
    X = rng.standard_normal((n, d)) * np.sqrt(np.linspace(0.3, 1.7, d))
    y = X @ (rng.standard_normal(d) / np.sqrt(d)) + 0.3 * rng.standard_normal(n)
    np.savez(tmp_path / "rows.npz", X=X, y=y)
    run = {"t_max": 1.0, "n_times": 3, "replicates": 2, "dtype": "float64",
           "methods": ["ode", "data_sgd"]}
    cfg = validate_phase_config({
        "problem": {"loss": "least_squares", "epsilon": 0.3,
                    "data": {"path": str(tmp_path / "rows.npz"), "task": "regression"}},
        "run": run, "phase": {"x": {"field": "problem.epsilon", "values": [0.0, 0.3]}}})
    ds = phase_diagram(cfg, {"problem.epsilon": [0.0, 0.3]}).dataset
    assert (ds["data_sgd_result"].values == 0).all()
    dp = ad.data_problem(cfg.run_config().problem)
    ref = ad.simulate_data_sgd(dp.instance, dp.rows, dp.targets, ad.Constant(0.5),
                               ad.stream_key(0), t_max=1.0, n_times=3, replicates=2,
                               dtype="float64")
    assert ref.ts == pytest.approx(time_grid(d, 1.0, 3).times)
    for name in ("adv_risk", "clean_risk", "surrogate_adv_risk", "norm"):
        np.testing.assert_allclose(ds[f"data_sgd_{name}"].values[1], ref.ys[name], rtol=1e-9,
                                   err_msg=name)
