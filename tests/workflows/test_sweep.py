"""Sweeps on Dask distributed (advdyn.sweep): merging, resumption, failures, CLI."""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from typer.testing import CliRunner

from advdyn.cli._app import EXIT_USER_ERROR, app
from advdyn.errors import ConfigError
from advdyn.workflows.sweep import (
    grid_points,
    load_sweep,
    merge_points,
    point_id,
    register_point_kind,
    run_sweep,
    sweep_from_dict,
)

BASE = {
    "problem": {"d": 1000, "spectrum": {"kind": "identity"},
                "task": {"kind": "regression", "noise": 0.3}},
    "lr": {"gamma": 0.5},
    "run": {"methods": ["ode"], "bins": 8, "t_max": 4.0, "n_times": 9},
}


@pytest.fixture(scope="module")
def client():
    """One 2-worker LocalCluster (processes) for every test of the module."""
    from dask.distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           dashboard_address=":0", silence_logs=logging.ERROR)
    with Client(cluster) as c:
        yield c
    cluster.close()


def counting_kind(counter: Path):
    """A cheap point kind that leaves one file per execution in ``counter`` (a closure,
    so Dask ships it to the workers by value)."""

    def count(config):
        (counter / uuid.uuid4().hex).write_text(str(config.problem.seed))
        if config.problem.seed == 13:
            raise RuntimeError("unlucky seed")
        value = 10 * config.problem.epsilon + config.problem.seed
        return xr.Dataset({"value": xr.DataArray(value),
                           "curve": xr.DataArray(value * np.arange(3.0), dims="time")})

    return count


def executions(counter: Path) -> int:
    return len(list(counter.iterdir()))


def test_run_sweep_on_two_workers_matches_closed_form_and_refuses_invalid_point(client,
                                                                               tmp_path):
    # identity spectrum, eps = 0, ODE-only with bins: the config path gives the closed-form
    # risk R(t) = (s2_inf + (s2_0 - s2_inf) exp(-(2g - g^2) t)) / 2 with
    # s2_0 = |theta_0|^2 + |theta*|^2 + sigma^2 = 1 + 1 + 0.09 (expected initial products)
    bad = sweep_from_dict({
        "base": BASE,
        "grid": {"lr.gamma": [0.5], "problem.epsilon": [0.0, -0.5]},
    })
    # a grid value that makes an invalid config: refused before anything runs or is written
    with pytest.raises(ConfigError) as exc:
        run_sweep(bad, tmp_path / "out", client=client)
    assert exc.value.field == "grid" and "problem.epsilon" in str(exc.value)
    assert not (tmp_path / "out").exists()
    spec = sweep_from_dict({"base": BASE, "grid": {"lr.gamma": [0.5], "problem.epsilon": [0.0]}})
    # one point (each worker process compiles the ODE on its first point: seconds);
    # the cheap point kinds below exercise both workers and the merging
    res = run_sweep(spec, tmp_path / "out", client=client)
    ds = res.dataset
    assert res.summary["done"] == 1 and res.summary["failed"] == 0
    assert set(ds.dims) >= {"lr.gamma", "problem.epsilon", "time"}
    t = ds.time.values
    for g in (0.5,):
        s2_inf = 2 * 0.09 / (2 - g)
        want = 0.5 * (s2_inf + (2.09 - s2_inf) * np.exp(-(2 * g - g**2) * t))
        got = ds.ode_adv_risk.sel({"lr.gamma": g, "problem.epsilon": 0.0}).values
        # the ODE runs at rtol 1e-8; 1e-6 leaves two decades for accumulation
        np.testing.assert_allclose(got, want, rtol=1e-6)
    assert (tmp_path / "out" / "sweep.nc").is_file()
    for p in grid_points(spec.sweep.grid):
        assert (tmp_path / "out" / "points" / f"{p.id}.nc").is_file()


