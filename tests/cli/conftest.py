"""Helpers of the command-line tests."""

from __future__ import annotations

import sys
import time

import pytest

from advdyn import cli


@pytest.fixture
def dispatch(monkeypatch, capsys):
    """Return ``run(*args) -> (status, stdout, stderr, seconds)``: ``advdyn ARGS`` through
    :func:`advdyn.cli.dispatch` in this process.

    That is the console script's own path after start-up (one-line usage errors, exit
    statuses through ``sys.exit``) without a fresh interpreter; the worker's Ctrl-C handler
    is left as it is.
    """

    def run(*args) -> tuple[int, str, str, float]:
        monkeypatch.setattr(sys, "argv", ["advdyn", *map(str, args)])
        monkeypatch.setattr(cli, "handle_interrupts", lambda: None, raising=False)
        start = time.perf_counter()
        with pytest.raises(SystemExit) as exc:
            cli.dispatch()
        seconds = time.perf_counter() - start
        out, err = capsys.readouterr()
        return exc.value.code, out, err, seconds

    return run
