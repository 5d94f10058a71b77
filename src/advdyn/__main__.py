"""The ``advdyn`` console script and ``python -m advdyn``: the command line in its own process.

`main` is `advdyn.cli.main` with a garbage-collector policy for a short-lived
process: the collector is off while start-up imports the stack, start-up's objects are
then frozen (`gc.freeze`) and the command collects as usual; what is alive at exit is
frozen too. Why: ``advdyn/cli/README.md``.

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
