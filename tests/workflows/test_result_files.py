"""Result files: no stale or corrupt results, one writer per folder, umask.

Each test reproduces one way results went wrong, and fails where it comes back:
a truncated or empty point file blocked the sweep for ever, temporary files of a killed
sweep survived its resume, two runs or sweeps on one folder interleaved, a run left the
files of an earlier run beside its own, and atomic writes created files with mode 0600.
"""

from __future__ import annotations

import importlib
import os
import uuid
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from typer.testing import CliRunner

from advdyn.cli._app import EXIT_USER_ERROR, app
from advdyn.errors import ConfigError
from advdyn.io import write_json, write_netcdf
from advdyn.io.files import folder_lock
from advdyn.workflows.sweep import (
    grid_points,
    point_id,
    register_point_kind,
    run_sweep,
    sweep_from_dict,
)

BASE = {
    "problem": {"d": 1000, "spectrum": {"kind": "identity"},
                "task": {"kind": "regression", "noise": 0.3}},
    "lr": {"gamma": 0.5},
    "run": {"methods": ["ode"], "bins": 8, "bins_check": False, "t_max": 1.0, "n_times": 5},
}


@pytest.fixture(scope="module")
def client():
    """One in-process Dask cluster (a thread): the point kinds below are cheap."""
    from dask.distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                           dashboard_address=":0")
    with Client(cluster) as c:
        yield c
    cluster.close()


def _counting(counter: Path):
    def count(config):
        (counter / uuid.uuid4().hex).write_text("x")
        return xr.Dataset({"value": xr.DataArray(float(config.problem.seed))})

    return count


def _sweep(tmp_path: Path, name: str, seeds=(0, 1, 2)):
    counter = tmp_path / f"count-{name}"
    counter.mkdir(exist_ok=True)
    register_point_kind(name)(_counting(counter))
    spec = sweep_from_dict({"base": BASE, "kind": name, "grid": {"problem.seed": list(seeds)}})
    return spec, counter


def test_truncated_or_empty_point_file_is_run_again_and_reported(client, tmp_path):
    spec, counter = _sweep(tmp_path, "trust_truncate")
    out = tmp_path / "out"
    run_sweep(spec, out, client=client)
    assert len(list(counter.iterdir())) == 3
    truncated = out / "points" / f"{point_id({'problem.seed': 1})}.nc"
    empty = out / "points" / f"{point_id({'problem.seed': 2})}.nc"
    truncated.write_bytes(truncated.read_bytes()[:100])
    empty.write_bytes(b"")
    notes: list[str] = []
    res = run_sweep(spec, out, client=client, notify=notes.append)  # raised HDF error before
    assert len(list(counter.iterdir())) == 5  # exactly the two damaged points ran again
    assert res.summary["run"] == 2 and res.summary["done"] == 3
    assert set(res.summary["rerun_untrusted"]) == {truncated.stem, empty.stem}
    assert sum("running it again" in n for n in notes) == 2
    np.testing.assert_array_equal(res.dataset.value.values, [0.0, 1.0, 2.0])
    # a point file from another sweep (same id, other fingerprint) is not trusted either
    other = sweep_from_dict({"base": {**BASE, "lr": {"gamma": 0.25}}, "kind": "trust_truncate",
                             "grid": {"problem.seed": [0]}})
    run_sweep(other, tmp_path / "other", client=client)
    (out / "points" / f"{point_id({'problem.seed': 0})}.nc").write_bytes(
        (tmp_path / "other" / "points" / f"{point_id({'problem.seed': 0})}.nc").read_bytes())
    res = run_sweep(spec, out, client=client)
    assert res.summary["run"] == 1


def test_no_temporary_file_survives_the_resume_of_a_killed_sweep(client, tmp_path):
    spec, _ = _sweep(tmp_path, "trust_tmp")
    out = tmp_path / "out"
    run_sweep(spec, out, client=client)
    # what a sweep killed inside an atomic write leaves: hidden temporaries (see atomic_path)
    pid = grid_points(spec.sweep.grid)[0].id
    leftovers = [out / "points" / f".{pid}.nc.k1ll3d.tmp", out / "points" / f".{pid}.json.x.tmp",
                 out / ".sweep.nc.abcd.tmp", out / ".phase.png.zz.png"]
    for f in leftovers:
        f.write_bytes(b"partial")
    keep = out / "notes.txt"
    keep.write_text("user file")
    run_sweep(spec, out, client=client)
    hidden = [p.name for p in out.rglob(".*") if p.name != ".advdyn.lock"]
    assert hidden == []
    assert keep.read_text() == "user file"


