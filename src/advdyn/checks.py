"""One validation layer for the configuration files and the Python API.

Each check takes the value and the name of the field it belongs to, returns the value
(normalised where that is harmless, e.g. an int given for a float) and raises
[`advdyn.errors.ConfigError`][advdyn.errors.ConfigError] ``(field, message)`` otherwise. The
pydantic models of
`advdyn.config.schema` call the same checks as the public constructors and functions
([`Constant`][advdyn.theory.rates.Constant], [`solve_ode`][advdyn.theory.solve_ode],
[`simulate_sgd`][advdyn.simulate.simulate_sgd], [`make_loss`][advdyn.problem.make_loss], ...), so
that a
value refused in a TOML file is refused with the same message from Python.

This module is pure Python and NumPy (no pydantic, no JAX): every room may import it.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from advdyn.errors import ConfigError

BUILTIN_LOSSES = ("least_squares", "logistic", "squared_hinge")


def is_real_number(value: Any) -> bool:
    """Whether ``value`` is a real number: a Python or NumPy int or float, or a 0-d array
    of a real dtype (not a boolean, a string, bytes or a complex number).

    Parameters
    ----------
    value : object

    Returns
    -------
    bool
    """
    if isinstance(value, bool | str | bytes | complex | np.complexfloating | np.bool_):
        return False
    if isinstance(value, int | float | np.integer | np.floating):
        return True
    # a 0-d array (NumPy or JAX) of a real dtype
    dtype = getattr(value, "dtype", None)
    shape = getattr(value, "shape", None)
    return (
        dtype is not None
        and shape == ()
        and (np.issubdtype(dtype, np.floating) or np.issubdtype(dtype, np.integer))
    )


def real(value: Any, field: str) -> float:
    """A finite real number (not a string, a boolean, a complex number, NaN or infinity).

    Parameters
    ----------
    value : object
        The value to check.
    field : str
        Name of the field in error messages.

    Returns
    -------
    float

    Raises
    ------
    ConfigError
        If ``value`` is not a finite real number.
    """
    if not is_real_number(value):
        raise ConfigError(field, f"must be a real number, got {value!r}")
    x = float(value)
    if not math.isfinite(x):
        raise ConfigError(field, f"must be finite, got {x}")
    return x


def positive(value: Any, field: str) -> float:
    """A finite real number ``> 0`` (see `real`)."""
    x = real(value, field)
    if not x > 0:
        raise ConfigError(field, f"must be > 0, got {x:g}")
    return x


def nonnegative(value: Any, field: str) -> float:
    """A finite real number ``>= 0`` (see `real`)."""
    x = real(value, field)
    if not x >= 0:
        raise ConfigError(field, f"must be >= 0, got {x:g}")
    return x


def integer(value: Any, field: str, minimum: int | None = None) -> int:
    """An integer (not a string, a float or a boolean), at least ``minimum`` if given.

    Parameters
    ----------
    value : object
        The value to check.
    field : str
        Name of the field in error messages.
    minimum : int, optional
        Smallest allowed value.

    Returns
    -------
    int

    Raises
    ------
    ConfigError
        If ``value`` is not an integer or is below ``minimum``.
    """
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer):
        raise ConfigError(field, f"must be an integer, got {value!r}")
    n = int(value)
    if minimum is not None and n < minimum:
        raise ConfigError(field, f"must be >= {minimum}, got {n}")
    return n


def recording_times(times: Any, field: str = "times") -> np.ndarray:
    """Recording times: a non-empty 1-D array of finite, increasing times ``>= 0``.

    Parameters
    ----------
    times : array_like
        The times.
    field : str
        Name of the field in error messages.

    Returns
    -------
    ndarray, shape (T,)
        The times as float64.

    Raises
    ------
    ConfigError
        If the times are not real, not 1-D, empty, negative, non-finite or not strictly
        increasing.
    """
    arr = np.asarray(times)
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ConfigError(field, f"must be real numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ConfigError(field, f"must be a non-empty 1-D array, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ConfigError(field, "must be finite")
    if arr[0] < 0:
        raise ConfigError(field, f"must be >= 0, got {arr[0]:g} first")
    if np.any(np.diff(arr) <= 0):
        i = int(np.argmax(np.diff(arr) <= 0))
        raise ConfigError(
            field, f"must be strictly increasing, got {arr[i]:g} then {arr[i + 1]:g}"
        )
    return arr


#: the most steps a time horizon may take: beyond ``2**53``, step counts and times ``k * dt``
#: are no longer exact in float64 (and such a run would never end)
MAX_STEPS = 2**53


def step_count(steps: float, field: str, what: str) -> float:
    """A number of time steps that a run can take: at most `MAX_STEPS`.

    Parameters
    ----------
    steps : float
        Horizon over step size (e.g. ``t_max * d`` for SGD, ``t_max / eta`` for an SME).
    field : str
        The field to change, named in the message.
    what : str
        What makes the steps, for the message (e.g. ``"t_max = 1e+300 at d = 1000"``).

    Returns
    -------
    float

    Raises
    ------
    ConfigError
        If ``steps`` exceeds `MAX_STEPS` or is not finite.
    """
    if not steps <= MAX_STEPS:
        raise ConfigError(field, f"{what} makes {steps:.3g} steps, more than 2^53 = "
                          f"{MAX_STEPS:.3g} (beyond, step times are not exact in float64); "
                          f"lower {field}")
    return steps


def horizon(t_max: Any, d: int, field: str = "t_max") -> float:
    """A time horizon of at least one SGD step, ``t_max >= 1/d``.

    Parameters
    ----------
    t_max : float
        Horizon in time ``t = k/d``.
    d : int
        Dimension (one step lasts ``1/d``).
    field : str
        Name of the field in error messages.

    Returns
    -------
    float

    Raises
    ------
    ConfigError
        If ``t_max`` is not positive, shorter than one step (it would silently be
        rounded up to one step otherwise) or more than `MAX_STEPS` steps.
    """
    t = positive(t_max, field)
    step_count(t * d, field, f"t_max = {t:g} at d = {d}")
    if t * d < 1 - 1e-9:
        raise ConfigError(
            field, f"t_max = {t:g} is shorter than one SGD step 1/d = {1 / d:g} (d = {d}); "
            f"use t_max >= {1 / d:g}"
        )
    return t


def loss_name(value: Any, field: str = "loss") -> str:
    """A built-in loss name (``least_squares``, ``logistic`` or ``squared_hinge``)."""
    if not isinstance(value, str) or value not in BUILTIN_LOSSES:
        raise ConfigError(
            field, f"unknown loss {value!r} (built-in: {', '.join(BUILTIN_LOSSES)}; "
            "or pass a JAX function l(r, y) from Python)"
        )
    return value


def loss_function(value: Any, field: str = "fn") -> Callable:
    """A callable ``l(r, y)`` (a custom loss)."""
    if not callable(value):
        raise ConfigError(field, f"must be a function l(r, y), got {value!r}")
    return value


def as_value_error(check: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a check for a pydantic validator: [`ConfigError`][advdyn.ConfigError] becomes
    ``ValueError``.

    pydantic names the field itself (with its full dotted location), so only the
    message is kept.

    Parameters
    ----------
    check : callable
        ``check(value, field, ...)``.

    Returns
    -------
    callable
        ``validator(value, field, ...)`` raising ``ValueError(message)``.
    """

    def validator(value, *args, **kwargs):
        try:
            return check(value, *args, **kwargs)
        except ConfigError as err:
            raise ValueError(err.message) from None

    return validator


