"""Reading user arrays (``.npy`` spectra, covariances and initial iterates)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from advdyn.errors import ConfigError


def load_npy(path, field: str) -> np.ndarray:
    """Load a finite numeric ``.npy`` array as float64.

    Parameters
    ----------
    path : str or Path
        The ``.npy`` file (pickles are refused).
    field : str
        Dotted config location, used in error messages.

    Returns
    -------
    ndarray
        The array as float64, any shape.

    Raises
    ------
    ConfigError
        Naming ``field``, if the file cannot be read, is not a ``.npy`` file (e.g. text),
        or holds pickled objects, complex, non-numeric or non-finite values.
    """
    try:
        with open(path, "rb") as fh:
            magic = fh.read(6)
    except OSError as err:
        raise ConfigError(field, f"cannot read {path}: {err.strerror or err}") from None
    if magic != b"\x93NUMPY":
        raise ConfigError(
            field,
            f"cannot read {path}: not a NumPy .npy file (no .npy header; save it with numpy.save)",
        )
    try:
        arr = np.load(path, allow_pickle=False)
    except ValueError as err:
        if "pickle" in str(err):
            raise ConfigError(
                field, f"{path} holds Python objects, not numbers (pickled .npy refused)"
            ) from None
        raise ConfigError(field, f"cannot read {path}: {err}") from None
    except Exception as err:
        raise ConfigError(field, f"cannot read {path}: {err}") from None
    real = np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
    if not real:
        kind = "complex numbers" if np.issubdtype(arr.dtype, np.complexfloating) else (
            f"dtype {arr.dtype}")
        raise ConfigError(field, f"{path} must hold real numbers, found {kind}")
    if not np.all(np.isfinite(arr)):
        raise ConfigError(field, f"{path} must hold finite numbers")
    return arr.astype(float)


# ----------------------------------------------------------------------------- data tables
#: File kinds a data problem reads, by suffix.
DATA_SUFFIXES = (".npy", ".npz", ".csv", ".parquet")
_PARQUET_HINT = "reading .parquet needs pyarrow: pip install 'advdyn[data]'"


def _npy_header(fh, path, field: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from the header of an open ``.npy`` stream (nothing else is read)."""
    try:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
        else:
            shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
    except Exception:
        raise ConfigError(field, f"{path} is not a NumPy .npy array (no valid .npy header; "
                          "save it with numpy.save)") from None
    return tuple(shape), np.dtype(dtype)


def _real_dtype(dtype: np.dtype, path, field: str) -> None:
    if not (np.issubdtype(dtype, np.floating) or np.issubdtype(dtype, np.integer)
            or np.issubdtype(dtype, np.bool_)):
        raise ConfigError(field, f"{path} must hold real numbers, found dtype {dtype}")


def _npz_members(path, field: str) -> list[str]:
    import zipfile

    try:
        with zipfile.ZipFile(path) as zf:
            return [n.removesuffix(".npy") for n in zf.namelist() if n.endswith(".npy")]
    except (zipfile.BadZipFile, OSError):
        raise ConfigError(field, f"{path} is not a NumPy .npz archive (save it with "
                          "numpy.savez)") from None


def _npz_header(path, name: str, field: str) -> tuple[tuple[int, ...], np.dtype]:
    import zipfile

    with zipfile.ZipFile(path) as zf, zf.open(f"{name}.npy") as fh:
        return _npy_header(fh, f"{path}[{name}]", field)


def held_itemsize(dtype) -> int:
    """Bytes per entry of a data table of ``dtype`` as advdyn holds it: 4 for float32, which
    is kept float32; 8 for any other dtype (read as float64)."""
    return 4 if np.dtype(dtype) == np.float32 else 8


def _csv_columns(path, field: str) -> list[str]:
    import csv

    try:
        with open(path, newline="", encoding="utf-8") as fh:
            header = next(csv.reader(fh), None)
    except UnicodeDecodeError:
        raise ConfigError(field, f"{path} is not UTF-8 text, not a .csv file") from None
    except (OSError, csv.Error) as err:
        raise ConfigError(field, f"cannot read {path} as .csv: {err}") from None
    if not header:
        raise ConfigError(field, f"{path} is empty (a .csv needs a header row of column names)")
    return [h.strip() for h in header]


def _parquet_columns(path, field: str) -> tuple[list[str], int]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ConfigError(field, _PARQUET_HINT) from None
    try:
        meta = pq.read_metadata(path)
    except Exception:
        raise ConfigError(field, f"{path} is not a Parquet file") from None
    return list(meta.schema.names), int(meta.num_rows)


