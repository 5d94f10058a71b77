"""Float64 for the theory without touching the user's process-wide JAX settings.

The deterministic-equivalent ODE, the statistics, the fixed points, the posterior
covariances and bounds and the SMEs need float64, which JAX only provides while
``jax_enable_x64`` is on. Importing advdyn changes no global state; one mechanism gives
float64 whatever the caller's settings:

- [`float64`][advdyn.precision.float64], the decorator on every public entry point of the theory
rooms
  (``problem``, ``theory``, ``simulate``, ``posterior``, ``sme``, ``critical``'s linear
  and exact theory): it turns x64 on for the duration of the call only (JAX's thread-local
  ``jax.enable_x64`` context) and casts the call's floating inputs to float64 at the
  boundary, leaf by leaf through pytrees (arrays, instances, learning rates), so a float32
  JAX array given by a caller whose x64 is off is computed on in float64 (its float32
  value, widened exactly) instead of truncating the computation or failing inside a solver;
- [`as_float64`][advdyn.precision.as_float64], the one converter for parameters stored by
constructors (equinox
  fields): NumPy float64 when x64 is off (kept exactly until a solver runs), a float64 JAX
  array when it is on, a traced value cast when it can be.

Users who call the low-level building blocks (e.g. `advdyn.theory.statistics`)
directly can either wrap their code in ``with advdyn.precision.x64():`` or make the one
documented, explicit, process-wide call [`enable_x64`][advdyn.precision.enable_x64].
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar, overload

import jax
import jax.numpy as jnp
import numpy as np

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


def _x64_on() -> bool:
    return jax.dtypes.canonicalize_dtype(np.float64) == np.float64


def _wide(dtype) -> np.dtype:
    return np.dtype(np.complex128 if np.issubdtype(dtype, np.complexfloating) else np.float64)


def as_float64(x: Any) -> Any:
    """One parameter as a float64 array (the converter of the theory's constructors).

    Parameters
    ----------
    x : array_like or jax.Array
        A number or array (integers are converted too; complex values become complex128).

    Returns
    -------
    numpy.ndarray or jax.Array
        A float64 NumPy array when JAX's x64 is off (exact, without enabling x64), a concrete
        float64 JAX array when it is on (also inside a trace); a traced value is cast under
        x64 and returned unchanged otherwise (a float32 trace cannot hold float64).
    """
    if isinstance(x, jax.core.Tracer):
        return x.astype(_wide(x.dtype)) if _x64_on() else x
    if not hasattr(x, "dtype"):
        x = np.asarray(x)  # numbers, sequences
    dtype = _wide(x.dtype)
    if _x64_on():
        # concrete even when a constructor runs inside a trace (a rule built inside a
        # jitted function can still check its parameters)
        with jax.ensure_compile_time_eval():
            return jnp.asarray(x, dtype)
    return np.asarray(x, dtype)


def _widen_leaf(x: Any) -> Any:
    """A floating array narrower than 64 bits, widened; anything else unchanged."""
    if not isinstance(x, (jax.Array, np.ndarray, np.generic)):
        return x
    dtype = x.dtype
    if not jnp.issubdtype(dtype, jnp.inexact) or dtype in (np.float64, np.complex128):
        return x
    return as_float64(x)


def widen(tree: Any) -> Any:
    """Cast the floating array leaves of a pytree to float64 (complex to complex128).

    Integer, boolean and key arrays, Python scalars and non-array leaves are returned as
    they are; the tree is rebuilt only where a leaf changes.

    Parameters
    ----------
    tree : pytree

    Returns
    -------
    pytree
        The same structure.
    """
    leaves, treedef = jax.tree.flatten(tree)
    widened = [_widen_leaf(x) for x in leaves]
    if all(a is b for a, b in zip(widened, leaves, strict=True)):
        return tree
    return jax.tree.unflatten(treedef, widened)


@overload
def float64(fn: Callable[P, R], *, keep: tuple[str, ...] = ()) -> Callable[P, R]: ...


@overload
def float64(fn: None = None, *,
            keep: tuple[str, ...] = ()) -> Callable[[Callable[P, R]], Callable[P, R]]: ...


def float64(fn: Callable[P, R] | None = None, *, keep: tuple[str, ...] = ()) -> Any:
    """Decorator of an entry point: float64 for the call and for its inputs.

    Runs ``fn`` with JAX's float64 enabled (see [`x64`][advdyn.precision.x64]) on its arguments with
    every
    floating array leaf widened to float64 ([`widen`][advdyn.precision.widen]), whatever the
    caller's JAX
    settings, except the arguments named in ``keep``.

    Parameters
    ----------
    fn : callable
        A public entry point of the theory rooms (a function, a method or a property
        getter). Omitted for the form ``@float64(keep=(...))``.
    keep : tuple of str
        Parameters of ``fn`` passed as they are, not widened: data the entry point reads in
        the caller's dtype (a data set's rows, which a float64 copy would double).

    Returns
    -------
    callable
        ``fn`` with the same signature and docstring (or, without ``fn``, the decorator).
        It raises ``TypeError`` when called
        on traced arguments (inside ``jit``, ``vmap`` or ``grad``) while JAX's float64 is
        off: a float64 result cannot leave a float32 trace.
    """
    if fn is None:
        return functools.partial(float64, keep=keep)
    signature = inspect.signature(fn) if keep else None

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        if not _x64_on() and any(
            isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves((args, kwargs))
        ):
            # the caller's trace is float32: a float64 result cannot leave it
            raise TypeError(
                f"{fn.__qualname__} is traced (jit, vmap or grad) with JAX's float64 off: "
                "turn it on first (jax.config.update('jax_enable_x64', True), or trace "
                "inside advdyn.precision.x64())"
            )
        with jax.enable_x64(True):
            if signature is None:
                wide_args, wide_kwargs = widen((args, kwargs))
                return fn(*wide_args, **wide_kwargs)
            bound = signature.bind(*args, **kwargs)
            kept = {k: bound.arguments[k] for k in keep if k in bound.arguments}
            for name in kept:
                bound.arguments[name] = None
            bound.arguments.update(widen(dict(bound.arguments)))
            bound.arguments.update(kept)
            return fn(*bound.args, **bound.kwargs)

    wrapper.__advdyn_float64__ = True  # type: ignore[attr-defined]
    return wrapper


def enable_x64() -> None:
    """Turn on JAX's float64 for the whole process (the one explicit, global switch).

    Only needed to call advdyn's low-level functions outside its entry points; the entry
    points enable float64 for their own duration anyway.
    """
    jax.config.update("jax_enable_x64", True)
