"""advdyn.cli._programs: programs kept across processes give the same numbers, never stale ones.

The store is exercised in-process: clearing the loaded programs (``set_store`` again) is what
a new process sees, and a Python-side counter inside a traced function counts the traces
(Python code runs only while JAX traces).
"""

from __future__ import annotations

import importlib
import threading
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import advdyn
from advdyn.cli import _programs as executables
from advdyn.cli._programs import (
    PROGRAMS,
    ExecutableFolder,
    cached_jit,
    executable_key,
    install,
    set_store,
)
from advdyn.precision import x64
from advdyn.theory.ode import choose_solver

TRACES = {"n": 0}


@cached_jit
def _affine(x, scale, kind):
    TRACES["n"] += 1
    return {"y": x * scale + (1.0 if kind == "shift" else 0.0), "s": jnp.sum(x)}


class UserModule(eqx.Module):  # defined outside advdyn: its code is not in the key
    a: jax.Array


@pytest.fixture
def store(program_store):
    return program_store


def _fresh_process(store):
    set_store(store)  # forgets the programs loaded in this process, keeps the store


def test_stored_program_is_reused_without_tracing(store):
    x = jnp.arange(4.0)
    TRACES["n"] = 0
    first = _affine(x, 2.0, "shift")
    assert TRACES["n"] == 1 and len(store.data) == 1
    _fresh_process(store)
    again = _affine(x, 2.0, "shift")
    assert TRACES["n"] == 1  # loaded from the store: not traced again
    np.testing.assert_array_equal(first["y"], again["y"])
    np.testing.assert_array_equal(again["y"], np.arange(4.0) * 2.0 + 1.0)


def test_static_values_and_shapes_are_in_the_key(store):
    x = jnp.arange(4.0)
    np.testing.assert_array_equal(_affine(x, 2.0, "none")["y"], np.arange(4.0) * 2.0)
    np.testing.assert_array_equal(_affine(x, 3.0, "none")["y"], np.arange(4.0) * 3.0)
    np.testing.assert_array_equal(_affine(jnp.arange(5.0), 3.0, "none")["y"],
                                  np.arange(5.0) * 3.0)
    assert len(store.data) == 3
    keys = {executable_key("f", (x, 2.0, "none")), executable_key("f", (x, 2.0, "shift")),
            executable_key("f", (x.astype(jnp.int32), 2.0, "none"))}
    assert len(keys) == 3


def test_user_code_bypasses_the_store(store):
    mod = UserModule(jnp.ones(3))
    assert executable_key("f", (mod,)) is None
    assert executable_key("f", (jnp.ones(3), lambda v: v)) is None
    assert executable_key("f", (jnp.ones(3), choose_solver)) is not None  # advdyn function
    TRACES["n"] = 0
    out = _affine(jnp.ones(3), 1.0, UserModule(jnp.ones(())))  # user pytree node: plain jit
    assert len(store.data) == 0 and TRACES["n"] == 1
    np.testing.assert_array_equal(out["s"], 3.0)


def test_unreadable_entry_is_recompiled_and_replaced(store):
    x = jnp.arange(3.0)
    _affine(x, 2.0, "none")
    (key,) = store.data
    store.data[key] = b"not a program"
    _fresh_process(store)
    TRACES["n"] = 0
    np.testing.assert_array_equal(_affine(x, 2.0, "none")["y"], np.arange(3.0) * 2.0)
    assert TRACES["n"] == 1 and store.data[key] != b"not a program"


def _room_function(entry):
    module, name = entry.split(":")
    return importlib.import_module(module), name


@pytest.fixture
def installed():
    """Undo :func:`install` after the test: the rooms' own functions and the old store."""
    saved = [(*_room_function(e), getattr(*_room_function(e))) for e in PROGRAMS]
    old = executables.store()
    yield
    for module, name, fn in saved:
        setattr(module, name, fn)
    set_store(old)


def test_the_rooms_solvers_are_plain_filter_jit_until_the_command_line_installs_the_store(
        installed, tmp_path):
    # the rooms import no start-up machinery: each registered name is equinox's filter_jit
    # (a name that no longer exists, or is not jitted, fails here rather than silently
    # leaving a solver outside the store)
    for entry in PROGRAMS:
        fn = getattr(*_room_function(entry))
        assert type(fn).__module__.startswith("equinox"), entry
        assert not getattr(fn, "stored_programs", False), entry
    install(ExecutableFolder(tmp_path))
    install(ExecutableFolder(tmp_path))  # again: wraps once
    for entry in PROGRAMS:
        fn = getattr(*_room_function(entry))
        assert fn.stored_programs, entry
        assert not getattr(fn.jitted, "stored_programs", False), entry


def test_ode_and_optimum_through_a_folder_store_are_bitwise_equal(installed, tmp_path):
    cfg = advdyn.default_config().with_overrides(**{"problem.d": 64})
    inst = advdyn.instantiate(cfg.problem)
    lr = advdyn.Constant(0.8)
    times = np.linspace(0.0, 2.0, 5)
    plain = advdyn.solve_ode(inst, lr, times)
    old = executables.store()
    install(ExecutableFolder(tmp_path))
    stored = advdyn.solve_ode(inst, lr, times)
    assert len(list(tmp_path.glob("*.bin"))) >= 2  # the ODE and the optimum's parts
    set_store(ExecutableFolder(tmp_path))  # a new process: loads what the first stored
    loaded = advdyn.solve_ode(inst, lr, times)
    set_store(old)
    for key in plain.ys:
        np.testing.assert_array_equal(plain.ys[key], stored.ys[key], err_msg=key)
        np.testing.assert_array_equal(plain.ys[key], loaded.ys[key], err_msg=key)
    assert executables.store() is old