def simulation(d: int, t_max: Any, n_times: Any, replicates: Any, block_size: Any,
               lr: Any = None, key: Any = None, dtype: Any = None) -> None:
    """Arguments of the simulators ([`simulate_sgd`][advdyn.simulate.simulate_sgd] and the SDE).

    Parameters
    ----------
    d : int
        Dimension of the instance.
    t_max, n_times, replicates, block_size
        As in [`simulate_sgd`][advdyn.simulate.simulate_sgd]; checked with the same rules as
        ``run.t_max``, ``run.n_times`` (>= 2), ``run.replicates`` and ``run.block_size``
        (>= 1).
    lr, key, dtype : optional
        The rule (`learning_rate`), the PRNG key (`prng_key`) and the precision
        (`dtype_name`), checked when given.

    Raises
    ------
    ConfigError
        Naming the first offending argument.
    """
    horizon(t_max, int(d), "t_max")
    integer(n_times, "n_times", 2)
    integer(replicates, "replicates", 1)
    integer(block_size, "block_size", 1)
    if lr is not None:
        learning_rate(lr, "lr")
    if key is not None:
        prng_key(key, "key")
    if dtype is not None:
        dtype_name(dtype, "dtype")


def theory_instance(instance: Any, field: str = "instance",
                    remedy: str = "use data_problem(...).instance") -> Any:
    """An instance the theory may take: eigenvalues finite where they are concrete (a traced
    instance is not checked).

    A binned data problem's ``rows_instance`` (the surrogate's vectors in the data's own
    basis, for ``data_sgd``) has NaN eigenvalues, since that basis has none. The one check
    of this for the theory's solvers and for SGD on data rows (which needs them for the
    surrogate's records unless ``measured_only``).

    Parameters
    ----------
    instance : ProblemInstance or BinnedInstance
    field : str
        The field named in the error.
    remedy : str
        What the caller should do instead, ending the error message.

    Returns
    -------
    Any
        ``instance``, unchanged.

    Raises
    ------
    ConfigError
        If a concrete eigenvalue is not finite.
    """
    lam = getattr(instance, "eigenvalues", None)
    if lam is None or type(lam).__name__.endswith("Tracer"):
        return instance
    if not np.all(np.isfinite(np.asarray(lam))):
        raise ConfigError(field, "has non-finite eigenvalues: it is not an input of the theory "
                          f"(a binned data problem's rows_instance has none: {remedy})")
    return instance


