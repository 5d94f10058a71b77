"""Old public names that keep working for one release, with a ``DeprecationWarning``.

A module that renamed a public name sets its module ``__getattr__`` (PEP 562) to
[`renamed`][advdyn.deprecation.renamed]: the new names are the module's own, and an access
to an old one warns, naming the replacement, and returns the new object.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import sys
import types
import warnings
from collections.abc import Callable, Mapping
from typing import Any

#: the release that removes the old names
REMOVED_IN = "0.2"


@functools.cache
def _internal_folders() -> tuple[str, ...]:
    """The folders whose frames are not "the caller": advdyn's own and equinox's (its
    ``Module.__getattribute__`` adds a frame to every property access)."""
    folders = []
    for package in ("advdyn", "equinox"):
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.origin is not None:
            folders.append(os.path.dirname(spec.origin) + os.sep)
    return tuple(folders)


def _caller_level() -> int:
    """The ``stacklevel`` that makes a warning raised in `warn_deprecated` name the first
    frame outside advdyn and equinox: the user's line. Frames of ``importlib._bootstrap``
    (a ``from module import name`` reaching a module ``__getattr__``) are skipped
    uncounted, as ``warnings.warn`` skips them."""
    internal = _internal_folders()
    frame: types.FrameType | None = sys._getframe(1)  # warn_deprecated
    level = 1
    while frame is not None:
        name = frame.f_code.co_filename
        if "importlib" in name and "_bootstrap" in name:
            frame = frame.f_back
            continue
        if not name.startswith(internal):
            break
        frame = frame.f_back
        level += 1
    return level


def warn_deprecated(message: str) -> None:
    """Issue a ``DeprecationWarning`` attributed to the user's code.

    The warning's file and line are those of the first caller outside advdyn and equinox,
    however deep inside advdyn the deprecated name was reached, so that Python's default
    filters (which show a ``DeprecationWarning`` only when attributed to ``__main__``) and
    the test runners show it where the user can act on it.

    Parameters
    ----------
    message : str
        What is deprecated, the release that removes it (`REMOVED_IN`) and what to use.
    """
    warnings.warn(message, DeprecationWarning, stacklevel=_caller_level())


def renamed(module: str, names: Mapping[str, str | tuple[str, Callable[[], Any]]]
            ) -> Callable[[str], Any]:
    """A module ``__getattr__`` that serves deprecated names.

    Parameters
    ----------
    module : str
        The module's dotted name (``__name__``).
    names : mapping
        Old name -> replacement: ``"module.path:name"`` (a bare ``"name"`` is looked up in
        ``module``), or ``(message, factory)`` when the old object is not a plain alias of
        the new one (``factory()`` builds it; ``message`` names what to use instead).

    Returns
    -------
    callable
        ``__getattr__(name)``: the replacement of an old name, after a
        ``DeprecationWarning``; ``AttributeError`` for any other name.
    """

    def __getattr__(name: str) -> Any:
        target = names.get(name)
        if target is None:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        if isinstance(target, tuple):
            use, factory = target
            value = factory()
        else:
            path, _, attr = target.rpartition(":")
            use = f"{path or module}.{attr}"
            value = getattr(importlib.import_module(path or module), attr)
        warn_deprecated(f"{module}.{name} is deprecated and will be removed in advdyn "
                        f"{REMOVED_IN}: use {use}")
        return value

    return __getattr__


def renamed_keyword(function: str, old: str, old_value: Any, new: str, new_value: Any,
                    default: Any) -> Any:
    """The value of a renamed keyword argument: ``new_value``, or ``old_value`` (after a
    ``DeprecationWarning``) when the caller still passed the old keyword, or ``default``.

    Parameters
    ----------
    function : str
        The function's dotted name, for the messages.
    old, new : str
        The old and the new keyword.
    old_value : object or None
        What the caller passed as ``old`` (``None``: not passed).
    new_value : object or None
        What the caller passed as ``new`` (``None``: not passed).
    default : object
        The value when neither was passed.

    Returns
    -------
    object

    Raises
    ------
    TypeError
        If both ``old`` and ``new`` were passed (naming both).

    Notes
    -----
    The warning names the first caller outside advdyn (`warn_deprecated`).
    """
    if old_value is None:
        return default if new_value is None else new_value
    if new_value is not None:
        raise TypeError(f"{function}() got both {old}= (deprecated) and {new}=: pass {new}= "
                        "only")
    warn_deprecated(f"{function}({old}=...) is deprecated and will be removed in advdyn "
                    f"{REMOVED_IN}: use {new}=")
    return old_value
