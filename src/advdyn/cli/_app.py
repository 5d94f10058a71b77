"""Shared pieces of the command-line interface: the typer app, consoles, exit codes.

Every ``advdyn`` subcommand lives in one module of this package and registers itself on
`app` when imported; `advdyn.cli` imports them all.
"""

from __future__ import annotations

import contextlib
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    help=(
        "The learning dynamics of adversarial training: exact high-dimensional dynamics of "
        "l2-adversarial streaming SGD (run, limit, monotone, figure, sweep), the critical "
        "attack strength eps* (critical-eps, critical-linear, critical-exact), SGD's "
        "posterior covariance and PAC-Bayes (posterior), continuous-time approximations "
        "(sme)."
    ),
    # markdown: a docstring's paragraph is one paragraph in --help (no hard line breaks)
    rich_markup_mode="markdown",
)
err_console = Console(stderr=True)
out_console = Console()

EXIT_USER_ERROR = 2
EXIT_DIVERGED = 3

#: a command's optional config file argument
ConfigArgument = Annotated[
    Path | None, typer.Argument(help="TOML config; the embedded default when omitted.")
]


def fail(message: str, code: int = EXIT_USER_ERROR) -> typer.Exit:
    """Print ``error: message`` on standard error and return the ``typer.Exit`` to raise.

    Parameters
    ----------
    message : str
        One line naming what is wrong (rich markup is escaped).
    code : int
        Process exit status (2 for user errors, 3 for divergence).

    Returns
    -------
    typer.Exit
        Raise it (``raise fail(...) from None``) so that no traceback is shown.
    """
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _folder(value) -> object:
    from advdyn import checks
    from advdyn.errors import ConfigError

    try:
        return checks.output_folder(value, "--out")
    except ConfigError as err:
        raise typer.BadParameter(err.message) from None


def out_option(help: str = "Result folder.") -> typing.Any:
    """The ``--out``/``-o`` option of a command that writes a result folder.

    Parsed by `advdyn.checks.output_folder`: an empty path or an existing file is a
    usage error (exit 2) before the command starts. The command then holds the folder
    with [`advdyn.io.folder_lock`][advdyn.io.folder_lock] before it computes.

    Parameters
    ----------
    help : str
        The option's help text.

    Returns
    -------
    typer option information (the default of ``Annotated[Path, out_option()]``).
    """
    return typer.Option("--out", "-o", help=help, parser=_folder)


def interrupted(*_: object) -> typing.NoReturn:
    """End the process at once after Ctrl-C: one line on standard error, exit status 130.

    The command line's SIGINT handler (`handle_interrupts`). Unfinished writes are
    removed first (`advdyn.io.files.abandon`: temporary files, a result folder this
    process created and left empty); finished result files stay, and the folder's lock
    goes with the process. The process then ends with `os._exit`, without unwinding
    and without the interpreter's finalisation: a ``KeyboardInterrupt`` raised while
    JAX traces, compiles or dispatches (or finalisation under XLA's running threads)
    crashed ``advdyn sme`` (segmentation fault, ``pure virtual method called``)
    instead of exiting 130.
    """
    import os
    import sys

    try:
        from advdyn.io.files import abandon

        abandon()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        show_cursor = "\x1b[?25h" if os.isatty(2) else ""  # a progress bar may hide it
        os.write(2, f"{show_cursor}\ninterrupted\n".encode() if show_cursor
                 else b"interrupted\n")
    finally:
        os._exit(130)


def handle_interrupts() -> None:
    """Make Ctrl-C (SIGINT) end the process with `interrupted`.

    Only where SIGINT has Python's default handler: a process started with SIGINT
    ignored (a background job) keeps ignoring it. Call from the main thread, before
    helper processes start.
    """
    import signal
    import sys

    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, interrupted)
    # multiprocessing's resource tracker (started later, e.g. by a sweep's Dask workers)
    # takes this process's -W options: a process ended by Ctrl-C did not release its
    # semaphores, and the tracker's warning about it is not the user's concern
    sys.warnoptions.append("ignore:resource_tracker:UserWarning")


def solver_stopped(err: BaseException) -> str | None:
    """The one-line message for a solver that ran out of steps, or ``None`` for another error.

    Diffrax raises (through equinox) a runtime error when ``max_steps`` is reached; that is
    neither a divergence of the dynamics nor a learning-rate problem, but a horizon too long
    for the solver's step budget. (Where the workflows read a solver's result code instead,
    this is where the command line says what it means.)

    Parameters
    ----------
    err : BaseException

    Returns
    -------
    str or None
    """
    if isinstance(err, RuntimeError) and "maximum number of solver steps" in str(err):
        return ("a solver stopped before its horizon: its step budget (max_steps) ran out; "
                "shorten the part's t_max (not a divergence, not a learning-rate problem)")
    return None


