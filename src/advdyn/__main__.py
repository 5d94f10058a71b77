"""The ``advdyn`` console script and ``python -m advdyn``: the command line in its own process.

`main` is `advdyn.cli.main` with a garbage-collector policy for a short-lived
process. Start-up creates several hundred thousand container objects that live until the
process ends (the modules of JAX, xarray, pandas and pydantic's schemas, with everything
they hold), and Python's collector walks all of them on each full collection. So the
collector is off during start-up, the objects start-up made are then frozen
(`gc.freeze`: kept out of later collections, never freed by them) and collection
resumes for the command, which creates and frees its own objects as usual; the objects
alive at exit are frozen too, so that the interpreter's final collections skip them (the
process is ending; files are closed by then).

This module belongs to the command line (only the console script runs it); no other
module of advdyn imports it.
"""

from __future__ import annotations

import gc
import os
import sys


def main() -> None:
    """Run the command line (console-script entry point)."""
    gc.disable()
    try:
        from advdyn import cli

        cli.configure()
        gc.freeze()
        gc.enable()
        cli.dispatch()
    except KeyboardInterrupt:  # Ctrl-C while the stack loads (the commands handle their own)
        # one line, and no interpreter finalisation under threads the imports may have
        # started (as advdyn.cli.interrupted)
        sys.stderr.write("interrupted\n")
        sys.stderr.flush()
        os._exit(130)
    finally:
        gc.enable()
        gc.freeze()


if __name__ == "__main__":
    main()
