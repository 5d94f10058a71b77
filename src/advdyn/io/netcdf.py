"""Labelled results: solver pytrees as xarray datasets, and atomic NetCDF files.

Datasets use THEORY section 11 names. ODE results have a ``time`` dimension; SGD results
add ``replicate``. Attributes record the method, the config (as JSON) and the package
version, so that a result file documents how it was made.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import xarray as xr

from advdyn.io.files import atomic_path

if TYPE_CHECKING:  # (not at run time: equinox and JAX stay out of a figure's process)
    from advdyn.solution import Solution

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


COORDINATE_ATTRS = {
    "time": {"long_name": "time t = k/d (SGD steps per dimension)", "units": "1"},
    "replicate": {"long_name": "replicate (independent sample stream)", "units": "1"},
}
"""``long_name`` and ``units`` of the coordinates (``"1"``: dimensionless, CF convention)."""


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
        ``long_name`` attribute from `UNITS` (the name itself if not listed); the
        ``time`` and ``replicate`` coordinates carry ``long_name`` and ``units``
        (`COORDINATE_ATTRS`).
    """
    dims = ("replicate", "time") if replicates else ("time",)
    data_vars = {}
    for name, values in quantities.items():
        da = xr.DataArray(np.asarray(values, dtype=np.float64), dims=dims)
        da.attrs["long_name"] = UNITS.get(name, name)
        data_vars[name] = da
    coords: dict[str, np.ndarray] = {"time": np.asarray(times, dtype=np.float64)}
    if replicates:
        coords["replicate"] = np.arange(next(iter(quantities.values())).shape[0])
    ds = xr.Dataset(data_vars, coords=coords)
    for coord in ds.coords:
        ds[coord].attrs.update(COORDINATE_ATTRS.get(str(coord), {}))
    ds.attrs.update({"method": method, **(attrs or {})})
    return ds


NETCDF_LOCK = threading.RLock()
"""Held by [`write_netcdf`][advdyn.io.netcdf.write_netcdf] and
[`read_netcdf`][advdyn.io.netcdf.read_netcdf] for a whole write or read: the
netCDF-C and HDF5 libraries under netCDF4 are not thread-safe, and files written from
several threads at once crashed the process (segmentation fault), with xarray's own
``to_netcdf`` as well. One file at a time per process; processes do not share it."""


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

    Raises
    ------
    OSError
        If the file cannot be written, an error of the netCDF-C library included (e.g.
        ``NetCDF: HDF error`` on a full disk, which netCDF4 raises as ``RuntimeError``).
    """
    try:
        with atomic_path(path) as tmp, NETCDF_LOCK:
            _to_netcdf4(ds, tmp)
    except RuntimeError as err:  # netCDF4 reports the C library's errors (a full disk) so
        if not str(err).startswith("NetCDF:"):
            raise
        raise OSError(f"cannot write {path}: {err}") from err
    return Path(path)


def _to_netcdf4(ds: xr.Dataset, path: Path) -> None:
    """``ds.to_netcdf(path, engine="netcdf4")``, without asking Dask for its scheduler.

    For its file lock, ``to_netcdf`` looks up the active Dask scheduler, which imports
    ``dask.distributed`` wherever Dask is installed, even for a dataset of NumPy arrays
    (``advdyn/cli/README.md``). For such a dataset (advdyn's results) the store is opened
    here, with a lock private to this call (the file is a fresh temporary one), and the
    dataset's ``unlimited_dims`` encoding is passed on. A dataset with Dask chunks, or with
    an attribute that is not a string or a number (which ``to_netcdf`` refuses with a
    message naming it), goes through ``to_netcdf``.
    The caller holds `NETCDF_LOCK`.
    """
    plain = all(_plain_attrs(v.attrs) for v in ds.variables.values()) and _plain_attrs(ds.attrs)
    if not plain or any(v.chunks is not None for v in ds.variables.values()):
        ds.to_netcdf(path, engine="netcdf4")
        return
    from xarray.backends import NetCDF4DataStore

    store = NetCDF4DataStore.open(str(path), mode="w", lock=threading.Lock())
    try:
        ds.dump_to_store(store, unlimited_dims=ds.encoding.get("unlimited_dims"))
    finally:
        store.close()


def _plain_attrs(attrs: Mapping) -> bool:
    """Whether every attribute is a string or a (non-boolean) number."""
    return all(
        isinstance(v, (str, int, float, np.integer, np.floating))
        and not isinstance(v, (bool, np.bool_))
        for v in attrs.values()
    )


def read_netcdf(path: str | Path) -> xr.Dataset:
    """Load a result file fully into memory (the file is closed on return).

    Parameters
    ----------
    path : str or Path
        A NetCDF file written by [`write_netcdf`][advdyn.io.netcdf.write_netcdf].

    Returns
    -------
    xarray.Dataset
        The loaded dataset.
    """
    with NETCDF_LOCK, xr.open_dataset(path, engine="netcdf4") as ds:
        return ds.load()


def to_dataset(solution: Solution, attrs: Mapping[str, object] | None = None) -> xr.Dataset:
    """Label a solver's [`Solution`][advdyn.solution.Solution] as an xarray dataset.

    Parameters
    ----------
    solution : Solution
        What [`solve_ode`][advdyn.theory.solve_ode], [`simulate_sgd`][advdyn.simulate.simulate_sgd],
        [`simulate_hsgd`][advdyn.simulate.simulate_hsgd] or
        [`solve_ridge_ode`][advdyn.theory.solve_ridge_ode]
        returned.
    attrs : mapping, optional
        Extra attributes (e.g. the config as JSON).

    Returns
    -------
    xarray.Dataset
        See [`make_dataset`][advdyn.io.netcdf.make_dataset]; the solution's ``stats`` become
        attributes.
    """
    return make_dataset(
        np.asarray(solution.ts),
        solution.ys,
        solution.method,
        replicates=solution.replicated,
        attrs={**dict(solution.stats), **dict(attrs or {})},
    )


def as_dataset(result: xr.Dataset | Solution, field: str = "result") -> xr.Dataset:
    """``result`` as a dataset (a [`Solution`][advdyn.solution.Solution] is labelled first).

    Parameters
    ----------
    result : Dataset or Solution
    field : str
        Name of the argument in the error message.

    Returns
    -------
    xarray.Dataset

    Raises
    ------
    ConfigError
        If ``result`` is neither.
    """
    if isinstance(result, xr.Dataset):
        return result
    if not (hasattr(result, "ts") and hasattr(result, "ys")):  # (a Solution; not imported:
        from advdyn.errors import ConfigError  # JAX stays out of a figure's process)

        raise ConfigError(field, "must be an advdyn.Solution or an xarray.Dataset, got "
                          f"{type(result).__name__}")
    return to_dataset(result)
