"""The contract every ``advdyn`` command keeps (issue: every command checks before it
computes, holds its folder, and stops cleanly).

* a bad input exits 2 with one line naming the field, no traceback, nothing written;
* an output path that is a file is refused before any computation;
* a folder held by another command is refused (the lock ``run`` and ``sweep`` take);
* Ctrl-C ends ``advdyn sme`` with 130 and one line, leaving the previous results as they were.

The first three go through :func:`advdyn.cli.dispatch` in this process (the console's own
path: one-line usage errors, exit codes) with a time limit that only a check made before
the computation can meet; the last runs the console script in a child process.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from advdyn import cli
from advdyn.io.files import folder_lock

#: every command that writes a result folder, with the arguments it needs besides --out
#: (without -q: a command prints what it is about to compute only once its inputs and
#: folder passed the checks, so that a refusal is the one line)
WRITERS = {
    "run": ["run"],
    "sweep": ["sweep", "sweep.toml"],
    "phase": ["phase"],
    "limit": ["limit"],
    "monotone": ["monotone"],
    "figure": ["figure", "agreement"],
    "critical-eps": ["critical-eps"],
    "critical-linear": ["critical-linear"],
    "critical-exact": ["critical-exact"],
    "posterior": ["posterior"],
    "sme": ["sme"],
}

FILES = {
    "sweep.toml": 'base = "base.toml"\nkind = "run"\nout = "sweep-out"\n'
                  '[overrides]\n"run.methods" = ["ode"]\n[grid]\n"problem.epsilon" = [0.1, 0.2]\n',
    "sweep_x.toml": 'base = "base.toml"\nkind = "run"\nout = "sweep-out"\n'
                    '[grid]\n"problem.epsilon" = [0.1, "x"]\n',
    "sweep_to_file.toml": 'base = "base.toml"\nkind = "run"\nout = "a_file"\n'
                          '[grid]\n"problem.epsilon" = [0.1]\n',
    "base.toml": "[problem]\nd = 100\n",
    "run_tmax.toml": "[problem]\nd = 100\n[run]\nt_max = 1e300\n",
    "run_eps.toml": "[problem]\nd = 100\nepsilon = 1e308\n",
    "posterior_d.toml": "[highdim]\nd = 100000000000\n",
    "posterior_tmax.toml": "[highdim]\nt_max = 1e300\n",
    "sme_control.toml": "[control]\nt_max = 1e300\n",
    "a_file": "",
    # a data problem (rows written by the fixture) whose noise, the data's, is swept
    "phase_data_noise.toml": '[problem.data]\npath = "rows.npz"\ntask = "regression"\n'
                             '[phase]\nx = { field = "problem.task.noise", values = [0, 1] }\n',
}


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A folder holding the inputs above, made the current folder; the commands' modules
    imported (the time limits below are for the commands, not for first imports)."""
    import advdyn.critical.linear
    import advdyn.plot.critical
    import advdyn.plot.posterior
    import advdyn.plot.risk
    import advdyn.plot.sme
    import advdyn.workflows.critical
    import advdyn.workflows.figures
    import advdyn.workflows.posterior
    import advdyn.workflows.sme
    import advdyn.workflows.sweep  # noqa: F401

    for name, text in FILES.items():
        (tmp_path / name).write_text(text)
    rows = np.random.default_rng(0).standard_normal((40, 5))
    np.savez(tmp_path / "rows.npz", X=rows, y=rows @ np.ones(5))
    (tmp_path / "a_folder").mkdir()
    os.mkfifo(tmp_path / "a_fifo")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error:") and "Traceback" not in err, err
    return lines[0]