def test_second_sweep_or_run_on_one_folder_is_refused(client, tmp_path):
    spec, counter = _sweep(tmp_path, "trust_lock")
    out = tmp_path / "out"
    with folder_lock(out, "advdyn sweep"):  # another sweep holds the folder
        with pytest.raises(ConfigError, match="in use by advdyn sweep"):
            run_sweep(spec, out, client=client)
        r = CliRunner().invoke(app, ["run", "--out", str(out), "--quiet"])
        assert r.exit_code == EXIT_USER_ERROR and "in use" in r.output, r.output
    assert not list(counter.iterdir())  # nothing ran while refused
    run_sweep(spec, out, client=client)  # released: the lock dies with its holder
    assert len(list(counter.iterdir())) == 3


def test_out_naming_a_file_fails_at_once(tmp_path):
    spec, _ = _sweep(tmp_path, "trust_file")
    target = tmp_path / "a-file"
    target.write_text("not a folder")
    with pytest.raises(ConfigError, match="is a file"):
        run_sweep(spec, target)  # no cluster is started (no client given)
    r = CliRunner().invoke(app, ["run", "--out", str(target), "--quiet"])
    text = " ".join(r.output.replace("│", " ").split())  # (click's usage box, wrapped)
    assert r.exit_code == EXIT_USER_ERROR and "is a file" in text


def test_grid_over_unknown_field_fails_before_any_point_runs(tmp_path):
    with pytest.raises(ConfigError, match="no field 'foo' in problem"):
        sweep_from_dict({"base": BASE, "grid": {"problem.foo": [1, 2]}, "out": "o"},
                        base_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"no field 'bar' in problem\.spectrum"):
        sweep_from_dict({"base": BASE, "grid": {"problem.spectrum.bar": [1]}})
    (tmp_path / "s.toml").write_text(
        '[base.problem]\nd = 100\n[grid]\n"problem.foo" = [1, 2]\n')
    r = CliRunner().invoke(app, ["sweep", str(tmp_path / "s.toml"), "-o", str(tmp_path / "o")])
    assert r.exit_code == EXIT_USER_ERROR and "problem.foo" in r.output
    assert not (tmp_path / "o").exists()  # no error files, no all-NaN sweep.nc
    # fields inside a tagged union are found through any member
    sweep_from_dict({"base": BASE, "grid": {"problem.spectrum.exponent": [1.0],
                                            "lr.gamma0": [0.5], "run.bins": [4]}})


def test_run_replaces_the_whole_set_of_result_files(tmp_path, monkeypatch):
    import json

    from advdyn.config.schema import validate_config
    from advdyn.io import make_dataset
    run_module = importlib.import_module("advdyn.workflows.run")

    # the solvers are tested elsewhere: a stand-in computation keeps this test about files
    def compute(config, progress, solved=None):
        t = np.linspace(0.0, 1.0, 3)
        datasets = {m: make_dataset(t, {"adv_risk": 1.0 + t, "clean_risk": 1.0 + t}, m)
                    for m in config.run.methods}
        summary = {"d": config.problem.d, "methods": list(datasets), "final": {},
                   "config": config.model_dump(mode="json")}
        return run_module.RunResult(datasets, summary)

    monkeypatch.setattr(run_module, "_compute", compute)
    out = tmp_path / "out"
    cfg = validate_config({"problem": {"d": 1000}, "run": {"methods": ["ode", "sgd", "hsgd"]}})
    run_module.run(cfg, out)
    assert (out / "hsgd.nc").is_file()
    (out / ".ode.nc.dead.tmp").write_bytes(b"partial")  # an interrupted write
    run_module.run(cfg.with_overrides(**{"problem.d": 4000, "run.methods": ["ode"]}), out)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["files"] == ["ode.nc", "summary.json", "risk.png"]
    present = sorted(p.name for p in out.iterdir() if p.name != ".advdyn.lock")
    assert present == sorted(summary["files"])  # no d = 1000 hsgd.nc or sgd.nc beside


def test_files_are_created_with_the_umask_mode(tmp_path):
    old = os.umask(0o027)
    try:
        write_json({"a": 1}, tmp_path / "x.json")
        write_netcdf(xr.Dataset({"v": ("t", [1.0])}), tmp_path / "x.nc")
        with open(tmp_path / "plain.txt", "w"):
            pass
    finally:
        os.umask(old)
    want = (tmp_path / "plain.txt").stat().st_mode & 0o777
    assert want == 0o640
    assert (tmp_path / "x.json").stat().st_mode & 0o777 == want  # was 0o600
    assert (tmp_path / "x.nc").stat().st_mode & 0o777 == want