def data_columns(
    path, field: str,
) -> tuple[list[str], dict[str, tuple[int, ...]], int | None, dict[str, np.dtype]]:
    """What a data file holds, from its header only.

    Parameters
    ----------
    path : Path
        A ``.npy``, ``.npz``, ``.csv`` or ``.parquet`` file.
    field : str
        Dotted config location of the path, used in error messages.

    Returns
    -------
    names : list of str
        Array names (``.npz``) or column names (``.csv``, ``.parquet``); ``[]`` for ``.npy``.
    shapes : dict of str to tuple
        Shapes of the arrays (``.npz``; ``.npy`` under the name ``""``); empty for tables.
    n_rows : int or None
        Rows when the header says (``.parquet``), else ``None``.
    dtypes : dict of str to numpy.dtype
        Dtypes of the arrays, keyed as ``shapes``; empty for tables.

    Raises
    ------
    ConfigError
        Naming ``field``: unknown suffix, a file that is not what its suffix claims, non-real
        dtypes, ``.parquet`` without pyarrow.
    """
    from pathlib import Path

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in DATA_SUFFIXES:
        raise ConfigError(field, f"{path.name}: unknown data file kind; give one of "
                          f"{', '.join(DATA_SUFFIXES)}")
    if suffix == ".npy":
        try:
            with open(path, "rb") as fh:
                shape, dtype = _npy_header(fh, path, field)
        except OSError as err:
            raise ConfigError(field, f"cannot read {path}: {err.strerror or err}") from None
        _real_dtype(dtype, path, field)
        return [], {"": shape}, None, {"": dtype}
    if suffix == ".npz":
        names = _npz_members(path, field)
        shapes, dtypes = {}, {}
        for name in names:
            shape, dtype = _npz_header(path, name, field)
            _real_dtype(dtype, f"{path}[{name}]", field)
            shapes[name], dtypes[name] = shape, dtype
        return names, shapes, None, dtypes
    if suffix == ".csv":
        return _csv_columns(path, field), {}, None, {}
    names, rows = _parquet_columns(path, field)
    return names, {}, rows, {}


def load_data_table(path, features: Sequence[str] | str | None, target: str, field: str,
                    target_path=None) -> tuple[np.ndarray, np.ndarray]:
    """Read a feature matrix and its targets from a data file.

    Parameters
    ----------
    path : Path
        ``.npy`` (the matrix; the targets in ``target_path``), ``.npz`` (arrays named
        ``features`` and ``target``), ``.csv`` or ``.parquet`` (columns ``features``, default
        every column but ``target``).
    features : str or list of str or None
        Array name (``.npz``) or columns (tables).
    target : str
        Array name or column of the targets.
    field : str
        Dotted config location of the data section (``problem.data``).
    target_path : Path, optional
        The targets' ``.npy`` file, for a ``.npy`` matrix.

    Returns
    -------
    X : ndarray, shape (n, d)
        As stored (not yet checked; `advdyn.checks.data_features`
        does): a read-only memory map of a ``.npy`` file, else a new array.
    y : ndarray, shape (n,) or as stored
        As stored.

    Raises
    ------
    ConfigError
        Naming ``field.path``, ``field.features`` or ``field.target`` for files that cannot be
        read, missing names, non-numeric columns.
    """
    from pathlib import Path

    path = Path(path)
    suffix = path.suffix.lower()
    fpath = f"{field}.path"
    try:
        if suffix == ".npy":  # memory-mapped: the checks and standardisation read it once each
            X = np.load(path, mmap_mode="r", allow_pickle=False)
            y = np.load(target_path, allow_pickle=False)
            return X, y
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                name = features if isinstance(features, str) else "X"
                return z[name], z[target]
    except (ValueError, OSError, KeyError) as err:
        raise ConfigError(fpath, f"cannot read {path}: {err}") from None
    import pandas as pd

    if suffix == ".csv":
        try:
            frame = pd.read_csv(path, skipinitialspace=True)
        except Exception as err:
            raise ConfigError(fpath, f"cannot read {path} as .csv: {err}") from None
        frame.columns = [str(c).strip() for c in frame.columns]
    else:
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise ConfigError(fpath, _PARQUET_HINT) from None
        frame = pq.read_table(path).to_pandas()
    columns = [c for c in frame.columns if c != target] if features is None else (
        [features] if isinstance(features, str) else list(features))
    for name, sub in ((target, "target"), *((c, "features") for c in columns)):
        col = frame[name]
        if not (pd.api.types.is_numeric_dtype(col.dtype) or pd.api.types.is_bool_dtype(col.dtype)):
            raise ConfigError(f"{field}.{sub}", f"column {name!r} of {path.name} is not "
                              f"numeric (dtype {col.dtype}; first value {col.iloc[0]!r})")
    return frame[columns].to_numpy(dtype=np.float64), frame[target].to_numpy()