def test_resumption_runs_only_missing_points_and_failures_do_not_stop(client, tmp_path):
    counter = tmp_path / "count"
    counter.mkdir()
    register_point_kind("count_test")(counting_kind(counter))
    out = tmp_path / "out"
    seeds = [0, 1, 13]

    def spec(eps):
        return sweep_from_dict({"base": BASE, "kind": "count_test",
                                "grid": {"problem.epsilon": eps, "problem.seed": seeds}})

    # "interrupted" after the first epsilon: only those 3 points exist
    run_sweep(spec([0.5]), out, client=client)
    assert executions(counter) == 3
    # resume with the whole grid: only the 6 missing points run
    res = run_sweep(spec([0.5, 0.25, 0.75]), out, client=client)
    assert executions(counter) == 9
    assert res.summary["run"] == 6 and res.summary["skipped"] == 3
    # the failing seed is recorded for every epsilon, the others finished
    assert res.summary["failed"] == 3 and res.summary["done"] == 6
    ds = res.dataset
    want = 10 * ds["problem.epsilon"] + ds["problem.seed"]
    ok = ds["problem.seed"] != 13
    np.testing.assert_allclose(ds.value.where(ok).values, want.where(ok).values)
    assert np.isnan(ds.value.sel({"problem.seed": 13})).all()
    assert all("unlucky seed" in e for e in ds.error.sel({"problem.seed": 13}).values)
    # a point whose files vanished (interrupted before the write) runs again, alone
    pid = point_id({"problem.epsilon": 0.25, "problem.seed": 1})
    (out / "points" / f"{pid}.nc").unlink()
    run_sweep(spec([0.5, 0.25, 0.75]), out, client=client)
    assert executions(counter) == 10
    # failed points are kept unless asked to retry
    res = run_sweep(spec([0.5, 0.25, 0.75]), out, client=client, retry_failed=True)
    assert executions(counter) == 13 and res.summary["run"] == 3


def test_changed_base_invalidates_recorded_points(client, tmp_path):
    counter = tmp_path / "count"
    counter.mkdir()
    register_point_kind("count_base")(counting_kind(counter))
    grid = {"problem.epsilon": [0.1, 0.2]}
    run_sweep(sweep_from_dict({"base": BASE, "kind": "count_base", "grid": grid}),
              tmp_path / "out", client=client)
    changed = {**BASE, "lr": {"gamma": 0.25}}
    run_sweep(sweep_from_dict({"base": changed, "kind": "count_base", "grid": grid}),
              tmp_path / "out", client=client)
    assert executions(counter) == 4  # same ids, different fingerprints: both re-run


def test_cli_sweep_with_scheduler_address(client, tmp_path):
    counter = tmp_path / "count"
    counter.mkdir()
    register_point_kind("count_cli")(counting_kind(counter))
    (tmp_path / "base.toml").write_text(
        '[problem]\nd = 100\n[lr]\ngamma = 0.5\n[run]\nmethods = ["ode"]\n')
    (tmp_path / "sweep.toml").write_text(
        'base = "base.toml"\nkind = "count_cli"\nout = "res"\n'
        '[grid]\n"problem.epsilon" = [0.0, 0.5]\n"problem.seed" = [1, 2]\n')
    address = client.scheduler.address
    r = CliRunner().invoke(app, ["sweep", str(tmp_path / "sweep.toml"),
                                 "--scheduler", address, "--quiet"])
    assert r.exit_code == 0, r.output
    assert executions(counter) == 4
    ds = xr.open_dataset(tmp_path / "res" / "sweep.nc")
    np.testing.assert_allclose(ds.value.sel({"problem.epsilon": 0.5, "problem.seed": 2}), 7.0)
    ds.close()


