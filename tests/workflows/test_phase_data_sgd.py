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


# compile-bound (the batched ODE on the quadrature and the batched SGD on the rows); the
# default sibling on the same driver check: test_data_binned.py's
# test_a_binned_run_records_its_path_and_the_rows_risks (the host run, and its divergence)
@pytest.mark.slow
def test_phase_runs_sgd_on_the_rows_of_a_binned_spectrum(tmp_path):
    """On a binned data spectrum (no eigenbasis) ``data_sgd`` runs over the grid on the rows'
    own basis, its divergence judged on what it records (the iterate's distance to theta*,
    the risks measured on the rows): the 2 x 2 grid's point with gamma far above the stable
    range (gamma tr(K)/d ~ 40 > 2) is a marked divergence, NaN records, not an exception;
    a stable point's records are the host run's (float64, the same streams; 1e-9 covers
    the batched reductions' order)."""
    from advdyn.config.phase import validate_phase_config
    from advdyn.solution import RESULTS
    from advdyn.workflows.phase import phase_diagram

    rng = np.random.default_rng(3)
    d, n = 12, 300
    X = rng.standard_normal((n, d)) * np.sqrt(np.linspace(0.3, 1.7, d))
    y = X @ (rng.standard_normal(d) / np.sqrt(d)) + 0.3 * rng.standard_normal(n)
    np.savez(tmp_path / "rows.npz", X=X, y=y)
    cfg = validate_phase_config({
        "problem": {"loss": "least_squares", "epsilon": 0.3,
                    "data": {"path": str(tmp_path / "rows.npz"), "task": "regression",
                             "spectrum": "binned", "probes": 4, "lanczos_steps": 2}},
        "run": {"t_max": 1.0, "n_times": 3, "replicates": 2, "dtype": "float64",
                "methods": ["ode", "data_sgd"]},
        "phase": {"x": {"field": "problem.epsilon", "values": [0.0, 0.3]},
                  "y": {"field": "lr.gamma", "values": [0.5, 40.0]}}})
    ds = phase_diagram(cfg.run_config(), {"problem.epsilon": [0.0, 0.3],
                                          "lr.gamma": [0.5, 40.0]}).dataset
    codes = ds["data_sgd_result"].values
    assert (codes[:, 0] == RESULTS.successful).all()
    assert (codes[:, 1] == RESULTS.diverged).all()
    assert np.isnan(ds["data_sgd_adv_risk"].values[:, 1, :, -1]).all()
    assert "data_sgd_dist_to_opt" not in ds and "data_sgd_norm" in ds
    dp = ad.data_problem(cfg.run_config().problem)
    ref = ad.simulate_data_sgd(dp.rows_instance, dp.rows, dp.targets, ad.Constant(0.5),
                               ad.stream_key(0), t_max=1.0, n_times=3, replicates=2,
                               dtype="float64", measured_only=True)
    for name in ("adv_risk", "clean_risk", "norm", "overlap"):
        np.testing.assert_allclose(ds[f"data_sgd_{name}"].values[1, 0], ref.ys[name],
                                   rtol=1e-9, err_msg=name)
