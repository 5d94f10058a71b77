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

__all__ = ["EXIT_DIVERGED", "EXIT_USER_ERROR", "LOOP_KERNEL_COMMANDS", "LOOP_KERNEL_OPTION",
           "app", "configure", "dispatch", "fail", "handle_interrupts", "interrupted", "main",
           "show_deprecations", "xla_flags"]


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


#: commands whose work is many small adaptive ODE solves (``phase``:
#: `advdyn.workflows.phase`), which XLA's CPU runtime runs faster when each while loop is
#: compiled into one kernel (measured: ``docs/benchmarks.md``, "Phase diagram as one
#: batched solve"); other commands compile as XLA chooses
LOOP_KERNEL_COMMANDS = frozenset({"phase"})
#: the XLA backend option that compiles while loops accessing fewer bytes than this into one
#: kernel (XLA's default: 1 kB), for `LOOP_KERNEL_COMMANDS`
_LOOP_THRESHOLD = "xla_cpu_small_while_loop_byte_threshold"
LOOP_KERNEL_OPTION = f"{_LOOP_THRESHOLD}=1000000000"


def xla_flags(command: str | None, flags: str = "") -> str:
    """``XLA_FLAGS`` for running ``command``: ``flags`` with one XLA CPU device per core
    (the simulators split replicates over them, `advdyn.simulate.sgd`) and, for
    `LOOP_KERNEL_COMMANDS` on a jaxlib whose CPU runtime has the option (0.7 on),
    `LOOP_KERNEL_OPTION`; a device count or loop threshold ``flags`` already sets is kept.

    Parameters
    ----------
    command : str or None
        The subcommand's name (``"run"``, ``"phase"``, ...).
    flags : str
        ``XLA_FLAGS`` as the environment gives it.

    Returns
    -------
    str
    """
    import importlib.metadata
    import os

    parts = [flags] if flags else []
    if "xla_force_host_platform_device_count" not in flags:
        devices = max(1, min(os.cpu_count() or 1, 8))
        parts.append(f"--xla_force_host_platform_device_count={devices}")
    # (XLA merges repeated --xla_backend_extra_options: one the environment gives for
    # another option is kept beside this one)
    if command in LOOP_KERNEL_COMMANDS and _LOOP_THRESHOLD not in flags:
        try:
            version = importlib.metadata.version("jaxlib")
        except importlib.metadata.PackageNotFoundError:
            version = "0"
        if tuple(int(p) for p in re.findall(r"\d+", version)[:2]) >= (0, 7):
            parts.append(f"--xla_backend_extra_options={LOOP_KERNEL_OPTION}")
    return " ".join(parts)


def _configure_runtime() -> None:
    """Before JAX starts: ``XLA_FLAGS`` for the command on the command line (`xla_flags`),
    the persistent compilation cache (`advdyn.workflows.cache`) and, in it, the solvers'
    program store (`advdyn.cli._programs`)."""
    import os

    if "jax" not in sys.modules:
        command = next((a for a in sys.argv[1:] if not a.startswith("-")), None)
        os.environ["XLA_FLAGS"] = xla_flags(command, os.environ.get("XLA_FLAGS", "").strip())
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
