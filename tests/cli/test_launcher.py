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
