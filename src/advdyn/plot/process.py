"""A second Python interpreter that draws figures: matplotlib's start-up off the critical path.

A short command such as ``advdyn run --method ode`` with a warm compilation cache spends
most of its time importing libraries, one after the other on one core. Matplotlib (with
the xarray a figure reads) is a third of that, and the figure itself is needed only at
the end. :class:`FigureProcess` starts a second interpreter at once (``spawn``: a fresh
process, safe whatever threads this one runs later) which imports the plotting stack on
the other core while this one imports JAX and computes; the command then sends it the
drawing (a picklable function and its arguments, e.g. :func:`advdyn.plot.risk.save_quantities`)
and writes its other files while the figure is drawn.

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
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from multiprocessing.connection import Connection
from typing import Any

__all__ = [
    "PLOTTING_STACK",
    "FigureProcess",
    "FigureProcessLost",
    "PendingResult",
    "close_shared",
    "cores_available",
    "shared",
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

    def result(self) -> Any:
        """Wait for the drawing and return what the function returned.

        Returns
        -------
        object
            The function's return value.

        Raises
        ------
        FigureProcessLost
            If the process died or its answer could not be read.
        Exception
            Whatever the function raised, re-raised here.
        """
        with self._owner._lock:
            if self._outcome is None:
                self._outcome = self._owner._receive()
        ok, value = self._outcome
        if ok:
            return value
        raise value


class FigureProcess:
    """A spawned interpreter that imports ``preload`` at once, then runs drawings on request.

    One drawing at a time: :meth:`submit` sends one (after the answer to the one before,
    so that threads sharing the process take turns), :meth:`PendingResult.result` waits for
    it. Use as a context manager, or
    call :meth:`close`. As with every ``spawn`` process, the second interpreter imports the
    main module of this one (a script's code must sit under ``if __name__ == "__main__":``).

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
            with _sigint_ignored():  # inherited: Ctrl-C never interrupts its start-up either
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

    def _receive(self) -> tuple[bool, Any]:
        try:
            return self._connection.recv()
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
        self._process.join(timeout=5)

    def __enter__(self) -> FigureProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextmanager
def _sigint_ignored() -> Iterator[None]:
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


def cores_available() -> int:
    """Cores this process may run on (the affinity mask where the platform has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # (not on every platform)
        return os.cpu_count() or 1


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