def listing(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


# each: the command line, and what the error line must name. Each is refused before any
# computation (the commands' compute takes tens of seconds; the limit below is 3 s), and
# without -q: the status line a command prints comes only after its checks
BAD = [
    (["run", "--t-max", "1e300"], "run.t_max"),
    (["run", "run_tmax.toml"], "run.t_max"),
    (["run", "run_eps.toml"], "problem.epsilon"),
    (["run", "-o", ""], "--out"),
    (["run", "a_folder"], "is a folder"),
    (["run", "/dev/zero"], "not a regular file"),
    (["run", "a_fifo"], "not a regular file"),
    (["run", "--d", "0"], "problem.d"),
    (["run", "--d", "100000000000", "--method", "sgd"], "problem.d"),  # memory
    (["sweep", "sweep_x.toml"], "grid"),
    (["phase", "phase_data_noise.toml"], "problem.task.noise"),
    (["sweep", "sweep.toml", "--scheduler", "notaurl"], "scheduler"),
    (["limit", "--gamma", "-1"], "--gamma"),
    (["monotone", "--lr", "abc"], "--lr"),
    (["monotone", "--n-times", "2"], "--n-times"),
    (["figure", "nope"], "NAME"),
    (["critical-eps", "--repeats", "0"], "repeats"),
    (["critical-linear", "--seed", "-1"], "--seed"),
    (["critical-exact", "--eps", "0,1"], "--eps"),
    (["critical-exact", "run_tmax.toml"], "run.t_max"),
    (["posterior", "posterior_d.toml"], "highdim.d"),
    (["posterior", "posterior_tmax.toml"], "highdim"),
    (["sme", "--replicates", "1000000000000"], "risks.replicates"),
    (["sme", "sme_control.toml"], "control"),
    (["sme", "--only", "nope"], "only"),
]


def test_bad_inputs_exit_2_with_one_line_before_computing(workdir, dispatch):
    before = listing(workdir)
    failures = []
    for args, field in BAD:
        status, out, err, seconds = dispatch(*args)
        try:
            assert status == 2, (status, out, err)
            assert field in one_error_line(err)
            assert seconds < 3.0, seconds  # refused before the computation
            assert listing(workdir) == before  # nothing written, no folder left behind
        except AssertionError as exc:
            failures.append(f"{' '.join(args)}: {exc}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("name", ["default-config", "posterior-config", "critical-eps-config",
                                  "sme-config"])
def test_printing_a_config_into_a_full_disk_is_one_line(name, monkeypatch, capsys):
    with open("/dev/full", "w") as full:  # every write fails with ENOSPC
        monkeypatch.setattr(sys, "stdout", full)
        monkeypatch.setattr(sys, "argv", ["advdyn", name])
        monkeypatch.setattr(cli, "handle_interrupts", lambda: None, raising=False)
        with pytest.raises(SystemExit) as exc:
            cli.dispatch()
    assert exc.value.code == 2
    assert "No space left" in one_error_line(capsys.readouterr().err)


def test_an_output_path_that_is_a_file_fails_before_computing(workdir, dispatch):
    """Per writing command (and a sweep file whose ``out`` is a file): exit 2 within 3 s."""
    cases = [[*args, "-o", "a_file"] for args in WRITERS.values()]
    cases.append(["sweep", "sweep_to_file.toml", "-q"])
    for args in cases:
        status, _, err, seconds = dispatch(*args)
        assert status == 2, (args, err)
        assert "it is a file" in one_error_line(err), args
        assert seconds < 3.0, (args, seconds)
    assert (workdir / "a_file").read_text() == ""


def test_a_sweeps_file_errors_go_through_the_one_error_path(workdir, monkeypatch, dispatch):
    """``advdyn sweep`` words an OSError as every command does (`command_errors`): by the
    file it names, the result folder's or another."""
    import advdyn.workflows.sweep as sweep

    # (the sweep file's out is resolved against its folder: an absolute path)
    out = f"cannot write results to {workdir / 'sweep-out'}"
    for name, line in ((workdir / "sweep-out" / "points.nc", f"error: {out}: Permission denied"),
                       (Path("base.toml"), "error: base.toml: Permission denied")):
        def refuse(*args, name=name, **kwargs):
            raise PermissionError(13, "Permission denied", str(name))

        monkeypatch.setattr(sweep, "run_sweep", refuse)
        status, _, err, _ = dispatch("sweep", "sweep.toml", "-q")
        assert status == 2 and one_error_line(err) == line


def test_a_folder_in_use_is_refused_by_every_writing_command(workdir, dispatch):
    """The second command on a folder exits 2 naming the first, before computing (the
    holder here is this process; ``test_sme_interrupts_...`` pairs two real ``sme``)."""
    busy = workdir / "busy"
    with folder_lock(busy, "advdyn test-holder"):
        for name, args in WRITERS.items():
            status, _, err, seconds = dispatch(*args, "-o", busy)
            assert status == 2, (name, err)
            assert "in use by advdyn test-holder" in one_error_line(err), name
            assert seconds < 3.0, (name, seconds)
        assert listing(busy) == {".advdyn.lock"}


