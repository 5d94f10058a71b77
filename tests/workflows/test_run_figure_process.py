"""``advdyn.run`` with a figure process: the same files as drawing in-process, the figure put
in place only beside the NetCDF files, and any failure of the process drawn around."""

from __future__ import annotations

import importlib
import json
import os

import pytest

import advdyn as ad
from advdyn.plot.process import FigureProcess

run_module = importlib.import_module("advdyn.workflows.run")


@pytest.fixture(scope="module")
def config():
    return ad.default_config().with_overrides(**{
        "problem.d": 200, "run.t_max": 1.0, "run.replicates": 2, "run.n_times": 11})


def _files(folder):
    return sorted(p.name for p in folder.iterdir())


def test_a_figure_process_writes_the_same_files(tmp_path, config):
    old = os.umask(0o027)
    try:
        here = ad.run(config, tmp_path / "here")
        with FigureProcess() as figures:
            there = ad.run(config, tmp_path / "there", figures=figures)
    finally:
        os.umask(old)
    assert _files(tmp_path / "there") == _files(tmp_path / "here") == [
        ".advdyn.lock", "ode.nc", "risk.png", "sgd.nc", "summary.json"]
    png = [(tmp_path / f / "risk.png") for f in ("here", "there")]
    assert png[0].read_bytes() == png[1].read_bytes()
    # put in place with the mode of a plainly created file, as every other result file
    assert png[1].stat().st_mode & 0o777 == 0o640
    assert there.files["plot"] == tmp_path / "there" / "risk.png"
    assert there.summary["final"] == here.summary["final"]


def test_a_lost_process_is_drawn_around(tmp_path, config):
    # closed before the run: submit fails; killed while drawing: the answer never comes
    figures = FigureProcess(preload=())
    figures.close()
    ad.run(config.with_overrides(**{"run.methods": ["ode"]}), tmp_path / "a", figures=figures)
    assert (tmp_path / "a" / "risk.png").is_file()

    figures = FigureProcess(preload=())
    sent = run_module._Figure.send

    def send_then_kill(self, solutions):
        sent(self, solutions)
        figures._process.kill()

    try:
        run_module._Figure.send = send_then_kill
        result = ad.run(config.with_overrides(**{"run.methods": ["ode"]}), tmp_path / "b",
                        figures=figures)
    finally:
        run_module._Figure.send = sent
        figures.close()
    assert _files(tmp_path / "b") == [".advdyn.lock", "ode.nc", "risk.png", "summary.json"]
    assert (tmp_path / "b" / "risk.png").read_bytes() == (tmp_path / "a" / "risk.png").read_bytes()
    assert json.loads((tmp_path / "b" / "summary.json").read_text())["files"] == [
        "ode.nc", "summary.json", "risk.png"]
    assert result.files["plot"].is_file()


def test_the_drawings_error_is_the_runs_and_leaves_no_temporary(tmp_path, config, monkeypatch):
    # an error raised by the drawing in the other process is raised by the run, the
    # temporary figure is removed, and no summary.json marks the set complete
    with FigureProcess(preload=()) as figures:
        monkeypatch.setattr(run_module, "_RISK_NAMES", 42)  # not a tuple of names: TypeError there
        with pytest.raises(TypeError):
            ad.run(config.with_overrides(**{"run.methods": ["ode"]}), tmp_path / "c",
                   figures=figures)
    assert _files(tmp_path / "c") == [".advdyn.lock", "ode.nc"]