def output_folder(value: Any, field: str = "out") -> Path:
    """A result folder: a non-empty path that is not an existing file.

    Whether the folder can be created and written is for
    [`advdyn.io.folder_lock`][advdyn.io.folder_lock],
    which every command that writes a result folder holds before it computes.

    Parameters
    ----------
    value : str or os.PathLike
        The folder (created later if missing).
    field : str
        Name of the field in error messages.

    Returns
    -------
    Path

    Raises
    ------
    ConfigError
        If ``value`` is not a path, is empty (``""`` would silently mean the current
        folder) or names something that exists and is not a folder.
    """
    if not isinstance(value, str | os.PathLike) or isinstance(value, bytes):
        raise ConfigError(field, f"must be a folder path, got {value!r}")
    text = os.fspath(value)
    if not text.strip() or "\x00" in text:
        raise ConfigError(field, f"must be a folder path, got {text!r}; use . for the "
                          "current folder")
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise ConfigError(field, f"cannot write results to {path}: it is a file, not a "
                          "folder; choose another --out")
    return path


_ADDRESS = re.compile(r"^([a-z][a-z0-9+.-]*://)?[^\s/]+:[0-9]{1,5}$")


def scheduler_address(value: Any, field: str = "scheduler") -> str:
    """The address of a Dask scheduler: ``[protocol://]host:port`` (e.g. ``tcp://h:8786``).

    Parameters
    ----------
    value : str
        The address.
    field : str
        Name of the field in error messages.

    Returns
    -------
    str

    Raises
    ------
    ConfigError
        If ``value`` is not a string of that form (a port is required).
    """
    if not isinstance(value, str) or not _ADDRESS.match(value.strip()):
        raise ConfigError(field, f"expected a scheduler address like tcp://host:8786, got "
                          f"{value!r}")
    return value.strip()


def seed(value: Any, field: str = "seed") -> int:
    """A seed: an integer in ``[0, 2^63 - 1]`` (what a config's ``seed`` accepts).

    Raises
    ------
    ConfigError
        If ``value`` is not an integer in that range.
    """
    n = integer(value, field, 0)
    if n > 2**63 - 1:
        raise ConfigError(field, f"must be <= 2^63 - 1, got {n}")
    return n


