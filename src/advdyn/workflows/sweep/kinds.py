"""Registry of point kinds: what one point of a sweep computes (``Config -> Dataset``)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import xarray as xr

from advdyn.config.schema import Config

PointFunction = Callable[[Config], xr.Dataset]
_POINT_KINDS: dict[str, PointFunction] = {}


def register_point_kind(name: str) -> Callable[[PointFunction], PointFunction]:
    """Register ``fn(config) -> xarray.Dataset`` as the point kind ``name``.

    The dataset must not use the swept fields as dimensions; its variables may have any
    dimensions of their own (``time``, ``replicate``, ...) or none (scalars).

    Dask sends the function itself to the workers (by reference when it lives in an
    importable module, by value when it is defined in ``__main__``), so kinds registered in
    a script work on a local cluster too.

    Parameters
    ----------
    name : str
        The ``kind`` a sweep file uses.

    Returns
    -------
    callable
        A decorator that registers and returns the function.
    """

    def decorate(fn: PointFunction) -> PointFunction:
        _POINT_KINDS[name] = fn
        return fn

    return decorate


def point_kinds() -> tuple[str, ...]:
    """Names of the registered point kinds."""
    return tuple(_POINT_KINDS)


def point_function(name: str) -> PointFunction:
    """The function of the registered point kind ``name``."""
    return _POINT_KINDS[name]


@register_point_kind("run")
def run_point(config: Config) -> xr.Dataset:
    """Point kind ``"run"``: `advdyn.workflows.run.run` without writing files.

    Parameters
    ----------
    config : Config
        The point's configuration.

    Returns
    -------
    xarray.Dataset
        ``<method>_<quantity>`` for every recorded quantity of every method (ODE on
        ``time``, SGD/HSGD on ``(replicate, time)``), ``<method>_gap_<quantity>`` (largest
        relative gap to the ODE, scalars) when the ODE ran with another method, and
        ``ode_bins_rel_change`` with spectral bins and their check (``run.bins_check``).
    """
    from advdyn.workflows.run import run

    result = run(config)
    data = {}
    for method, ds in result.datasets.items():
        for name, da in ds.data_vars.items():
            data[f"{method}_{name}"] = da
    for method, gaps in result.summary.get("gap_vs_ode", {}).items():
        for name, gap in gaps.items():
            data[f"{method}_gap_{name}"] = xr.DataArray(gap["max_relative_gap"])
    bins = result.summary.get("bins", {})
    if "bins_rel_change" in bins:  # (absent with run.bins_check = false)
        data["ode_bins_rel_change"] = xr.DataArray(bins["bins_rel_change"])
    out = xr.Dataset(data)
    for method, seconds in result.summary["wall_time_s"].items():
        out.attrs[f"wall_time_s_{method}"] = float(seconds)
    return out


@register_point_kind("limit")
def limit_point(config: Config) -> xr.Dataset:
    """Point kind ``"limit"``: the constant-rate limit report (`.limits.limit_from_config`).

    Uses the config's constant learning rate, and spectral bins when ``run.bins`` is set
    (then no instance is drawn for an isotropic config).

    Parameters
    ----------
    config : Config
        The point's configuration; ``lr.kind`` must be ``"constant"``.

    Returns
    -------
    xarray.Dataset
        Scalars ``adv_risk_opt``, ``adv_risk_limit``, ``clean_risk_limit``, ``norm_limit``,
        ``dist_to_opt_limit``, ``lambda_opt``, ``lambda_eff`` (NaN where not defined) and
        ``converges`` (1.0 or 0.0).

    Raises
    ------
    ConfigError
        If the learning rate is not constant.
    """
    from advdyn.workflows.limits import limit_from_config

    report = limit_from_config(config)  # the config's constant rate, as `advdyn limit` runs it
    names = ("adv_risk_opt", "adv_risk_limit", "clean_risk_limit", "norm_limit",
             "dist_to_opt_limit", "lambda_opt", "lambda_eff")
    data = {k: xr.DataArray(np.nan if report[k] is None else float(report[k])) for k in names}
    data["converges"] = xr.DataArray(float(report["converges"]))
    return xr.Dataset(data)
