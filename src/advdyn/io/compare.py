"""Comparing methods: the largest relative gap between a reference and a replicate mean."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import xarray as xr

from advdyn.io.netcdf import as_dataset

if TYPE_CHECKING:
    from advdyn.solution import Solution


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


def compare(
    reference: xr.Dataset | Solution, other: xr.Dataset | Solution
) -> dict[str, dict[str, float]]:
    """Largest relative gap over time between the replicate mean of ``other`` and ``reference``.

    Parameters
    ----------
    reference : Dataset or Solution
        Typically the ODE (no replicate dimension).
    other : Dataset or Solution
        Typically SGD; averaged over ``replicate`` if present.

    Returns
    -------
    dict
        For each quantity recorded by both except ``lr`` (and those NaN at every time,
        such as ``dist_to_opt`` when the optimum is not unique): ``max_relative_gap`` (see
        [`relative_gap`][advdyn.io.compare.relative_gap]), ``at_time`` where it occurs, and
        ``max_abs_gap``. ``other``
        is interpolated linearly onto the reference times.

    Raises
    ------
    ConfigError
        If an argument is neither a Solution nor a Dataset (naming it).
    """
    reference, other = as_dataset(reference, "reference"), as_dataset(other, "other")
    mean = other.mean("replicate") if "replicate" in other.dims else other
    out: dict[str, dict[str, float]] = {}
    for name in reference.data_vars:
        if name not in mean.data_vars or name == "lr":
            continue
        ref, est = reference[name], mean[name].interp(time=reference.time)
        rel = xr.DataArray(relative_gap(ref, est))
        if np.all(np.isnan(np.asarray(rel))):  # e.g. dist_to_opt of an optimum not found
            continue
        i = int(np.nanargmax(np.asarray(rel)))
        out[str(name)] = {
            "max_relative_gap": float(rel.values[i]),
            "at_time": float(reference.time.values[i]),
            "max_abs_gap": float(np.nanmax(np.abs(np.asarray(est) - np.asarray(ref)))),
        }
    return out


def gap_over_time(
    reference: xr.Dataset, other: xr.Dataset, names: tuple[str, ...] = ("adv_risk",),
    d: float | None = None,
) -> dict[str, dict[str, list[float] | float]]:
    """The relative gap of a replicate mean to a reference at every recorded time.

    Parameters
    ----------
    reference : Dataset
        Typically the ODE.
    other : Dataset
        Typically SGD, with a ``replicate`` dimension.
    names : tuple of str
        Quantities compared (those missing from either are skipped).
    d : int, optional
        Dimension: adds ``fluctuation_scale = d^-1/2``, the relative size of one run's
        fluctuations around the ``d -> inf`` limit.

    Returns
    -------
    dict
        Per quantity: ``time``, ``relative_gap`` (signed, ``(mean - ref) / |ref|`` with the
        floor of [`relative_gap`][advdyn.io.compare.relative_gap]), ``relative_spread``
        (standard deviation over replicates, same scale), ``max_abs_relative_gap`` and, with
        ``d``, ``fluctuation_scale``.
    """
    out: dict[str, dict[str, list[float] | float]] = {}
    for name in names:
        if name not in reference.data_vars or name not in other.data_vars:
            continue
        ref = np.asarray(reference[name], np.float64)
        est = other[name].interp(time=reference.time)
        values = np.asarray(est, np.float64).reshape(-1, ref.size)
        scale = np.maximum(np.abs(ref), 1e-2 * float(np.abs(ref).max()))
        gap = (values.mean(axis=0) - ref) / scale
        spread = (values.std(axis=0, ddof=1) if values.shape[0] > 1
                  else np.zeros_like(ref)) / scale
        entry: dict[str, list[float] | float] = {
            "time": [float(t) for t in reference.time.values],
            "relative_gap": [float(v) for v in gap],
            "relative_spread": [float(v) for v in spread],
            "max_abs_relative_gap": float(np.nanmax(np.abs(gap))),
        }
        if d is not None:
            entry["fluctuation_scale"] = float(d) ** -0.5
        out[name] = entry
    return out