def learning_rate(value: Any, field: str = "lr") -> Any:
    """A learning-rate rule: a callable ``rule(t, state, instance)`` such as
    [`advdyn.Constant`][advdyn.Constant] (a bare number is refused: which rule it means is not
    said).

    Raises
    ------
    ConfigError
        If ``value`` is not callable.
    """
    if not callable(value):
        raise ConfigError(field, f"must be a learning-rate rule such as advdyn.Constant(0.8), "
                          f"got {value!r}")
    return value


def prng_key(value: Any, field: str = "key") -> Any:
    """A JAX PRNG key: a typed key (``jax.random.key``) or a raw ``uint32`` key of shape
    ``(2,)``, possibly traced.

    Raises
    ------
    ConfigError
        If ``value`` is neither (an int seed, say: pass ``advdyn.stream_key(seed)``).
    """
    dtype = getattr(value, "dtype", None)
    shape = getattr(value, "shape", None)
    typed = dtype is not None and str(dtype).startswith("key<")
    raw = dtype is not None and str(dtype) == "uint32" and shape == (2,)
    if not (typed or raw):
        raise ConfigError(field, f"must be a JAX PRNG key such as advdyn.stream_key(seed), "
                          f"got {value!r}")
    return value


def dtype_name(value: Any, field: str = "dtype",
               allowed: tuple[str, ...] = ("float32", "float64")) -> str:
    """A floating-point precision among ``allowed`` (a name or a NumPy dtype).

    Raises
    ------
    ConfigError
        If ``value`` names another or no dtype.
    """
    try:
        name = np.dtype(value).name if not isinstance(value, str) else value
    except TypeError:
        name = None
    if name not in allowed:
        raise ConfigError(field, f"must be one of {', '.join(allowed)}, got {value!r}")
    return name


def _first(indices: np.ndarray, names: list[str] | None, limit: int = 5) -> str:
    shown = [names[i] if names is not None else str(i) for i in indices[:limit].tolist()]
    more = f" and {indices.size - limit} more" if indices.size > limit else ""
    return ", ".join(shown) + more


#: Bytes per block of rows in the passes over a data table (`row_chunks`): small enough
#: that a block stays in cache between the operations on it.
ROW_BLOCK_BYTES = 1 << 21


