"""Shared pieces of the command-line interface: the typer app, consoles, exit codes.

Every ``advdyn`` subcommand lives in one module of this package and registers itself on
:data:`app` when imported; :mod:`advdyn.cli` imports them all.
"""

from __future__ import annotations

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
        "attack strength eps* (critical-eps, critical-linear), SGD's posterior covariance "
        "and PAC-Bayes (posterior), continuous-time approximations (sme)."
    ),
    # markdown: a docstring's paragraph is one paragraph in --help (no hard line breaks)
    rich_markup_mode="markdown",
)
err_console = Console(stderr=True)
out_console = Console()

EXIT_USER_ERROR = 2
EXIT_DIVERGED = 3


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


def load_with_overrides(config, overrides: dict):
    """The config file (or the embedded default) with the CLI's overrides applied.

    Parameters
    ----------
    config : Path or None
        TOML file; the embedded default when ``None``.
    overrides : dict
        Dotted config fields to values; ``None`` values (options not given) are skipped.

    Returns
    -------
    advdyn.config.Config

    Raises
    ------
    ConfigError
        For a missing or invalid file or an invalid override (naming the field).
    """
    from advdyn.config.schema import default_config, load_config

    cfg = load_config(config) if config is not None else default_config()
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return cfg.with_overrides(**overrides) if overrides else cfg


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
        Passed to :class:`rich.table.Table`.

    Returns
    -------
    rich.table.Table
    """
    from rich.table import Table

    return Table(title=title, min_width=len(title) + 4, **kwargs)
