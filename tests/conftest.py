"""Shared test helpers."""

from __future__ import annotations

import os
from pathlib import Path

# The suite is dominated by XLA compilation. advdyn's command line compiles its stored
# programs with XLA's loop emitters (advdyn.cli._programs.CPU_COMPILER_OPTIONS: 21-27% less
# compile CPU, docs/benchmarks.md); the tests use the same option for every compilation
# (before JAX starts; the console-script tests inherit it). Results do not depend on it:
# tests/cli/test_programs.py compares stored programs with the API's bit for bit.
if "xla_cpu_use_fusion_emitters" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_cpu_use_fusion_emitters=false"
    ).strip()

# One persistent compilation cache for the whole run, in a temporary folder (never the user's
# cache): the two xdist workers and every command-line subprocess (which inherit the
# variable) load what another compiled instead of compiling it again. Programs are the same
# whichever process compiled them; tests of the cache itself set their own folder.
_SESSION_CACHE = None
if not os.environ.get("ADVDYN_CACHE_DIR") and "PYTEST_XDIST_WORKER" not in os.environ:
    import tempfile

    _SESSION_CACHE = tempfile.mkdtemp(prefix="advdyn-test-cache-")
    os.environ["ADVDYN_CACHE_DIR"] = _SESSION_CACHE

import pytest  # noqa: E402  (after the environment above)

from advdyn.workflows.cache import enable_compilation_cache  # noqa: E402

enable_compilation_cache()


def pytest_unconfigure(config):
    if _SESSION_CACHE is not None:
        import shutil

        shutil.rmtree(_SESSION_CACHE, ignore_errors=True)


@pytest.fixture
def write_toml(tmp_path):
    """Return ``write(text, name)``: writes a file in ``tmp_path`` and returns its path."""

    def write(text: str, name: str = "config.toml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


@pytest.fixture(autouse=True)
def _float64():
    """Run each test with JAX's float64 on, as the library's entry points do.

    Importing advdyn changes no global JAX state; the entry points enable float64 for their
    own duration (advdyn.precision). Tests also call low-level building blocks (statistics,
    drift, expectations) directly, so each test runs inside the same context. That the entry
    points work without it is checked in a fresh interpreter (tests/test_architecture.py).
    """
    from advdyn.precision import x64

    with x64():
        yield


class _DictStore:
    """An in-memory :class:`advdyn.cli._programs.ExecutableStore` (a dict of key to bytes)."""

    def __init__(self):
        self.data: dict[str, bytes] = {}

    def get(self, key):
        return self.data.get(key)

    def put(self, key, blob):
        self.data[key] = blob


@pytest.fixture
def new_program_store():
    """Return the in-memory executable store class: each call makes an empty store."""
    return _DictStore


@pytest.fixture
def program_store(new_program_store):
    """An empty in-memory executable store, set for the test (the previous one restored)."""
    from advdyn.cli._programs import set_store

    s = new_program_store()
    old = set_store(s)
    yield s
    set_store(old)
