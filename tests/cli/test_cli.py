"""The ``advdyn`` command line: result files, options, user errors and divergence."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from typer.testing import CliRunner

from advdyn.cli._app import EXIT_DIVERGED, EXIT_USER_ERROR, app

runner = CliRunner()
SMALL = ["--d", "200", "--t-max", "1"]
# The console script, run in a fresh interpreter exactly as the `advdyn` entry point does
# (pyproject.toml: advdyn = "advdyn.__main__:main"; test_console_entry_point checks it).
CONSOLE = [sys.executable, "-c", "from advdyn.__main__ import main; main()"]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def stderr_of(result) -> str:
    try:
        return result.stderr
    except ValueError:  # old click runners that mix stderr into output
        return result.output


def assert_one_error_line(stderr: str, *fields: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error:"), stderr
    for field in fields:
        assert field in lines[0], (field, stderr)
    assert "Traceback" not in stderr
    return lines[0]


def open_nc(path):
    with xr.open_dataset(path) as ds:
        return ds.load()


# ----------------------------------------------------------------------------- runs
def test_default_run(tmp_path):
    """The embedded default problem, no overrides."""
    result = invoke("run", "-o", tmp_path, "-q")
    assert result.exit_code == 0, result.output
    assert {p.name for p in tmp_path.iterdir()} >= {"ode.nc", "sgd.nc", "summary.json", "risk.png"}

    ode = open_nc(tmp_path / "ode.nc")
    assert set(ode.dims) == {"time"}
    assert {"adv_risk", "clean_risk", "norm", "overlap", "lr"} <= set(ode.data_vars)
    assert ode.sizes["time"] == 61 and float(ode.time[-1]) == pytest.approx(6.0)
    assert np.all(np.isfinite(ode.adv_risk)) and np.all(ode.adv_risk >= ode.clean_risk - 1e-12)

    sgd = open_nc(tmp_path / "sgd.nc")
    assert {"replicate", "time"} <= set(sgd.dims)
    assert sgd.sizes["replicate"] == 4
    assert {"adv_risk", "clean_risk", "norm", "overlap", "lr"} <= set(sgd.data_vars)

    summary = json.loads((tmp_path / "summary.json").read_text())
    gap = summary["gap_vs_ode"]["sgd"]["adv_risk"]["max_relative_gap"]
    assert math.isfinite(gap) and 0 <= gap < 0.25
    assert summary["d"] == 1000
    assert (tmp_path / "risk.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_method_ode_only(tmp_path):
    result = invoke("run", "-o", tmp_path, "-q", "--method", "ode", *SMALL)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "ode.nc").is_file()
    assert not (tmp_path / "sgd.nc").exists()
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["methods"] == ["ode"]
    assert summary["d"] == 200


@pytest.mark.parametrize("methods", [["--method", "ode,sgd"], ["-m", "sgd", "-m", "ode"]])
def test_two_methods_and_replicates(tmp_path, methods):
    result = invoke("run", "-o", tmp_path, "-q", *methods, "--replicates", "2", *SMALL)
    assert result.exit_code == 0, result.output
    sgd = open_nc(tmp_path / "sgd.nc")
    assert sgd.sizes["replicate"] == 2
    ode = open_nc(tmp_path / "ode.nc")
    np.testing.assert_allclose(sgd.time, ode.time)  # one shared grid, aligned to SGD steps
    assert float(sgd.time[-1]) == pytest.approx(1.0, abs=0.15)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(summary["methods"]) == {"ode", "sgd"}
    assert "max_relative_gap" in summary["gap_vs_ode"]["sgd"]["adv_risk"]
    assert summary["config"]["run"]["replicates"] == 2


def test_dimension_override(tmp_path):
    result = invoke(
        "run",
        "-o",
        tmp_path,
        "-q",
        "-m",
        "sgd",
        "--replicates",
        "1",
        "--d",
        "200",
        "--t-max",
        "0.5",
    )
    assert result.exit_code == 0, result.output
    sgd = open_nc(tmp_path / "sgd.nc")
    assert sgd.attrs["d"] == 200
    assert json.loads(sgd.attrs["config"])["problem"]["d"] == 200
    assert not (tmp_path / "ode.nc").exists()


def test_example_config_runs(tmp_path):
    example = Path(__file__).resolve().parents[2] / "examples" / "logistic_binary_mixture.toml"
    result = invoke("run", example, "-o", tmp_path, "-q", "-m", "ode", *SMALL)
    assert result.exit_code == 0, result.output
    ode = open_nc(tmp_path / "ode.nc")
    assert "robust_error" in ode.data_vars


def test_default_config_command(tmp_path):
    result = invoke("default-config")
    assert result.exit_code == 0
    assert "[problem]" in result.stdout and "d = 1000" in result.stdout


# ----------------------------------------------------------------------------- user errors
def _bad_files(tmp_path):
    """Write the .npy files the bad configs refer to."""
    np.save(tmp_path / "negcov.npy", np.diag([1.0, -1.0, 1.0]))
    np.save(tmp_path / "eig5.npy", np.ones(5))


BAD_CONFIGS = {
    "unknown_top_level_key": ("foo = 1\n[problem]\nd = 3\n", ["foo"]),
    "unknown_nested_key": ("[problem]\nd = 3\ndimension = 4\n", ["problem.dimension"]),
    "unknown_run_key": ("[problem]\nd = 3\n[run]\ntmax = 1\n", ["run.tmax"]),
    "negative_d": ("[problem]\nd = -3\n", ["problem.d"]),
    "negative_epsilon": ("[problem]\nd = 3\nepsilon = -0.5\n", ["problem.epsilon"]),
    "nan_epsilon": ("[problem]\nd = 3\nepsilon = nan\n", ["problem.epsilon"]),
    "inf_gamma": ('[problem]\nd = 3\n[lr]\nkind = "constant"\ngamma = inf\n', ["lr.gamma"]),
    "weights_do_not_sum_to_one": (
        "[problem]\nd = 3\n[[problem.components]]\nweight = 0.3\n"
        "[[problem.components]]\nweight = 0.5\n",
        ["components", "sum to 1"],
    ),
    "non_psd_covariance": (
        '[problem]\nd = 3\nspectrum = { kind = "covariance_file", path = "negcov.npy" }\n',
        ["problem.spectrum.path", "positive semidefinite"],
    ),
    "missing_npy": (
        '[problem]\nd = 3\nspectrum = { kind = "eigenvalues_file", path = "absent.npy" }\n',
        ["problem.spectrum.path", "absent.npy"],
    ),
    "missing_init_npy": (
        '[problem]\nd = 3\ninit = { kind = "file", path = "absent.npy" }\n',
        ["problem.init.path"],
    ),
    "wrong_shape_eigenvalues": (
        '[problem]\nd = 3\nspectrum = { kind = "eigenvalues_file", path = "eig5.npy" }\n',
        ["problem.spectrum.path", "shape"],
    ),
    "wrong_shape_component_eigenvalues": (
        "[problem]\nd = 3\n[[problem.components]]\nweight = 1.0\n"
        'spectrum = { kind = "eigenvalues_file", path = "eig5.npy" }\n',
        ["problem.components[0].spectrum.path", "shape"],
    ),
    "invalid_toml": ("[problem\nd = 3\n", ["config", "not valid TOML"]),
    "unknown_method_in_file": ('[problem]\nd = 3\n[run]\nmethods = ["mcmc"]\n', ["run.methods"]),
    "logistic_with_regression": (
        '[problem]\nd = 3\nloss = "logistic"\n',
        ["loss", "classification"],
    ),
    "unknown_spectrum_kind": (
        '[problem]\nd = 3\nspectrum = { kind = "zipf" }\n',
        ["problem.spectrum"],
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_config_file(tmp_path, case):
    text, fields = BAD_CONFIGS[case]
    _bad_files(tmp_path)
    path = tmp_path / "bad.toml"
    path.write_text(text)
    result = invoke("run", path, "-o", tmp_path / "out", "-q")
    assert result.exit_code == EXIT_USER_ERROR, result.output
    assert_one_error_line(stderr_of(result), *fields)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("args", "fields"),
    [
        (["--d", "-5"], ["problem.d"]),
        (["--d", "0"], ["problem.d"]),
        (["--method", "mcmc"], ["run.methods"]),
        (["--method", "ode,ode"], ["run.methods"]),
        (["--replicates", "0"], ["run.replicates"]),
        (["--t-max", "nan"], ["run.t_max"]),
        (["--t-max", "-1"], ["run.t_max"]),
        (["--dtype", "float16"], ["run.dtype"]),
        (["--seed", "-1"], ["problem.seed"]),
    ],
)
def test_bad_option(tmp_path, args, fields):
    result = invoke("run", "-o", tmp_path / "out", "-q", *args)
    assert result.exit_code == EXIT_USER_ERROR, result.output
    assert_one_error_line(stderr_of(result), *fields)


def test_missing_config_file(tmp_path):
    result = invoke("run", tmp_path / "absent.toml", "-q", "-o", tmp_path / "out")
    assert result.exit_code == EXIT_USER_ERROR
    assert_one_error_line(stderr_of(result), "config", "absent.toml", "not found")


def test_unwritable_output_folder(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    result = invoke("run", "-o", blocker, "-q", "-m", "ode", "--d", "20", "--t-max", "0.1")
    assert result.exit_code == EXIT_USER_ERROR
    # refused while the options are parsed (one line through advdyn.cli.dispatch, the
    # console's form; tests/cli/test_command_contract.py checks that form for every command)
    text = " ".join(stderr_of(result).replace("│", " ").split())  # (click's box, wrapped)
    assert "cannot write results" in text and "it is a file" in text, text


# ----------------------------------------------------------------------------- divergence
DIVERGING = textwrap.dedent(
    """\
    # least squares with gamma * tr(K)/d = 10, far above the stability limit of about 2
    [problem]
    d = 200
    task = { kind = "regression", noise = 0.1 }

    [lr]
    kind = "constant"
    gamma = 10.0

    [run]
    t_max = 2.0
    replicates = 1
    """
)


@pytest.mark.parametrize("method", ["ode", "sgd"])
def test_divergence_exits_3(write_toml, tmp_path, method):
    path = write_toml(DIVERGING)
    result = invoke("run", path, "-o", tmp_path / "out", "-q", "--method", method)
    assert result.exit_code == EXIT_DIVERGED, result.output
    line = assert_one_error_line(stderr_of(result), method, "t =", "gamma = 10")
    assert "learning rate" in line


# ----------------------------------------------------------------------------- console script
def console(*args, cwd=None, env=None):
    # JAX_PLATFORMS=cpu keeps JAX's "no GPU backend" warning off stderr on GPU hosts
    env = {**os.environ, "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu"), **(env or {})}
    return subprocess.run(
        [*CONSOLE, *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env, timeout=300
    )


def test_console_script_run_without_quiet(tmp_path):
    proc = console("run", "-o", tmp_path, "--d", "100", "--t-max", "0.5", "--replicates", "1")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "d = 100" in proc.stderr  # the header line
    assert "adv_risk" in proc.stdout and "wall time" in proc.stdout  # the summary table
    assert "results written to" in proc.stdout
    assert {p.name for p in tmp_path.iterdir()} >= {"ode.nc", "sgd.nc", "summary.json", "risk.png"}


def test_console_script_sgd_over_two_devices_with_an_empty_program_store(tmp_path):
    # the README's first run: an empty store, replicates split over two CPU devices. Stored
    # programs (the optimum) once returned arrays committed to device 0, which the SGD's
    # records, sharded over both devices, refused ("incompatible devices")
    env = {"ADVDYN_CACHE_DIR": str(tmp_path / "cache"),
           "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    proc = console("run", "-q", "-o", tmp_path / "out", "--d", "100", "--t-max", "0.5",
                   "--replicates", "2", env=env)
    assert proc.returncode == 0, proc.stderr
    assert {p.name for p in (tmp_path / "out").iterdir()} >= {"ode.nc", "sgd.nc"}


def test_console_script_exit_codes(tmp_path, monkeypatch, dispatch):
    # one console script per process start-up (a config error exits 2 with one line); the
    # other statuses come from advdyn.cli.dispatch, which the console script runs after
    # start-up: called here in this process (tests/cli/conftest.py)
    (tmp_path / "div.toml").write_text(DIVERGING)
    (tmp_path / "bad.toml").write_text("[problem]\nd = -3\n")
    proc = console("run", "bad.toml", "-q", cwd=tmp_path)
    assert proc.returncode == EXIT_USER_ERROR, proc.stderr
    assert_one_error_line(proc.stderr, "problem.d")
    monkeypatch.chdir(tmp_path)
    cases = [
        (["run", "div.toml", "-q", "-m", "ode"], EXIT_DIVERGED, ["t =", "gamma = 10"]),
        # click usage errors (not config errors) also exit 2 with one line naming the option
        (["run", "--d", "abc"], EXIT_USER_ERROR, ["--d", "advdyn run --help"]),
        (["runn"], EXIT_USER_ERROR, ["runn", "Did you mean 'run'?"]),
    ]
    for args, code, fields in cases:
        status, _, err, _ = dispatch(*args)
        assert status == code, (args, err)
        assert_one_error_line(err, *fields)


def _children(pid: int) -> set[int]:
    """Processes whose parent is ``pid`` (Linux /proc; empty elsewhere)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