def print_default(name: str) -> None:
    """Write the embedded default config ``advdyn/defaults/<name>`` to standard output.

    Parameters
    ----------
    name : str
        File name under ``advdyn/defaults``.

    Raises
    ------
    typer.Exit
        Status 2 with one line when standard output cannot be written (a full disk, a
        closed pipe).
    """
    import os
    import sys
    from importlib import resources

    text = resources.files("advdyn").joinpath(f"defaults/{name}").read_text()
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except OSError as err:
        # what is still buffered cannot be written either: drop it, so that the
        # interpreter's exit does not try again (and print a traceback)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        raise fail(f"cannot write the config to standard output: {err.strerror or err}") from None


def renamed_option(old: str, old_value, new: str, new_value):
    """The value of a renamed command-line option: ``new_value``, or ``old_value`` after a
    ``DeprecationWarning`` (one ``warning:`` line under `advdyn.cli.main`) when only the
    old option was given.

    Parameters
    ----------
    old, new : str
        The old and the new option (``"--paths"``, ``"--replicates"``).
    old_value, new_value : object or None
        What was given for each (``None``: not given).

    Returns
    -------
    object or None

    Raises
    ------
    typer.Exit
        Status 2 with one line when both options were given.
    """
    import warnings

    from advdyn.deprecation import REMOVED_IN

    if old_value is None:
        return new_value
    if new_value is not None:
        raise fail(f"{old} is the deprecated name of {new}: give only {new}")
    warnings.warn(f"option {old} is deprecated and will be removed in advdyn {REMOVED_IN}: "
                  f"use {new}", DeprecationWarning, stacklevel=2)
    return old_value


def load_with_overrides(config, overrides: dict, load=None, default=None):
    """The config file (or the embedded default) with the CLI's overrides applied.

    Parameters
    ----------
    config : Path or None
        TOML file; the embedded default when ``None``.
    overrides : dict
        Dotted config fields to values; ``None`` values (options not given) are skipped.
    load, default : callable, optional
        The command's ``load(path)`` and ``default()`` (e.g.
        [`load_sme_config`][advdyn.config.sme.load_sme_config]); ``advdyn run``'s
        [`load_config`][advdyn.config.load_config] and
        [`default_config`][advdyn.config.default_config] when omitted.

    Returns
    -------
    Config or CommandConfig
        What ``load`` or ``default`` returns.

    Raises
    ------
    ConfigError
        For a missing or invalid file or an invalid override (naming the field).
    """
    if load is None or default is None:
        from advdyn.config.schema import default_config, load_config

        load, default = load or load_config, default or default_config
    cfg = load(config) if config is not None else default()
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return cfg.with_overrides(**overrides) if overrides else cfg


@contextlib.contextmanager
def command_errors(out: Path | None = None, *, value_errors: bool = False) -> Iterator[None]:
    """Say what stops a command as one ``error:`` line and exit with its status.

    Parameters
    ----------
    out : Path, optional
        The result folder, named when it cannot be written.
    value_errors : bool
        Also take any ``ValueError`` as a user error (``invalid config: ...``): for the
        commands whose configs reach libraries that check values themselves.

    Raises
    ------
    typer.Exit
        Status 2 for a `ConfigError`, an ``OSError`` (`os_error_line`) and, with
        ``value_errors``, a ``ValueError``; status 3 for a `DivergenceError`, a
        ``FloatingPointError`` and a solver out of steps (`solver_stopped`). Any other
        exception propagates.
    """
    from advdyn.errors import ConfigError, DivergenceError

    try:
        yield
    except ConfigError as err:
        raise fail(str(err), EXIT_USER_ERROR) from None
    except ValueError as err:
        if not value_errors:
            raise
        raise fail(f"invalid config: {err}", EXIT_USER_ERROR) from None
    except (DivergenceError, FloatingPointError) as err:
        raise fail(str(err), EXIT_DIVERGED) from None
    except OSError as err:
        raise fail(os_error_line(err, out), EXIT_USER_ERROR) from None
    except RuntimeError as err:  # (typer.Exit is one: raised again as it is)
        message = solver_stopped(err)
        if message is None:
            raise
        raise fail(message, EXIT_DIVERGED) from None


def os_error_line(err: OSError, out: Path | None = None) -> str:
    """What an ``OSError`` says to a command's user, by the file it names: ``cannot write
    results to <out>: <reason>`` for a file in the result folder ``out``, ``<file>:
    <reason>`` for any other (an input, a cache), ``file system error: <reason>`` when it
    names none."""
    import os

    reason = err.strerror or str(err)
    if err.filename is None:
        return f"file system error: {reason}"
    path = Path(os.fsdecode(err.filename))
    full, folder = path.absolute(), Path(out).absolute() if out is not None else None
    if folder is not None and (full == folder or folder in full.parents):
        return f"cannot write results to {out}: {reason}"
    return f"{path}: {reason}"


def _version(value: bool):
    if value:
        from advdyn._version import __version__

        out_console.print(f"advdyn {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show version.")
    ] = False,
):
    """advdyn: ODE, SGD and theory for adversarial training of linear models."""


def titled_table(title: str, **kwargs):
    """A rich table at least as wide as its title, so the title never wraps mid-phrase.

    Parameters
    ----------
    title : str
        Table title.
    **kwargs
        Passed to `rich.table.Table`.

    Returns
    -------
    rich.table.Table
    """
    from rich.table import Table

    return Table(title=title, min_width=len(title) + 4, **kwargs)