def test_cli_sweep_user_errors(tmp_path):
    (tmp_path / "bad.toml").write_text('base = "missing.toml"\n[grid]\n"problem.d" = [1]\n')
    r = CliRunner().invoke(app, ["sweep", str(tmp_path / "bad.toml"), "--out", str(tmp_path)])
    assert r.exit_code == EXIT_USER_ERROR and "missing.toml" in r.output
    (tmp_path / "bad2.toml").write_text('base = "x.toml"\n[grid]\n"epsilon" = [1]\n')
    r = CliRunner().invoke(app, ["sweep", str(tmp_path / "bad2.toml")])
    assert r.exit_code == EXIT_USER_ERROR and "grid" in r.output


def test_merge_pads_differing_time_grids_and_keeps_categorical_coordinates():
    grid = {"problem.d": [10, 20], "run.methods": [["ode"], ["ode", "sgd"]]}
    pts = grid_points(grid)
    results = {}
    for p in pts:
        n = 3 if p.values["problem.d"] == 10 else 4
        results[p.id] = xr.Dataset({"r": ("time", np.arange(n) + p.values["problem.d"])},
                                   coords={"time": np.arange(n) / p.values["problem.d"]})
    results[pts[-1].id] = "DivergenceError: boom"
    ds = merge_points(grid, results)
    assert list(ds["run.methods"].values) == ["ode", "ode,sgd"]
    assert ds.sizes["time"] == 4 and "time_value" in ds  # grids differ: kept per point
    row = ds.r.sel({"problem.d": 10, "run.methods": "ode"}).values
    np.testing.assert_array_equal(row[:3], [10, 11, 12])
    assert np.isnan(row[3])
    assert ds.error.sel({"problem.d": 20, "run.methods": "ode,sgd"}) == "DivergenceError: boom"


def test_point_ids_are_stable_and_sweep_file_loads(tmp_path):
    # the id depends only on the swept values (not on their order in the file)
    assert point_id({"a.b": 1, "c.d": [1, 2]}) == point_id({"c.d": [1, 2], "a.b": 1})
    assert point_id({"a.b": 1}) != point_id({"a.b": 1.5})
    example = Path(__file__).resolve().parents[2] / "examples" / "sweeps" / "epsilon_gamma.toml"
    spec = load_sweep(example)
    assert spec.sweep.kind == "run" and spec.out is not None
    assert len(grid_points(spec.sweep.grid)) >= 4


def test_a_ctrl_c_while_workers_start_is_deferred_not_lost():
    # the Dask workers start inside sigint_deferred: a Ctrl-C then must neither reach them
    # (each printed its own KeyboardInterrupt traceback) nor be lost for this process (it
    # was, with SIGINT ignored during the start). Where another thread (XLA's) takes the
    # signal, Python's handler runs at once in the main thread; else when the block ends
    import signal
    import subprocess
    import sys
    import time

    from advdyn.workflows.sweep.execute import sigint_deferred

    child = ("import os, signal, time; os.kill(os.getpid(), signal.SIGINT); "
             "time.sleep(0.1); print('alive')")
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            with sigint_deferred():
                started = subprocess.run([sys.executable, "-c", child], capture_output=True,
                                         text=True, timeout=60)
                assert started.returncode == 0 and started.stdout.strip() == "alive", started
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.2)
    finally:
        signal.signal(signal.SIGINT, previous)


def test_dask_client_closes_only_what_it_made(monkeypatch):
    """`dask_client` (the sweep's and the distributed phase diagram's one way to get a
    client): a given client is used and left open; a made one is closed with its local
    cluster when the block ends, also when the block raises."""
    from advdyn.workflows.sweep import execute

    closed = []

    class Closable:
        def __init__(self, name):
            self.name = name

        def close(self):
            closed.append(self.name)

    monkeypatch.setattr(execute, "make_client",
                        lambda scheduler, workers, n: (Closable("client"), Closable("cluster")))
    given = Closable("given")
    with execute.dask_client(given, None, None, 3) as c:
        assert c is given
    assert closed == []
    with pytest.raises(RuntimeError), execute.dask_client(None, None, None, 3) as c:
        assert c.name == "client"
        raise RuntimeError("a task failed")
    assert closed == ["client", "cluster"]
