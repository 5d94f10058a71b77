"""The console script's garbage-collector policy (advdyn.__main__): off during start-up,
start-up's objects frozen, on for the command, everything frozen at exit."""

from __future__ import annotations

import gc
import tomllib
from pathlib import Path

import pytest

import advdyn.__main__ as launcher
from advdyn import cli


def test_console_entry_point():
    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    assert pyproject["project"]["scripts"]["advdyn"] == "advdyn.__main__:main"


@pytest.fixture
def restore_gc():
    enabled = gc.isenabled()
    yield
    gc.unfreeze()  # give the test process's objects back to the collector
    if enabled:
        gc.enable()
    else:  # pragma: no cover
        gc.disable()


def test_collector_off_during_start_up_and_on_for_the_command(monkeypatch, restore_gc):
    seen = {}

    def configure():
        seen["configure"] = (gc.isenabled(), gc.get_freeze_count())

    def dispatch():
        seen["dispatch"] = (gc.isenabled(), gc.get_freeze_count())
        raise SystemExit(0)

    monkeypatch.setattr(cli, "configure", configure)
    monkeypatch.setattr(cli, "dispatch", dispatch)
    gc.unfreeze()
    with pytest.raises(SystemExit):
        launcher.main()
    assert seen["configure"] == (False, 0)  # no collection while start-up builds its objects
    enabled, frozen = seen["dispatch"]
    assert enabled and frozen > 0  # start-up's objects frozen; the command collects as usual
    assert gc.isenabled()  # (left on, and the survivors frozen for the interpreter's exit)
    assert gc.get_freeze_count() > 0


def test_collector_back_on_after_a_start_up_error(monkeypatch, restore_gc):
    def configure():
        raise RuntimeError("broken environment")

    monkeypatch.setattr(cli, "configure", configure)
    with pytest.raises(RuntimeError, match="broken environment"):
        launcher.main()
    assert gc.isenabled()


def test_xla_flags_compile_loops_into_kernels_for_phase_only(monkeypatch):
    """`advdyn.cli.xla_flags`: one CPU device per core for every command; XLA's one-kernel
    loops (`LOOP_KERNEL_OPTION`) for `LOOP_KERNEL_COMMANDS` only, on a jaxlib whose CPU
    runtime has them; whatever the environment already sets is kept as it is."""
    import importlib.metadata

    option = f"--xla_backend_extra_options={cli.LOOP_KERNEL_OPTION}"
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "0.10.2")
    assert cli.LOOP_KERNEL_COMMANDS == {"phase"}
    assert option in cli.xla_flags("phase").split()
    assert "--xla_force_host_platform_device_count=" in cli.xla_flags("phase")
    for command in ("run", "sweep", "critical-exact", None):
        assert "xla_backend_extra_options" not in cli.xla_flags(command)
    given = ("--xla_force_host_platform_device_count=3 "
             "--xla_backend_extra_options=xla_cpu_small_while_loop_byte_threshold=1024")
    assert cli.xla_flags("phase", given) == given
    other = "--xla_backend_extra_options=xla_cpu_enable_concurrency_optimized_scheduler=true"
    assert cli.xla_flags("phase", other).split()[-1] == option  # XLA merges the two
    assert cli.xla_flags("phase", "--xla_cpu_enable_fast_math=false").startswith(
        "--xla_cpu_enable_fast_math=false --xla_force_host_platform_device_count=")
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "0.6.2")  # thunks not yet
    assert "xla_backend_extra_options" not in cli.xla_flags("phase")


def test_configure_runtime_sets_the_flags_of_the_command_on_the_command_line(tmp_path):
    """Before JAX starts, the console script's process gets `xla_flags` of its command."""
    import os
    import subprocess
    import sys

    code = ("import os, sys; sys.argv = ['advdyn', 'phase', 'x.toml', '-q']; "
            "from advdyn import cli; cli._configure_runtime(); print(os.environ['XLA_FLAGS'])")
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["ADVDYN_CACHE_DIR"] = str(tmp_path)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == cli.xla_flags("phase").split()


def test_the_loop_option_makes_xla_compile_a_loop_into_one_kernel(tmp_path):
    """XLA knows `LOOP_KERNEL_OPTION` by its name: with `xla_flags` of ``phase`` a while loop
    over 8 kB compiles into one kernel (XLA marks it ``xla_cpu_small_call``), without it not.
    XLA ignores an unknown ``xla_`` backend option silently, so a renamed option fails here,
    not in the speed alone."""
    import os
    import subprocess
    import sys

    code = ("import jax, jax.numpy as jnp; "
            "f = lambda x: jax.lax.while_loop(lambda c: c[0] < 10, "
            "lambda c: (c[0] + 1, c[1] * 1.5 + 1.0), (0, x))[1]; "
            "print('xla_cpu_small_call' in jax.jit(f).lower(jnp.ones(1000)).compile().as_text())")
    found = {}
    for name, flags in (("phase", cli.xla_flags("phase")), ("run", cli.xla_flags("run"))):
        env = {**os.environ, "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu"}
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env=env, timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        found[name] = out.stdout.strip()
    assert found == {"phase": "True", "run": "False"}
