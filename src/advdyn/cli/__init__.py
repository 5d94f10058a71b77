"""Command-line interface ``advdyn``.

User errors (bad config, missing file, invalid option) exit with code 2 and one line on
standard error naming the field; a diverging run exits with code 3 and names the time and
the learning rate. No traceback is shown for either. Each subcommand lives in one module of
this package (``run``: ``advdyn run`` and ``advdyn default-config``).
"""

from __future__ import annotations

import re
import sys
import warnings

import typer
from rich.markup import escape

from advdyn.cli import critical as _critical  # noqa: F401  (registers its commands)
from advdyn.cli import phase as _phase  # noqa: F401  (registers its commands)
from advdyn.cli import posterior as _posterior  # noqa: F401  (registers its commands)
from advdyn.cli import run as _run  # noqa: F401  (registers its commands)
from advdyn.cli import sme as _sme  # noqa: F401  (registers its commands)
from advdyn.cli import sweep as _sweep  # noqa: F401  (registers its commands)
from advdyn.cli import theory as _theory  # noqa: F401  (registers its commands)
from advdyn.cli._app import (
    EXIT_DIVERGED,
    EXIT_USER_ERROR,
    app,
    err_console,
    fail,
    handle_interrupts,
    interrupted,
)

__all__ = ["EXIT_DIVERGED", "EXIT_USER_ERROR", "app", "configure", "dispatch", "fail",
           "handle_interrupts", "interrupted", "main", "show_deprecations"]


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    # numerical warnings (e.g. an inaccurate fixed point) as one line, not Python's format
    err_console.print(f"[yellow]warning:[/] {escape(str(message))}", highlight=False,
                      soft_wrap=True)


def show_deprecations() -> None:
    """Show advdyn's own deprecation warnings (an old config key or option, an old name),
    which Python hides by default outside ``__main__``: a command's user should see them."""
    from advdyn.deprecation import REMOVED_IN

    warnings.filterwarnings("default", f".*will be removed in advdyn {re.escape(REMOVED_IN)}",
                            DeprecationWarning)


def _configure_runtime() -> None:
    """Before JAX starts: one XLA CPU device per core (the simulators split replicates over
    them, `advdyn.simulate.sgd`) unless ``XLA_FLAGS`` already says otherwise, the
    persistent compilation cache (`advdyn.workflows.cache`) and, in it, the solvers'
    program store (`advdyn.cli._programs`)."""
    import os

    flags = os.environ.get("XLA_FLAGS", "")
    if "jax" not in sys.modules and "xla_force_host_platform_device_count" not in flags:
        n = max(1, min(os.cpu_count() or 1, 8))
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={n}".strip()
    from advdyn.workflows.cache import enable_compilation_cache

    folder = enable_compilation_cache()
    if folder is not None:  # the solvers' exported programs beside it (advdyn.cli._programs)
        from advdyn.cli._programs import ExecutableFolder, install

        install(ExecutableFolder(folder / "executables"))


def configure() -> None:
    """Set up the process for a command: one-line warnings, XLA's devices, the caches.

    This imports the numerical stack (JAX, xarray, matplotlib through the workflows).
    """
    warnings.showwarning = _show_warning
    show_deprecations()
    _configure_runtime()


def dispatch() -> None:
    """Run the command named on the command line; exit with its status (`sys.exit`).

    Ctrl-C ends the command at once with status 130 and one line (`interrupted`).
    """
    handle_interrupts()
    try:
        # with standalone_mode=False, typer/click *return* the code of a typer.Exit raised
        # inside a command instead of raising it: propagate it as the process exit status.
        rv = app(standalone_mode=False, prog_name="advdyn")
        sys.exit(rv if isinstance(rv, int) else 0)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:  # click usage errors and aborts
        # recent typer versions vendor click (typer._click) instead of depending on it: look the
        # base class up through typer rather than importing click.
        click_exception = next(
            c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"
        )
        if isinstance(exc, click_exception):
            # one line like every user error (click's own form adds a usage block)
            ctx = getattr(exc, "ctx", None)
            hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
            fail(exc.format_message() + hint)  # type: ignore[attr-defined]  # (found at run time)
            sys.exit(EXIT_USER_ERROR)
        if isinstance(exc, typer.Abort):  # click's form of a KeyboardInterrupt
            interrupted()
        raise
    except KeyboardInterrupt:  # (outside click's own handling)
        interrupted()


def main() -> None:
    """Entry point: `configure`, then `dispatch` (the console script adds a
    garbage-collector policy for short-lived processes, `advdyn.__main__`)."""
    configure()
    dispatch()
