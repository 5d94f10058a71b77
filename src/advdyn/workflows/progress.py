"""A rich progress bar on standard error, or a no-op when disabled."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def _bar() -> Progress:
    """A rich progress bar on standard error: label, bar, count, elapsed and remaining time."""
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    return Progress(*columns, console=Console(file=sys.stderr), transient=False)


@contextmanager
def progress_bar(description: str, total: int, enabled: bool = True) -> Iterator[Callable]:
    """Yield ``advance(n)``; draws a bar of ``total`` units while the block runs.

    Parameters
    ----------
    description : str
        Label shown before the bar.
    total : int
        Number of units for a full bar.
    enabled : bool
        If false, nothing is drawn and ``advance`` does nothing.

    Yields
    ------
    callable
        ``advance(n)``: move the bar forward by ``n`` units.
    """
    if not enabled:
        yield lambda n: None
        return
    with _bar() as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)


@contextmanager
def progress_callback(
    description: str, enabled: bool = True
) -> Iterator[Callable[[int, int], None] | None]:
    """Yield a ``progress(advance, total)`` callback for the solvers, or ``None`` if disabled.

    The solvers in [`advdyn.simulate`][advdyn.simulate] report progress through such a callback
    instead of
    importing a progress bar; this adapts it to a rich bar whose length is the ``total`` of
    the first call.

    Parameters
    ----------
    description : str
        Label shown before the bar.
    enabled : bool
        If false, yields ``None`` (the solver then reports nothing).

    Yields
    ------
    callable or None
        ``progress(advance, total)``.
    """
    if not enabled:
        yield None
        return
    with _bar() as bar:
        task = bar.add_task(description, total=None)

        def report(advance: int, total: int) -> None:
            bar.update(task, total=total, advance=advance)

        yield report


@contextmanager
def progress_phase(description: str, enabled: bool = True) -> Iterator[None]:
    """Show a spinner with the elapsed time while a phase without steps to count runs.

    For phases whose solver reports no progress (an adaptive ODE solve, a root find,
    compilation): the user sees what runs and for how long. The line stays after the
    phase, with its total time.

    Parameters
    ----------
    description : str
        Label of the phase.
    enabled : bool
        If false, nothing is drawn.

    Yields
    ------
    None
    """
    if not enabled:
        yield
        return
    console = Console(file=sys.stderr)
    columns = (SpinnerColumn(finished_text="done"), TextColumn("[bold]{task.description}"),
               TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(description, total=1)
        yield
        bar.update(task, completed=1)
