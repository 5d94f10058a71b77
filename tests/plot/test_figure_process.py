"""The figure process (advdyn.plot.process): drawings run in a second interpreter, its
errors reach the caller as they were raised, and anything wrong with the process itself is
``FigureProcessLost`` (the caller then draws in its own process)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from advdyn.io import make_dataset
from advdyn.plot.process import FigureProcess, FigureProcessLost, cores_available
from advdyn.plot.risk import save_quantities

# what the second process has imported, asked of the second process
_LOADED = ("sorted({m.split('.')[0] for m in __import__('sys').modules} "
           "& {'jax', 'equinox', 'matplotlib', 'xarray'})")


@pytest.fixture(scope="module")
def figures():
    with FigureProcess() as process:
        yield process


def test_a_drawing_runs_in_the_other_process(figures):
    assert figures.submit(os.getpid).result() == figures.pid != os.getpid()
    # by name, imported there only
    assert figures.submit("os:getpid").result() == figures.pid
    # the plotting stack without the numerical one (the point: JAX loads in the caller)
    assert figures.submit(eval, _LOADED).result() == ["matplotlib", "xarray"]


def test_the_drawings_error_is_raised_here(figures):
    with pytest.raises(ValueError, match="invalid literal"):
        figures.submit(int, "x").result()
    with pytest.raises(ModuleNotFoundError):
        figures.submit("advdyn.no_such_module:f").result()
    assert figures.submit(abs, -2).result() == 2  # and the process carries on


def test_an_unpicklable_drawing_is_lost_and_the_process_carries_on(figures):
    with pytest.raises(FigureProcessLost):
        figures.submit(lambda: 1)
    assert figures.submit(abs, -3).result() == 3


def test_submitting_twice_waits_for_the_first(figures):
    first = figures.submit(time.sleep, 0.2)
    second = figures.submit(abs, -4)
    assert second.result() == 4
    assert first.result() is None


def test_a_dead_process_is_lost():
    process = FigureProcess(preload=())
    try:
        os.kill(process.pid, signal.SIGKILL)
        time.sleep(0.2)
        with pytest.raises(FigureProcessLost):
            process.submit(abs, -1).result()
    finally:
        process.close()


def test_ctrl_c_is_the_owners_and_close_ends_the_process():
    process = FigureProcess(preload=())
    try:
        assert process.submit(abs, -1).result() == 1  # (its signal handler is set by now)
        os.kill(process.pid, signal.SIGINT)
        assert process.submit(abs, -5).result() == 5
    finally:
        process.close()
    assert not process._process.is_alive()
    with pytest.raises(FigureProcessLost):
        process.submit(abs, -1)


def test_close_does_not_wait_for_the_imports():
    # a command that fails at once (a bad config) must not wait for matplotlib to load
    process = FigureProcess(preload=("matplotlib.figure", "xarray", "advdyn.plot.risk"))
    start = time.perf_counter()
    process.close()
    assert not process._process.is_alive()
    # the imports alone take about 0.5 s on the reference machine; terminating is at once
    assert time.perf_counter() - start < 2.0


def test_the_recorded_arrays_draw_the_same_figure_as_the_datasets(tmp_path, figures):
    # the run sends plain arrays (what to_dataset labels) and the other process labels them
    t = np.linspace(0.0, 2.0, 9)
    ode = {"adv_risk": 1.0 + np.exp(-t), "clean_risk": 0.5 + np.exp(-2 * t)}
    sgd = {k: v[None, :] * np.array([[0.95], [1.05]]) for k, v in ode.items()}
    recorded = {"ode": (t, ode, False), "sgd": (t, sgd, True)}
    datasets = {"ode": make_dataset(t, ode, "ode"),
                "sgd": make_dataset(t, sgd, "sgd", replicates=True)}
    here = save_quantities(datasets, tmp_path / "here.png", title="x")
    there = figures.submit(save_quantities, recorded, tmp_path / "there.png", title="x",
                           atomic=False).result()
    assert there == tmp_path / "there.png"
    assert here.read_bytes() == there.read_bytes()


def test_the_console_script_draws_in_a_second_process_with_the_same_figure(tmp_path):
    # one run with the figure process (ADVDYN_FIGURE_PROCESS=1: whatever the load), one
    # without (0): the same PNG, no temporary file left, and only the second process
    # imported matplotlib
    script = ("import atexit, sys\n"
              "atexit.register(lambda: print('matplotlib' in sys.modules))\n"
              "from advdyn.__main__ import main\nmain()\n")
    args = ["run", "-q", "--method", "ode", "--d", "100", "--t-max", "0.5"]
    loaded = {}
    for flag in ("1", "0"):
        out = tmp_path / f"out{flag}"
        proc = subprocess.run([sys.executable, "-c", script, *args, "-o", str(out)],
                              capture_output=True, text=True, timeout=300,
                              env=dict(os.environ, ADVDYN_FIGURE_PROCESS=flag))
        assert proc.returncode == 0, proc.stderr
        loaded[flag] = proc.stdout.split()[-1]
        assert sorted(p.name for p in out.iterdir()) == [
            ".advdyn.lock", "ode.nc", "risk.png", "summary.json"]
    assert loaded == {"1": "False", "0": "True"}
    assert (tmp_path / "out1/risk.png").read_bytes() == (tmp_path / "out0/risk.png").read_bytes()


@pytest.mark.parametrize(("argv", "main_file", "spec", "env", "spare", "starts"), [
    (["run"], "/venv/bin/advdyn", None, "1", 0.0, True),  # the console script, forced
    (["run", "-q", "x.toml"], None, None, "1", 0.0, True),  # python -c
    (["run"], None, "advdyn.__main__", "1", 0.0, True),  # python -m advdyn
    (["run"], "/home/me/myscript.py", None, "1", 2.0, False),  # a script: spawn reruns it
    (["run"], None, "mytool", "1", 2.0, False),
    (["run", "--help"], None, None, "1", 2.0, False),
    (["sweep", "s.toml"], None, None, "1", 2.0, False),  # (only run is a short command)
    (["run"], None, None, "0", 2.0, False),  # ADVDYN_FIGURE_PROCESS=0
    (["run"], None, None, None, 1.5, True),  # unset: where a core is idle
    (["run"], None, None, "auto", 0.6, True),
    (["run"], None, None, None, 0.4, False),  # a busy machine, a one-core quota
])
def test_which_command_lines_start_a_figure_process(monkeypatch, argv, main_file, spec, env,
                                                     spare, starts):
    import types

    import advdyn.plot.process as process
    from advdyn.__main__ import _starts_figure_process

    main = types.ModuleType("__main__")
    if main_file is not None:
        main.__file__ = main_file
    main.__spec__ = None if spec is None else types.SimpleNamespace(name=spec)
    monkeypatch.setitem(sys.modules, "__main__", main)
    if env is None:
        monkeypatch.delenv("ADVDYN_FIGURE_PROCESS", raising=False)
    else:
        monkeypatch.setenv("ADVDYN_FIGURE_PROCESS", env)
    monkeypatch.setattr(process, "spare_cores", lambda: spare)
    assert _starts_figure_process(argv) is starts


@pytest.mark.parametrize(("text", "others"), [
    ("0.90 1.04 1.24 1/345 12345\n", 0.0),  # this process alone: two idle cores on two
    ("2.10 1.80 1.24 3/345 12345\n", 2.0),
])
def test_spare_cores_counts_the_tasks_running_now(tmp_path, text, others):
    # (not the load average: runs one after another would hold each other back)
    from advdyn.plot.process import spare_cores

    (tmp_path / "loadavg").write_text(text)
    assert spare_cores(tmp_path / "loadavg") == pytest.approx(cores_available() - 1 - others)


@pytest.mark.parametrize(("files", "quota"), [
    # cgroup v2: the group's cpu.max, and the smallest along its path
    ({"cgroup": "0::/a/b\n", "a/b/cpu.max": "150000 100000\n"}, 1.5),
    ({"cgroup": "0::/a/b\n", "a/cpu.max": "50000 100000\n", "a/b/cpu.max": "max 100000\n"},
     0.5),
    ({"cgroup": "0::/\n", "cpu.max": "max 100000\n"}, None),
    # cgroup v1: cpu.cfs_quota_us / cpu.cfs_period_us (-1: no quota)
    ({"cgroup": "4:memory:/x\n1:cpu,cpuacct:/a\n",
      "cpu,cpuacct/a/cpu.cfs_quota_us": "100000\n",
      "cpu,cpuacct/a/cpu.cfs_period_us": "100000\n"}, 1.0),
    ({"cgroup": "1:cpu:/\n", "cpu/cpu.cfs_quota_us": "-1\n",
      "cpu/cpu.cfs_period_us": "100000\n"}, None),
    ({"cgroup": "1:cpu:/a\n"}, None),  # no files to read
])
def test_a_cgroup_cpu_quota_caps_the_cores(tmp_path, files, quota):
    # a container limited to one CPU still shows the machine's cores in its affinity mask:
    # the quota decides (a run under a one-CPU quota was 31% slower with the process)
    from advdyn.plot.process import _cgroup_cpu_quota

    for name, text in files.items():
        path = tmp_path / ("proc_self_cgroup" if name == "cgroup" else f"fs/{name}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    got = _cgroup_cpu_quota(tmp_path / "fs", tmp_path / "proc_self_cgroup")
    assert got == (None if quota is None else pytest.approx(quota))
    assert 0 < cores_available() <= (os.cpu_count() or 1)


def test_threads_sharing_the_process_take_turns(figures):
    # two threads submitting and waiting at once each get their own answer (they waited
    # for each other's on one pipe for ever before the process took a lock)
    import threading

    answers: dict[int, list] = {0: [], 1: []}

    def work(k: int) -> None:
        for j in range(5):
            pending = figures.submit(abs, -(10 * k + j))
            time.sleep(0.01 * k)
            answers[k].append(pending.result())

    threads = [threading.Thread(target=work, args=(k,), daemon=True) for k in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert not any(t.is_alive() for t in threads)
    assert answers == {0: [0, 1, 2, 3, 4], 1: [10, 11, 12, 13, 14]}
