"""Reading user arrays (``.npy`` spectra, covariances and initial iterates)."""

from __future__ import annotations

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
