"""A second Python interpreter that draws figures: matplotlib's start-up off the critical path.

A short command such as ``advdyn run --method ode`` with a warm compilation cache spends
most of its time importing libraries, one after the other on one core. Matplotlib (with
the xarray a figure reads) is a third of that, and the figure itself is needed only at
the end. :class:`FigureProcess` starts a second interpreter at once (``spawn``: a fresh
process, safe whatever threads this one runs later) which imports the plotting stack on
the other core while this one imports JAX and computes; the command then sends it the
drawing (a picklable function and its arguments, e.g. :func:`advdyn.plot.risk.save_quantities`)
and writes its other files while the figure is drawn.

On POSIX, ``spawn`` also starts multiprocessing's small resource-tracker process, which
ends with this one. While the second process is being started (a few milliseconds),
SIGINT is ignored here, so that it inherits the disposition; a Ctrl-C in that window is
lost.

The process is an optimisation only. Whatever goes wrong with it (it cannot start, it
died, a message cannot be pickled) surfaces as :class:`FigureProcessLost`, and the caller
draws in its own process instead; an exception raised by the drawing itself (e.g. an
``OSError`` writing the file) is raised in the caller as it was raised. The second process
ignores Ctrl-C (the command that owns it ends it) and ends when its owner closes it or
its owner's end of the pipe closes.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

__all__ = [
    "PLOTTING_STACK",
    "FigureProcess",
    "FigureProcessLost",
    "PendingResult",
    "close_shared",
    "cores_available",
    "shared",
    "sigint_ignored",
    "spare_cores",
    "start_shared",
]

#: what the second process imports while it waits for its first drawing: matplotlib's Agg
#: figure, advdyn's figures with the xarray they read, and ``dask.array``, which xarray
#: imports for its first variable wherever Dask is installed (a module that is not
#: installed is skipped)
PLOTTING_STACK: tuple[str, ...] = (
    "matplotlib.figure",
    "matplotlib.backends.backend_agg",
    "advdyn.plot.risk",
    "dask.array",
)

_log = logging.getLogger(__name__)


class FigureProcessLost(RuntimeError):
    """The second process cannot take or finish a drawing (not started, died, or a message
    could not be pickled): draw in this process instead."""


class PendingResult:
    """A drawing sent to a :class:`FigureProcess`; :meth:`result` waits for it."""

    def __init__(self, owner: FigureProcess) -> None:
        self._owner = owner
        self._outcome: tuple[bool, Any] | None = None

    def result(self, timeout: float | None = None) -> Any:
        """Wait for the drawing and return what the function returned.

        Parameters
        ----------
        timeout : float, optional
            Seconds to wait at most (for ever when None). A process that has not answered
            by then is taken as lost and ended: its answer could no longer be told apart
            from the next one's.

        Returns
        -------
        object
            The function's return value.

        Raises
        ------
        FigureProcessLost
            If the process died, did not answer within ``timeout`` or its answer could not
            be read.
        Exception
            Whatever the function raised, re-raised here (with a note giving the other
            process's traceback).
        """
        with self._owner._lock:
            if self._outcome is None:
                self._outcome = self._owner._receive(timeout)
        ok, value = self._outcome
        if ok:
            return value
        raise value


class FigureProcess:
    """A spawned interpreter that imports ``preload`` at once, then runs drawings on request.

    One drawing at a time: :meth:`submit` sends one (after the answer to the one before,
    so that threads sharing the process take turns), :meth:`PendingResult.result` waits for
    it. Use as a context manager, or call :meth:`close`. As with every ``spawn`` process,
    the second interpreter imports the main module of this one (a script's code must sit
    under ``if __name__ == "__main__":``).

    Parameters
    ----------
    preload : sequence of str
        Modules the process imports before its first drawing (:data:`PLOTTING_STACK`).

    Raises
    ------
    FigureProcessLost
        If the process cannot be started.

    Examples
    --------
    >>> with FigureProcess() as figures:  # doctest: +SKIP
    ...     pending = figures.submit(save_quantities, datasets, "risk.png")
    ...     ...  # write the other files meanwhile
    ...     path = pending.result()
    """

    def __init__(self, preload: Sequence[str] = PLOTTING_STACK) -> None:
        context = multiprocessing.get_context("spawn")
        self._connection, child = context.Pipe()
        self._process = context.Process(
            target=_serve, args=(child, tuple(preload)), name="advdyn-figures", daemon=True
        )
        try:
            with sigint_ignored():  # inherited: Ctrl-C never interrupts its start-up either
                self._process.start()
        except Exception as err:  # (e.g. no process may be started here)
            self._connection.close()
            raise FigureProcessLost(f"cannot start the figure process: {err!r}") from err
        finally:
            child.close()  # the child holds its own copy
        self._pending: PendingResult | None = None
        # one drawing on the pipe at a time: the answer on it is always the one pending
        self._lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        """The second process's id."""
        return self._process.pid

    def submit(self, fn: Callable[..., Any] | str, /, *args: Any, **kwargs: Any) -> PendingResult:
        """Send ``fn(*args, **kwargs)`` to the process; return at once.

        Parameters
        ----------
        fn : callable or str
            A module-level function (pickled by reference), or its name as
            ``"module:function"``, imported in the second process only (so that this one
            need not import, e.g., matplotlib to name a function of :mod:`advdyn.plot.risk`).
        *args, **kwargs
            Its arguments (pickled).

        Returns
        -------
        PendingResult
            Whose :meth:`~PendingResult.result` waits for the drawing.

        Raises
        ------
        FigureProcessLost
            If the process is gone or the message cannot be pickled; nothing was sent.
        """
        with self._lock:
            if self._pending is not None and self._pending._outcome is None:
                self._pending._outcome = self._receive()  # one at a time: the one before first
            try:
                self._connection.send((fn, args, kwargs))
            except Exception as err:  # a closed pipe, a dead process, an unpicklable argument
                raise FigureProcessLost(f"cannot send a drawing: {err!r}") from err
            self._pending = PendingResult(self)
            return self._pending

    def _receive(self, timeout: float | None = None) -> tuple[bool, Any]:
        try:
            if timeout is not None and not self._connection.poll(timeout):
                self.close()  # (stalled: its late answer would be read as the next one's)
                raise FigureProcessLost(f"the figure process did not answer in {timeout:g} s")
            return self._connection.recv()
        except FigureProcessLost:
            raise
        except Exception as err:  # EOF (the process died), an answer that does not unpickle
            raise FigureProcessLost(f"the figure process did not answer: {err!r}") from err

    def close(self) -> None:
        """End the process (at once: it holds nothing that a later command needs).

        A drawing still in progress is abandoned; its file is written atomically, so at
        most a temporary file is left, which the next run of the command removes.
        """
        self._connection.close()
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(timeout=2)
        if self._process.is_alive():  # (e.g. stopped: SIGTERM waits until it continues)
            self._process.kill()
        self._process.join()

    def __enter__(self) -> FigureProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextmanager
def sigint_ignored() -> Iterator[None]:
    """Ignore SIGINT while the block runs, where this thread may set signal handlers.

    A process started meanwhile inherits the disposition through ``exec``, and Python does
    not install its ``KeyboardInterrupt`` handler where SIGINT is ignored at start-up: so a
    Ctrl-C (sent to the whole foreground process group) cannot interrupt the second
    process's start-up with a traceback of its own.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _serve(connection: Connection, preload: tuple[str, ...]) -> None:
    """The second process: import ``preload``, then run drawings until the pipe closes."""
    import gc
    import importlib

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the owner's to handle
    gc.disable()  # (as the console script: the imports create only long-lived objects)
    for name in preload:
        try:
            importlib.import_module(name)
        except Exception:  # a drawing that needs it will raise, in the owner
            _log.debug("figure process: cannot import %s", name, exc_info=True)
    gc.freeze()
    gc.enable()
    while True:
        try:
            fn, args, kwargs = connection.recv()
        except (EOFError, OSError):  # the owner closed its end or ended
            return
        except Exception as err:  # a drawing whose function or arguments do not unpickle here
            answer: tuple[bool, Any] = (
                False, FigureProcessLost(f"cannot read the drawing: {err!r}")
            )
        else:
            try:
                answer = (True, _resolve(fn)(*args, **kwargs))
            except BaseException as err:  # (handed to the owner, which raises it)
                err.add_note("raised in advdyn's figure process:\n" + traceback.format_exc())
                answer = (False, err)
        try:
            try:
                connection.send(answer)
            except (EOFError, OSError):
                raise
            except Exception as err:  # an unpicklable result or exception
                connection.send((False, FigureProcessLost(f"cannot return the drawing: {err!r}")))
        except (EOFError, OSError):  # the owner is gone
            return


def _resolve(fn: Callable[..., Any] | str) -> Callable[..., Any]:
    if not isinstance(fn, str):
        return fn
    import importlib

    module, _, name = fn.partition(":")
    return getattr(importlib.import_module(module), name)


def cores_available() -> float:
    """Cores this process may use: its affinity mask, capped by a cgroup CPU quota.

    A container limited to one CPU (``docker --cpus=1``, a Kubernetes limit) still shows
    every core of the machine in its affinity mask; its quota (cgroup v2 ``cpu.max``, v1
    ``cpu.cfs_quota_us / cpu.cfs_period_us``, the smallest along the group's path) is the
    real limit.

    Returns
    -------
    float
        The number of cores (a fraction under a fractional quota).
    """
    try:
        cores: float = len(os.sched_getaffinity(0))
    except AttributeError:  # (not on every platform)
        cores = os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    return cores if quota is None else min(cores, quota)


def _cgroup_cpu_quota(root: Path = Path("/sys/fs/cgroup"),
                      membership: Path = Path("/proc/self/cgroup")) -> float | None:
    """The CPU quota of this process's cgroup in cores, or None (none, or not Linux)."""
    try:
        lines = membership.read_text().splitlines()
    except OSError:
        return None
    quotas = []
    for line in lines:
        _, controllers, group = line.split(":", 2)
        if controllers == "":  # cgroup v2: "0::/path", cpu.max is "max 100000" or "50000 100000"
            folders, name = [root], "cpu.max"
        elif "cpu" in controllers.split(","):  # v1: cpu.cfs_quota_us is -1 without a quota
            folders, name = [root / "cpu", root / "cpu,cpuacct"], "cpu.cfs_quota_us"
        else:
            continue
        parts = Path(group.lstrip("/")).parts
        for base in folders:
            for depth in range(len(parts) + 1):  # the group and each group above it
                folder = base.joinpath(*parts[:depth])
                try:
                    if name == "cpu.max":
                        quota, period = (folder / name).read_text().split()[:2]
                    else:
                        quota = (folder / name).read_text().strip()
                        period = (folder / "cpu.cfs_period_us").read_text().strip()
                    if quota not in ("max", "-1") and float(period) > 0:
                        quotas.append(float(quota) / float(period))
                except (OSError, ValueError):
                    continue
    return min(quotas) if quotas else None


def spare_cores(loadavg: Path = Path("/proc/loadavg")) -> float:
    """Cores idle at this moment besides this process's own: :func:`cores_available` less
    the tasks running now, this one included.

    On Linux the running tasks are counted at this instant (``/proc/loadavg``'s
    ``running/total`` field), so that the runs of one command one after the other do not
    hold each other back, as they would through the load average, which remembers the last
    minute; elsewhere the 1-minute load average (0 where there is none) stands in.

    Parameters
    ----------
    loadavg : Path
        The kernel's load file (a parameter for tests).

    Returns
    -------
    float
        Negative on a machine with more running tasks than cores.
    """
    try:
        running = float(loadavg.read_text().split()[3].split("/")[0])
    except (OSError, IndexError, ValueError):
        try:
            running = os.getloadavg()[0]
        except (AttributeError, OSError):  # (not on every platform)
            running = 0.0
    return cores_available() - max(running, 1.0)


_SHARED: FigureProcess | None = None


def start_shared(preload: Sequence[str] = PLOTTING_STACK) -> FigureProcess | None:
    """Start this interpreter's figure process (the console script does, for ``advdyn run``).

    Parameters
    ----------
    preload : sequence of str
        As for :class:`FigureProcess`.

    Returns
    -------
    FigureProcess or None
        The process, or None if it could not be started (the command then draws itself).
    """
    global _SHARED
    close_shared()
    try:
        _SHARED = FigureProcess(preload)
    except FigureProcessLost as err:
        _log.debug("%s", err)
    return _SHARED


def shared() -> FigureProcess | None:
    """This interpreter's figure process, if :func:`start_shared` started one.

    Returns
    -------
    FigureProcess or None
    """
    return _SHARED


def close_shared() -> None:
    """End this interpreter's figure process, if any."""
    global _SHARED
    if _SHARED is not None:
        _SHARED.close()
        _SHARED = None
