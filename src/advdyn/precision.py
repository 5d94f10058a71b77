"""Float64 for the theory without touching the user's process-wide JAX settings.

The deterministic-equivalent ODE, the statistics and the fixed points need float64, which
JAX only provides while ``jax_enable_x64`` is on. Importing advdyn changes no global state:
every public theory entry point (:func:`~advdyn.theory.solve_ode`,
:func:`~advdyn.theory.adversarial_optimum`, the simulators, ...) is wrapped in
:func:`float64`, which turns x64 on for the duration of the call only (JAX's thread-local
``jax.enable_x64`` context). Constructors keep their parameters as NumPy float64 arrays, so
nothing is truncated before a solver runs.

Users who call the low-level building blocks (e.g. :func:`advdyn.theory.statistics`)
directly can either wrap their code in ``with advdyn.precision.x64():`` or make the one
documented, explicit, process-wide call :func:`enable_x64`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

import jax

P = ParamSpec("P")
R = TypeVar("R")


@contextmanager
def x64() -> Iterator[None]:
    """Context in which JAX computes in float64 (restores the previous setting on exit).

    Yields
    ------
    None
    """
    with jax.enable_x64(True):
        yield


def float64(fn: Callable[P, R]) -> Callable[P, R]:
    """Decorator: run ``fn`` with JAX's float64 enabled (see :func:`x64`).

    Parameters
    ----------
    fn : callable
        A public entry point of the theory or the simulators.

    Returns
    -------
    callable
        ``fn`` with the same signature and docstring.
    """

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with jax.enable_x64(True):
            return fn(*args, **kwargs)

    return wrapper


def enable_x64() -> None:
    """Turn on JAX's float64 for the whole process (the one explicit, global switch).

    Only needed to call advdyn's low-level functions outside its entry points; the entry
    points enable float64 for their own duration anyway.
    """
    jax.config.update("jax_enable_x64", True)