def _start_sme(out: Path, cwd: Path) -> subprocess.Popen:
    # as from a terminal: Python's own Ctrl-C handler, which a process started with SIGINT
    # ignored (a pytest-xdist worker's children) would not install
    console = [sys.executable, "-c", "import signal; "
               "signal.signal(signal.SIGINT, signal.default_int_handler); "
               "from advdyn.__main__ import main; main()"]
    return subprocess.Popen(
        [*console, "sme", "-o", str(out), "-q"], cwd=cwd, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, start_new_session=True,
    )


def _wait_for_lock(proc: subprocess.Popen, out: Path, timeout: float = 120.0) -> None:
    lock = out / ".advdyn.lock"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if lock.is_file() and f"pid {proc.pid}" in lock.read_text():
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError("advdyn sme never took its folder")


def _interrupt_sme(tmp_path: Path, delays: list[float], second=None) -> None:
    """Start ``advdyn sme`` into a folder holding a previous result, Ctrl-C it ``delay``
    seconds after it holds the folder: exit 130, one line, the previous result untouched."""
    out = tmp_path / "sme-out"
    out.mkdir()
    previous = out / "sme_summary.json"
    previous.write_text('{"previous": true}\n')
    for delay in delays:
        proc = _start_sme(out, tmp_path)
        try:
            _wait_for_lock(proc, out)
            if second is not None:
                second(out)
                second = None
            time.sleep(delay)
            os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole group
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
        text = err.decode(errors="replace")
        assert proc.returncode == 130, (delay, proc.returncode, text)
        assert [line for line in text.splitlines() if line.strip()] == ["interrupted"], text
        assert previous.read_text() == '{"previous": true}\n'
        assert listing(out) <= {".advdyn.lock", "sme_summary.json"}, listing(out)


def test_sme_interrupts_exit_130_and_a_second_sme_is_refused(tmp_path, dispatch):
    """Two interrupts at random moments of the first parts (the slow variant below runs
    ten over the whole run); while the first holds the folder a second ``sme`` exits 2."""

    def second(out):
        status, _, err, _ = dispatch("sme", "-o", out, "-q")
        assert status == 2 and "in use by advdyn sme" in one_error_line(err)

    rng = random.Random(26)
    _interrupt_sme(tmp_path, [rng.uniform(0.0, 1.0), rng.uniform(1.0, 4.0)], second)


@pytest.mark.slow
def test_sme_interrupted_ten_times_at_random_moments_exits_130(tmp_path):
    """Before the fix, 1 of 6 interrupts 24-50 s into the run crashed (SIGSEGV), and 3 of 4
    with a caught KeyboardInterrupt (SIGSEGV, SIGABRT): the run takes about 60 s here."""
    rng = random.Random(2026)
    _interrupt_sme(tmp_path, [rng.uniform(0.0, 40.0) for _ in range(10)])


def test_divergence_blame_says_what_happened():
    """A divergence at t = 0 (values overflow) or an ODE failure with a stable constant rate
    (the solver's step budget) is not blamed on the learning rate; a real one still is."""
    from advdyn.config.schema import default_config
    from advdyn.errors import DivergenceError
    from advdyn.workflows.run import _explain

    cfg = default_config()  # least squares, constant gamma = 0.8, gamma tr(K)/d < 2

    def explained(method, t, config=cfg):
        return str(_explain(DivergenceError(method, t, 0.8, "x", "least_squares"), config))

    assert "overflows float64" in explained("ode", 0.0)
    assert "Lower the learning rate" not in explained("ode", 0.0)
    assert "step budget" in explained("ode", 5.0)
    assert "Lower the learning rate" in explained("sgd", 5.0)  # SGD itself blew up
    unstable = cfg.with_overrides(**{"lr.gamma": 10.0})
    assert "Lower the learning rate" in explained("ode", 1.0, unstable)


def test_a_solver_out_of_steps_is_said_as_such():
    from advdyn.cli._app import solver_stopped

    err = RuntimeError("The maximum number of solver steps was reached. Try increasing "
                       "`max_steps`.")
    assert "step budget" in solver_stopped(err)
    assert solver_stopped(RuntimeError("something else")) is None


def test_an_unusable_compilation_cache_folder_is_said(tmp_path, monkeypatch):
    from advdyn.workflows.cache import enable_compilation_cache

    blocker = tmp_path / "a_file"
    blocker.write_text("")
    monkeypatch.setenv("ADVDYN_CACHE_DIR", str(blocker))
    monkeypatch.delenv("ADVDYN_NO_CACHE", raising=False)
    with pytest.warns(RuntimeWarning, match="compilation cache is off"):
        assert enable_compilation_cache() is None
