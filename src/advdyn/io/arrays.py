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
        Naming ``field``, if the file cannot be read or holds non-numeric or non-finite
        values.
    """
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as err:
        raise ConfigError(field, f"cannot read {path}: {err}") from None
    if not np.issubdtype(arr.dtype, np.number) or not np.all(np.isfinite(arr)):
        raise ConfigError(field, f"{path} must hold finite numbers")
    return arr.astype(float)
