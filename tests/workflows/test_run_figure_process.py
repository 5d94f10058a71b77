"""``advdyn.run`` with a figure process: the same files as drawing in-process, the figure put
in place only beside the NetCDF files, and any failure of the process drawn around.

Each test watches ``advdyn.plot.risk.save_quantities`` *in this process* (the figure process
is another interpreter, which the patch does not reach): it must not be called when the
figure process drew, and must be when the run drew around a lost process.
"""

from __future__ import annotations

import importlib
import json
import os

import pytest

import advdyn as ad
import advdyn.plot.risk as risk
from advdyn.plot.process import FigureProcess

run_module = importlib.import_module("advdyn.workflows.run")


@pytest.fixture(scope="module")
def config():
    return ad.default_config().with_overrides(**{
        "problem.d": 200, "run.t_max": 1.0, "run.replicates": 2, "run.n_times": 11})


@pytest.fixture
def drawn_here(monkeypatch):
    """The calls of save_quantities in this process (it still draws)."""
    calls: list[object] = []
    original = risk.save_quantities

    def spy(*args, **kwargs):
        calls.append(kwargs.get("path", args[1] if len(args) > 1 else None))
        return original(*args, **kwargs)

    monkeypatch.setattr(risk, "save_quantities", spy)
    return calls


def _files(folder):
    return sorted(p.name for p in folder.iterdir())


def test_a_figure_process_writes_the_same_files(tmp_path, config, drawn_here):
    old = os.umask(0o027)
    try:
        here = ad.run(config, tmp_path / "here")
        assert drawn_here == [tmp_path / "here" / "risk.png"]
        with FigureProcess() as figures:
            there = ad.run(config, tmp_path / "there", figures=figures)
    finally:
        os.umask(old)
    assert drawn_here == [tmp_path / "here" / "risk.png"]  # the second process drew
    assert _files(tmp_path / "there") == _files(tmp_path / "here") == [
        ".advdyn.lock", "ode.nc", "risk.png", "sgd.nc", "summary.json"]
    png = [(tmp_path / f / "risk.png") for f in ("here", "there")]
    assert png[0].read_bytes() == png[1].read_bytes()
    # put in place with the mode of a plainly created file, as every other result file
    assert png[1].stat().st_mode & 0o777 == 0o640
    assert there.files["plot"] == tmp_path / "there" / "risk.png"
    assert there.summary["final"] == here.summary["final"]


def test_a_lost_process_is_drawn_around(tmp_path, config, drawn_here):
    # closed before the run: the drawing cannot be sent; killed once it was sent: the
    # answer never comes. Either way the run draws here, the same figure, no leftovers
    ode_only = config.with_overrides(**{"run.methods": ["ode"]})
    ad.run(ode_only, tmp_path / "reference")
    figures = FigureProcess(preload=())
    figures.close()
    ad.run(ode_only, tmp_path / "a", figures=figures)

    figures = FigureProcess(preload=())
    sent = run_module._Figure.send

    def send_then_kill(self, solutions):
        sent(self, solutions)
        assert self.pending is not None  # (it was sent)
        figures._process.kill()

    try:
        run_module._Figure.send = send_then_kill
        result = ad.run(ode_only, tmp_path / "b", figures=figures)
    finally:
        run_module._Figure.send = sent
        figures.close()
    assert drawn_here == [tmp_path / f / "risk.png" for f in ("reference", "a", "b")]
    for folder in ("a", "b"):
        assert _files(tmp_path / folder) == [".advdyn.lock", "ode.nc", "risk.png",
                                             "summary.json"]
        assert ((tmp_path / folder / "risk.png").read_bytes()
                == (tmp_path / "reference" / "risk.png").read_bytes())
    assert json.loads((tmp_path / "b" / "summary.json").read_text())["files"] == [
        "ode.nc", "summary.json", "risk.png"]
    assert result.files["plot"].is_file()


def test_a_stalled_process_is_lost_after_the_timeout(tmp_path, config, drawn_here, monkeypatch):
    # a process that never answers (here: stopped) is ended after the timeout and the run
    # draws here; before, the run waited for ever, and so did its exit
    import signal

    monkeypatch.setattr(run_module, "_FIGURE_TIMEOUT", 1.0)
    with FigureProcess(preload=()) as figures:
        assert figures.submit(abs, -1).result() == 1
        os.kill(figures.pid, signal.SIGSTOP)
        ad.run(config.with_overrides(**{"run.methods": ["ode"]}), tmp_path / "c",
               figures=figures)
        assert not figures._process.is_alive()
    assert drawn_here == [tmp_path / "c" / "risk.png"]
    assert _files(tmp_path / "c") == [".advdyn.lock", "ode.nc", "risk.png", "summary.json"]


def test_the_drawings_error_is_the_runs_and_leaves_no_temporary(tmp_path, config, monkeypatch,
                                                                 drawn_here):
    # an error raised by the drawing in the other process is raised by the run, with the
    # other process's traceback as a note; the run does not draw again here, the temporary
    # figure is removed, and no summary.json marks the set complete
    with FigureProcess(preload=()) as figures:
        submit = figures.submit  # a drawing that fails there only (TypeError: unexpected keyword)
        monkeypatch.setattr(figures, "submit", lambda fn, *a, **k: submit(fn, *a, bogus=1, **k))
        with pytest.raises(TypeError, match="bogus") as info:
            ad.run(config.with_overrides(**{"run.methods": ["ode"]}), tmp_path / "c",
                   figures=figures)
    assert drawn_here == []
    assert "raised in advdyn's figure process" in "".join(getattr(info.value, "__notes__", []))
    assert _files(tmp_path / "c") == [".advdyn.lock", "ode.nc"]


def test_a_figure_that_cannot_be_put_in_place_leaves_no_temporary(tmp_path, config):
    # risk.png is a folder: the rename fails (exit 2 on the command line), and the drawn
    # temporary file goes with the error (it stayed behind before)
    (tmp_path / "d" / "risk.png").mkdir(parents=True)
    (tmp_path / "d" / "risk.png" / "x").touch()
    with FigureProcess(preload=()) as figures, pytest.raises(OSError):
        ad.run(config.with_overrides(**{"run.methods": ["ode"]}), tmp_path / "d",
               figures=figures)
    assert _files(tmp_path / "d") == [".advdyn.lock", "ode.nc", "risk.png"]
