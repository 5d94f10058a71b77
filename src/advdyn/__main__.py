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

For ``advdyn run`` it first starts a second interpreter that imports matplotlib while
this one imports JAX, and draws the run's figure (:mod:`advdyn.plot.process`): with a core
to spare a warm run no longer waits for matplotlib (about 0.3 s). It is skipped when less
than half a core is idle besides this process's (:data:`SPARE_CORES_NEEDED`: one core, a
one-core quota, another busy process on two cores) unless ``ADVDYN_FIGURE_PROCESS=1``,
with ``ADVDYN_FIGURE_PROCESS=0``, and for ``--help``; if it fails, the run draws the
figure itself.
"""

from __future__ import annotations

import gc
import os
import sys

#: with ``ADVDYN_FIGURE_PROCESS`` unset (or ``auto``), the console script starts the figure
#: process for ``advdyn run`` when at least this many cores are idle besides its own
#: (:func:`advdyn.plot.process.spare_cores`: the cores it may use, a cgroup quota included,
#: less the tasks running at start); ``1`` starts it on any machine, ``0`` never
SPARE_CORES_NEEDED = 0.5


def main() -> None:
    """Run the command line (console-script entry point)."""
    gc.disable()
    figures = False
    try:
        figures = _starts_figure_process(sys.argv[1:])
        if figures:
            from advdyn.plot.process import start_shared

            start_shared()
        from advdyn import cli

        cli.configure()
        gc.freeze()
        gc.enable()
        cli.dispatch()
    except KeyboardInterrupt:  # Ctrl-C while the stack loads (the commands handle their own)
        # one line, and no interpreter finalisation under threads the imports may have
        # started (as advdyn.cli.interrupted; the figure process ends with its pipe)
        sys.stderr.write("interrupted\n")
        sys.stderr.flush()
        os._exit(130)
    finally:
        if figures:
            from advdyn.plot.process import close_shared

            close_shared()
        gc.enable()
        gc.freeze()


def _starts_figure_process(argv: list[str]) -> bool:
    """Whether a second process should draw this command line's figure.

    For ``advdyn run`` (not its ``--help``), as ``ADVDYN_FIGURE_PROCESS`` says: ``0``
    never, ``1`` always, unset or ``auto`` where a core is (about) idle (under a one-core
    quota or beside other busy processes, a second interpreter costs more than it saves).
    And only where the main module is one a ``spawn`` process may import again: this module
    (``python -m advdyn``), the console script, or none (``python -c``); a script of the
    user's that calls :func:`main` without a ``__main__`` guard would run again there.
    """
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    path = getattr(main, "__file__", None)
    safe = (spec.name == "advdyn.__main__" if spec is not None
            else path is None or os.path.basename(path) in ("advdyn", "advdyn-script.py"))
    setting = os.environ.get("ADVDYN_FIGURE_PROCESS", "auto").strip().lower()
    if not (safe and argv[:1] == ["run"] and not {"-h", "--help"} & set(argv)):
        return False
    if setting in ("0", "1"):
        return setting == "1"
    from advdyn.plot.process import spare_cores

    return spare_cores() >= SPARE_CORES_NEEDED


if __name__ == "__main__":
    main()
