"""JAX's persistent compilation cache for advdyn's command line (and opt-in for the API).

Compiling the solvers takes seconds; the result is the same every run. The command line
turns on JAX's persistent compilation cache in a user cache folder, so that only the first
run of a problem shape compiles:

* folder: ``$ADVDYN_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/advdyn/jax`` (by default
  ``~/.cache/advdyn/jax``), one subfolder per JAX version;
* off: ``ADVDYN_NO_CACHE=1`` (any value but ``""`` and ``"0"``).

Beside it, in ``executables/``, the command line keeps the exported programs (``jax.export``
StableHLO) of advdyn's solvers (the ODE, the adversarial optimum), so that a rerun skips
their tracing and lowering too, not only XLA's compilation (`advdyn.cli._programs`,
under the same switch).

The solvers are written so that the cache can store them: no host callbacks on the default
path (errors are returned as values, [`advdyn.theory.solve_ode`][advdyn.theory.solve_ode]), and
tolerances, times,
rates and sizes that only scale are traced arrays, so that a new value reuses the compiled
program. Python users can call `enable_compilation_cache` themselves.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

# cache every compilation: a warm run reads even the small ones (5-40 ms to compile, a few
# ms to read back) from the cache
_MIN_COMPILE_S = 0.0
_ACTIVE: Path | None = None  # the folder enable_compilation_cache turned on


def cache_dir() -> Path | None:
    """The cache folder, or ``None`` when ``ADVDYN_NO_CACHE`` turns the cache off.

    Returns
    -------
    Path or None
    """
    if os.environ.get("ADVDYN_NO_CACHE", "") not in ("", "0"):
        return None
    root = os.environ.get("ADVDYN_CACHE_DIR")
    if not root:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(base, "advdyn", "jax")
    import jax

    return Path(root) / f"jax-{jax.__version__}"


def enable_compilation_cache() -> Path | None:
    """Turn on JAX's persistent compilation cache in `cache_dir`.

    Returns
    -------
    Path or None
        The folder, or ``None`` when the cache is off, or when the folder cannot be
        created or written (a ``RuntimeWarning`` says so).
    """
    global _ACTIVE
    folder = cache_dir()
    if folder is None:
        return None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".probe.", dir=folder)  # writable?
        os.close(fd)
        os.unlink(probe)
    except OSError as err:  # a file, a read-only folder, ...: say so (runs stay correct)
        warnings.warn(
            f"the compilation cache is off: cannot write {folder} ({err.strerror or err}); "
            "set ADVDYN_CACHE_DIR to a writable folder (or ADVDYN_NO_CACHE=1)",
            RuntimeWarning, stacklevel=2)
        return None
    import jax

    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", _MIN_COMPILE_S)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    _ACTIVE = folder
    return folder


def active_cache_dir() -> Path | None:
    """The folder `enable_compilation_cache` turned on in this process, or ``None``
    (not called, the cache off, or its folder not writable).

    Returns
    -------
    Path or None
    """
    return _ACTIVE


def is_cold(folder: Path | None) -> bool:
    """Whether a run will compile from scratch (no cache, or an empty cache folder).

    Parameters
    ----------
    folder : Path or None

    Returns
    -------
    bool
    """
    return folder is None or not any(folder.iterdir())
