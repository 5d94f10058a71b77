"""Labelled results: xarray datasets, atomic NetCDF files and method comparisons.

Datasets use THEORY section 11 names. ODE results have a ``time`` dimension; SGD results
add ``replicate``. Attributes record the method, the config (as JSON) and the package
version, so that a result file documents how it was made.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import xarray as xr

UNITS = {
    "adv_risk": "adversarial population risk R_eps (ridge excluded)",
    "clean_risk": "clean population risk R_0",
    "norm": "|theta|",
    "overlap": "<theta, theta*>",
    "lr": "learning rate gamma_t",
    "clean_error": "clean classification error",
    "robust_error": "robust classification error under radius eps",
    "dist_to_opt": "|theta_t - theta_eps^*|^2",
    "eff_lr": "effective learning rate gamma h_1 (least-squares equivalence)",
    "eff_ridge": "effective ridge rho / h_1 (least-squares equivalence)",
    "noise_factor": "noise factor I / (h_1^2 s^2) (least-squares equivalence)",
}


def make_dataset(
    times: np.ndarray,
    quantities: Mapping[str, np.ndarray],
    method: str,
    replicates: bool = False,
    attrs: Mapping[str, object] | None = None,
) -> xr.Dataset:
    """Build a labelled dataset of recorded quantities.

    Parameters
    ----------
    times : array, shape (T,)
        Recording times ``t = k/d``; the ``time`` coordinate.
    quantities : mapping of name to array
        Shape ``(T,)``, or ``(R, T)`` when ``replicates``; THEORY section 11 names.
    method : str
        Stored as the ``method`` attribute.
    replicates : bool
        Whether arrays carry a leading replicate axis.
    attrs : mapping, optional
        Extra attributes (strings or numbers).

    Returns
    -------
    xarray.Dataset
        float64 variables on ``("time",)`` or ``("replicate", "time")``, each with a
        ``long_name`` attribute from :data:`UNITS` (the name itself if not listed).
    """
    dims = ("replicate", "time") if replicates else ("time",)
    data_vars = {}
    for name, values in quantities.items():
        da = xr.DataArray(np.asarray(values, dtype=np.float64), dims=dims)
        da.attrs["long_name"] = UNITS.get(name, name)
        data_vars[name] = da
    coords = {"time": np.asarray(times, dtype=np.float64)}
    if replicates:
        coords["replicate"] = np.arange(next(iter(quantities.values())).shape[0])
    ds = xr.Dataset(data_vars, coords=coords)
    ds.attrs.update({"method": method, **(attrs or {})})
    return ds


@contextmanager
def atomic_path(path: str | Path, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` if the block succeeds.

    A reader never sees a half-written file, and a failed or interrupted write leaves any
    previous file in place (the temporary file is removed). Missing parent folders are
    created.

    Parameters
    ----------
    path : str or Path
        Final destination.
    suffix : str
        Suffix of the temporary file (some writers choose their format by it).

    Yields
    ------
    Path
        Where to write.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_netcdf(ds: xr.Dataset, path: str | Path) -> Path:
    """Write ``ds`` to ``path`` atomically (temporary file in the same folder, then rename).

    A reader never sees a half-written file, and an interrupted write leaves any previous
    file in place. Missing parent folders are created.

    Parameters
    ----------
    ds : xarray.Dataset
        The dataset to write (NetCDF4 engine).
    path : str or Path
        Destination file.

    Returns
    -------
    Path
        ``path``.
    """
    with atomic_path(path) as tmp:
        ds.to_netcdf(tmp, engine="netcdf4")
    return Path(path)


def write_json(data: object, path: str | Path) -> Path:
    """Write JSON atomically (same rule as :func:`write_netcdf`).

    Parameters
    ----------
    data : object
        JSON-serialisable data, written indented with sorted keys.
    path : str or Path
        Destination file.

    Returns
    -------
    Path
        ``path``.
    """
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return Path(path)


def read_netcdf(path: str | Path) -> xr.Dataset:
    """Load a result file fully into memory (the file is closed on return).

    Parameters
    ----------
    path : str or Path
        A NetCDF file written by :func:`write_netcdf`.

    Returns
    -------
    xarray.Dataset
        The loaded dataset.
    """
    with xr.open_dataset(path, engine="netcdf4") as ds:
        return ds.load()


def relative_gap(reference: xr.DataArray, estimate: xr.DataArray, floor: float = 1e-2):
    """Pointwise relative gap ``|estimate - reference| / max(|reference|, floor * max|reference|)``.

    The floor keeps quantities that pass through zero (e.g. ``overlap`` at a random start)
    from producing meaningless ratios; for strictly positive curves such as ``adv_risk``
    it is inactive unless the curve spans more than two decades.

    Parameters
    ----------
    reference : xarray.DataArray
        Reference curve (e.g. the ODE).
    estimate : xarray.DataArray
        Curve to compare, on the same coordinates.
    floor : float
        Fraction of ``max|reference|`` below which the denominator is not allowed to go.

    Returns
    -------
    xarray.DataArray
        The relative gap at each point.
    """
    scale = np.maximum(np.abs(reference), floor * float(np.abs(reference).max()))
    return np.abs(estimate - reference) / scale


def compare(reference: xr.Dataset, other: xr.Dataset) -> dict[str, dict[str, float]]:
    """Largest relative gap over time between the replicate mean of ``other`` and ``reference``.

    Parameters
    ----------
    reference : Dataset
        Typically the ODE (no replicate dimension).
    other : Dataset
        Typically SGD; averaged over ``replicate`` if present.

    Returns
    -------
    dict
        For each quantity recorded by both except ``lr``: ``max_relative_gap`` (see
        :func:`relative_gap`), ``at_time`` where it occurs, and ``max_abs_gap``. ``other``
        is interpolated linearly onto the reference times.
    """
    mean = other.mean("replicate") if "replicate" in other.dims else other
    out = {}
    for name in reference.data_vars:
        if name not in mean.data_vars or name == "lr":
            continue
        ref, est = reference[name], mean[name].interp(time=reference.time)
        rel = relative_gap(ref, est)
        i = int(np.nanargmax(rel.values))
        out[name] = {
            "max_relative_gap": float(rel.values[i]),
            "at_time": float(reference.time.values[i]),
            "max_abs_gap": float(np.nanmax(np.abs(est - ref).values)),
        }
    return out
