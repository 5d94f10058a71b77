"""Merging per-point datasets into one dataset with the swept fields as dimensions."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr

from advdyn.workflows.sweep.points import grid_points


def _coord(values: list) -> np.ndarray:
    if all(isinstance(v, bool) for v in values):
        return np.array(values, dtype=bool)
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return np.array(values)
    return np.array([",".join(map(str, v)) if isinstance(v, list) else str(v) for v in values])


def merge_points(grid: dict[str, list], results: Mapping[str, Any]) -> xr.Dataset:
    """Merge per-point datasets into one dataset with the swept fields as dimensions.

    Parameters
    ----------
    grid : dict of str to list
        Swept fields (the new dimensions, named by the dotted field) and their values
        (coordinates; list values such as ``run.methods`` become comma-joined strings).
    results : dict of point id to Dataset or str
        A finished point's dataset, or the error message of a failed one; missing points
        count as failed with an empty message.

    Returns
    -------
    xarray.Dataset
        Every variable of any point on ``(swept fields..., own dims...)``; missing values
        (failed points, variables a point did not record, shorter ``time`` or ``replicate``
        axes) are NaN. ``error`` holds each point's error message (empty when it finished),
        ``point_id`` its id. A dimension's coordinate is kept when every point that has it
        agrees on its values (a ``time`` grid that differs between points, e.g. when ``d``
        or ``t_max`` is swept, is stored instead as the variable ``time_value`` on the swept
        dimensions and ``time``).
    """
    keys = list(grid)
    shape = tuple(len(grid[k]) for k in keys)
    points = grid_points(grid)
    done: dict[str, Any] = {
        p.id: results[p.id] for p in points if isinstance(results.get(p.id), xr.Dataset)
    }

    # variables: their own dims and the largest size of each dim over the points
    var_dims: dict[Any, tuple] = {}
    sizes: dict[Any, int] = {}
    coords: dict[Any, Any] = {}
    for ds in done.values():
        for name, da in ds.data_vars.items():
            var_dims.setdefault(name, da.dims)
        for dim, n in ds.sizes.items():
            sizes[dim] = max(sizes.get(dim, 0), n)
    for dim in sizes:
        values = [np.asarray(ds[dim].values) for ds in done.values() if dim in ds.coords]
        longest = max(values, key=len, default=None)
        agree = longest is not None and all(
            np.array_equal(v, longest[: len(v)]) and len(v) == len(longest) for v in values
        )
        coords[dim] = longest if agree else None

    data_vars: dict[str, Any] = {}
    for name, dims in var_dims.items():
        full = np.full(shape + tuple(sizes[d] for d in dims), np.nan)
        for p in points:
            ds = done.get(p.id)
            if ds is None or name not in ds:
                continue
            arr = np.asarray(ds[name].transpose(*dims).values, dtype=np.float64)
            full[p.index + tuple(slice(0, n) for n in arr.shape)] = arr
        data_vars[name] = (tuple(keys) + tuple(dims), full, _var_attrs(done, name))
    for dim, c in coords.items():
        if c is None:
            vals = np.full((*shape, sizes[dim]), np.nan)
            for p in points:
                ds = done.get(p.id)
                if ds is not None and dim in ds.coords:
                    v = np.asarray(ds[dim].values, dtype=np.float64)
                    where: tuple[Any, ...] = (*p.index, slice(0, len(v)))
                    vals[where] = v
            data_vars[f"{dim}_value"] = ((*keys, dim), vals)
    errors = np.full(shape, "", dtype=object)
    ids = np.full(shape, "", dtype=object)
    for p in points:
        ids[p.index] = p.id
        r = results.get(p.id)
        if not isinstance(r, xr.Dataset):
            errors[p.index] = r if isinstance(r, str) and r else "not run"
    data_vars["error"] = (tuple(keys), errors.astype(str))
    data_vars["point_id"] = (tuple(keys), ids.astype(str))
    all_coords = {k: _coord(grid[k]) for k in keys}
    all_coords.update({d: c for d, c in coords.items() if c is not None})
    merged = xr.Dataset(data_vars, coords=all_coords)
    merged.attrs["swept_fields"] = json.dumps(keys)
    return merged


def _var_attrs(done: dict, name: str) -> dict:
    """Attributes of variable ``name`` in the first finished point that has it."""
    for ds in done.values():
        if name in ds:
            return {k: v for k, v in ds[name].attrs.items() if isinstance(v, str | int | float)}
    return {}