def test_calls_inside_a_transformation_use_plain_jit(store):
    x = jnp.arange(3.0)
    y = jax.jit(lambda v: _affine(v, 2.0, "none")["y"])(x)
    g = jax.grad(lambda v: _affine(v, 2.0, "none")["s"])(x)
    assert len(store.data) == 0  # traced arguments: nothing is stored
    np.testing.assert_array_equal(y, np.arange(3.0) * 2.0)
    np.testing.assert_array_equal(g, np.ones(3))


# --- threads, and the in-process store -----------------------------------------------

SLOW = {"n": 0}
TRACING = threading.Event()


@cached_jit
def _slow(x):
    SLOW["n"] += 1
    TRACING.set()
    time.sleep(0.3)  # (Python time while tracing: the other thread's call arrives meanwhile)
    return x + 1.0


@cached_jit
def _with_callback(x):
    TRACES["n"] += 1
    return jax.pure_callback(lambda v: np.asarray(v) * 2.0,
                             jax.ShapeDtypeStruct(x.shape, x.dtype), x)


def test_a_call_waits_for_the_program_another_thread_makes(store):
    x = jnp.arange(3.0)
    SLOW["n"] = 0
    TRACING.clear()

    def first():  # (x64 is thread-local: the worker enters it as the test does)
        with x64():
            _slow(x)

    worker = threading.Thread(target=first)
    worker.start()
    assert TRACING.wait(30)
    out = _slow(x)  # arrives while the worker traces: waits instead of tracing again
    worker.join()
    assert SLOW["n"] == 1
    np.testing.assert_array_equal(out, np.arange(3.0) + 1.0)


def test_unexportable_function_falls_back_to_jit_once(store):
    x = jnp.arange(3.0)
    TRACES["n"] = 0
    np.testing.assert_array_equal(_with_callback(x), np.arange(3.0) * 2.0)
    first = TRACES["n"]  # the failed export's trace and jit's
    np.testing.assert_array_equal(_with_callback(x), np.arange(3.0) * 2.0)
    assert TRACES["n"] == first and len(store.data) == 0  # no second export attempt


def test_without_a_store_programs_are_kept_for_the_process():
    old = set_store(None)
    try:
        x = jnp.arange(5.0)
        TRACES["n"] = 0
        a = _affine(x, 3.0, "none")
        b = _affine(x, 3.0, "none")
        assert TRACES["n"] == 1
        np.testing.assert_array_equal(a["y"], b["y"])
        np.testing.assert_array_equal(a["y"], _affine.jitted(x, 3.0, "none")["y"])
    finally:
        set_store(old)


def test_an_xla_without_the_compiler_options_still_compiles(store, monkeypatch):
    # an XLA that does not know an option rejects it ("No such compile option"): the
    # program is then compiled with XLA's defaults
    monkeypatch.setattr(executables, "CPU_COMPILER_OPTIONS", {"xla_cpu_no_such_option": True})
    x = jnp.arange(3.0)
    np.testing.assert_array_equal(_affine(x, 5.0, "none")["y"], np.arange(3.0) * 5.0)
    assert len(store.data) == 1


def test_a_program_that_does_not_run_falls_back_to_jit(store, monkeypatch):
    # e.g. arguments committed to a device other than the one the program was compiled
    # for: the call still answers, through equinox.filter_jit, and later calls go there
    # directly (no export and compile per call)
    made = {"n": 0}

    def broken(exported, out_tree):
        made["n"] += 1

        def run(*leaves):
            raise RuntimeError("compiled for another device")
        return run

    monkeypatch.setattr(executables, "_runner", broken)
    x = jnp.arange(3.0)
    TRACES["n"] = 0
    for _ in range(3):
        np.testing.assert_array_equal(_affine(x, 7.0, "none")["y"], np.arange(3.0) * 7.0)
    assert made["n"] == 1 and TRACES["n"] == 2  # one export, one jit trace


def test_a_stored_program_that_does_not_run_is_made_afresh_once(store, monkeypatch):
    x = jnp.arange(3.0)
    _affine(x, 4.0, "none")
    assert len(store.data) == 1
    _fresh_process(store)
    real = executables._runner
    calls = {"n": 0}

    def fails_once(exported, out_tree):  # the stored program fails, a fresh one runs
        calls["n"] += 1
        if calls["n"] == 1:
            def run(*leaves):
                raise RuntimeError("stale")
            return run
        return real(exported, out_tree)

    monkeypatch.setattr(executables, "_runner", fails_once)
    TRACES["n"] = 0
    np.testing.assert_array_equal(_affine(x, 4.0, "none")["y"], np.arange(3.0) * 4.0)
    np.testing.assert_array_equal(_affine(x, 4.0, "none")["y"], np.arange(3.0) * 4.0)
    assert calls["n"] == 2 and TRACES["n"] == 1  # re-exported once, then kept