def row_chunks(n: int, d: int, itemsize: int = 8) -> list[slice]:
    """Blocks of consecutive rows of an ``n x d`` table, about `ROW_BLOCK_BYTES` each.

    Parameters
    ----------
    n, d : int
        Rows and columns.
    itemsize : int
        Bytes per entry as the blocks are worked on (8: float64, 4: float32).

    Returns
    -------
    list of slice
        Covering ``0..n`` in order, at least one row each.
    """
    rows = max(1, ROW_BLOCK_BYTES // (itemsize * max(d, 1)))
    return [slice(start, min(start + rows, n)) for start in range(0, n, rows)]


class ColumnMoments(NamedTuple):
    """Mean and standard deviation (``1/n``) of every column of a feature matrix.

    Attributes
    ----------
    mean, std : ndarray, shape (d,)
        float64.
    """

    mean: np.ndarray
    std: np.ndarray


def data_features(X: Any, field: str, names: list[str] | None = None) -> ColumnMoments:
    """Check a data set's feature matrix: 2-d, real, finite, ``n >= 2`` rows, no constant
    column; and its column moments, from the same pass.

    One pass over the rows in blocks (`row_chunks`, each block converted to float64 while it
    is in cache): no copy of the matrix, so a memory-mapped file is read once. The moments
    merge the blocks' means and centred sums of squares (Chan, Golub and LeVeque's pairwise
    update), as accurate as the two-pass formula.

    Parameters
    ----------
    X : array_like
        The matrix as read, shape ``(n, d)``.
    field : str
        The field named in errors (e.g. ``problem.data.features``).
    names : list of str, optional
        Column names, to name a bad column (indices otherwise).

    Returns
    -------
    ColumnMoments
        float64, of shape ``(d,)``.

    Raises
    ------
    ConfigError
        For a wrong shape, a non-real dtype, fewer than two rows, NaN or infinite entries
        (the first ones named) or a constant column (named: it carries no information and
        its standardisation divides by zero).
    """
    arr = X if isinstance(X, np.ndarray) else np.asarray(X)
    if arr.ndim != 2:
        raise ConfigError(field, f"must be a matrix (n rows x d columns), got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
            or np.issubdtype(arr.dtype, np.bool_)):
        raise ConfigError(field, f"must hold real numbers, found dtype {arr.dtype}")
    n, d = arr.shape
    if n < 2 or d < 1:
        raise ConfigError(field, f"needs at least 2 rows and 1 column, got shape {arr.shape}")
    mean, m2 = np.zeros(d), np.zeros(d)
    low, high = np.full(d, np.inf), np.full(d, -np.inf)
    bad, first = 0, None
    for block in row_chunks(n, d):
        chunk = np.asarray(arr[block], np.float64)
        total = chunk.sum(axis=0)
        if not np.all(np.isfinite(total)):  # NaN and inf propagate into the sums
            nonfinite = ~np.isfinite(chunk)
            bad += int(nonfinite.sum())
            if first is None and bad:
                rows, cols = np.nonzero(nonfinite)
                first = (block.start + int(rows[0]), cols[:1])
            if bad:
                continue
        np.minimum(low, chunk.min(axis=0), out=low)
        np.maximum(high, chunk.max(axis=0), out=high)
        r, seen = chunk.shape[0], block.start
        local = total / r
        dev = chunk - local
        delta = local - mean
        mean += delta * (r / (seen + r))
        m2 += np.einsum("ij,ij->j", dev, dev) + delta**2 * (seen * r / (seen + r))
    if bad:
        assert first is not None
        raise ConfigError(field, f"{bad} entries are NaN or infinite (first at row {first[0]}, "
                          f"column {_first(first[1], names)}); remove or impute them")
    const = np.flatnonzero(high == low)
    if const.size:
        raise ConfigError(field, f"{const.size} constant column(s) ({_first(const, names)}): "
                          "they carry no information; drop them")
    return ColumnMoments(mean, np.sqrt(m2 / n))


def data_targets(y: Any, n: int, task: str, field: str) -> np.ndarray:
    """A data set's targets fitted to the task: real values, or two classes mapped to ``+/-1``.

    Parameters
    ----------
    y : array_like
        Shape ``(n,)`` (or ``(n, 1)``).
    n : int
        Rows of the feature matrix.
    task : {"regression", "classification"}
    field : str
        The field named in errors (e.g. ``problem.data.target``).

    Returns
    -------
    ndarray, shape (n,)
        float64; for classification ``+1`` for the larger of the two label values and ``-1``
        for the smaller (``{0, 1}`` and ``{-1, 1}`` keep their meaning; booleans: True is +1).

    Raises
    ------
    ConfigError
        For a wrong shape, non-real or non-finite values, a constant regression target, or
        classification labels that are not exactly two integer values.
    """
    arr = np.asarray(y)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.shape != (n,):
        raise ConfigError(field, f"must have one value per row, shape ({n},), got {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
            or np.issubdtype(arr.dtype, np.bool_)):
        raise ConfigError(field, f"must hold numbers, found dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise ConfigError(field, f"{int((~np.isfinite(arr)).sum())} targets are NaN or infinite")
    values = np.unique(arr)
    if task == "regression":
        if values.size < 2:
            raise ConfigError(field, "the regression target is constant")
        return arr
    if np.any(values != np.round(values)):
        raise ConfigError(field, "classification labels must be integers (two classes), found "
                          f"non-integer values such as {values[values != np.round(values)][0]:g}")
    if values.size != 2:
        raise ConfigError(field, f"binary classification needs exactly 2 label values, found "
                          f"{values.size} ({_first(values.astype(np.int64), None)})")
    return np.where(arr == values[1], 1.0, -1.0)