@pytest.mark.parametrize("after", [0.3, 2.0], ids=["while loading", "later"])
def test_ctrl_c_exits_130_without_a_traceback(tmp_path, after):
    # Ctrl-C signals the whole foreground process group. While the stack loads (0.3 s) or
    # later in the run (a run of several seconds), one exit status 130, no traceback (before,
    # a Ctrl-C during the imports printed one), and no process left behind
    import signal
    import time

    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    # as from a terminal: Python's own Ctrl-C handler, which a process started with SIGINT
    # ignored (a pytest-xdist worker's children) would not install
    console = [sys.executable, "-c", "import signal; "
               "signal.signal(signal.SIGINT, signal.default_int_handler); "
               "from advdyn.__main__ import main; main()"]
    proc = subprocess.Popen([*console, "run", "-o", str(tmp_path), "--d", "2000",
                             "--t-max", "12"],
                            start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    time.sleep(after)
    children = _children(proc.pid)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    deadline = time.monotonic() + 10
    while children and time.monotonic() < deadline:
        children = {c for c in children if _running(c)}
        time.sleep(0.1)
    assert not children


def _running(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie (exited, not yet reaped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@pytest.mark.skipif(shutil.which("advdyn") is None, reason="advdyn console script not on PATH")
def test_installed_console_script(tmp_path):
    proc = subprocess.run(
        [shutil.which("advdyn"), "run", "--d", "-5", "-q", "-o", str(tmp_path)],
        env={**os.environ, "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu")},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == EXIT_USER_ERROR, proc.stderr
    assert_one_error_line(proc.stderr, "problem.d")
