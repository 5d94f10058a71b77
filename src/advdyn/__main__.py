"""The ``advdyn`` console script and ``python -m advdyn``: the command line in its own process.

:func:`main` is :func:`advdyn.cli.main` with a garbage-collector policy for a short-lived
process. Start-up creates about 350,000 container objects that live until the process ends
(the modules of JAX, xarray, pandas, matplotlib and pydantic's schemas, with everything
they hold), and Python's collector walks all of them on each full collection: a full
collection took 0.12 s after a run, and the collections during start-up and at interpreter
exit cost about 0.9 s of a 3 s
``advdyn run --method ode``. So the collector is off during start-up, the objects start-up
made are then frozen (:func:`gc.freeze`: kept out of later collections, never freed by them)
and collection resumes for the command, which creates and frees its own objects as usual;
the objects alive at exit are frozen too, so that the interpreter's final collections skip
them (the process is ending; files are closed by then).
"""

from __future__ import annotations

import gc


def main() -> None:
    """Run the command line (console-script entry point)."""
    gc.disable()
    try:
        from advdyn import cli

        cli.configure()
        gc.freeze()
        gc.enable()
        cli.dispatch()
    finally:
        gc.enable()
        gc.freeze()


if __name__ == "__main__":
    main()
