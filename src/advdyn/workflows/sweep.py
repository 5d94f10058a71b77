"""Parameter sweeps: a grid over config fields, run point by point on Dask distributed.

A sweep file (TOML) names a base config and a grid of dotted config fields::

    base = "base.toml"              # a run config, relative to this file (or an inline [base])
    kind = "run"                    # what each point computes (a registered point kind)
    out = "sweep-out"               # result folder, relative to this file (--out overrides)

    [overrides]                     # optional: applied to every point before the grid values
    "run.methods" = ["ode"]
    "run.bins" = 64

    [grid]                          # the swept fields and their values
    "problem.epsilon" = [0.0, 0.25, 0.5]
    "lr.gamma" = [0.2, 0.4, 0.8]

Every combination of grid values is a *point*, identified by a stable id (a hash of its grid
values, :func:`point_id`). Points run as tasks on a Dask cluster (a ``LocalCluster`` of worker
processes by default, or an existing scheduler). As each finishes, the client writes it
atomically to ``points/<id>.nc`` and ``points/<id>.json``; a failing point (invalid value,
divergence, any exception) is written to ``points/<id>.error.json`` and the sweep goes on.
Re-running a sweep skips every point whose files record the same fingerprint (base config,
point overrides and kind); failed points are skipped too unless ``retry_failed``. Finally all
points are merged into one dataset with the swept fields as dimensions (:func:`merge_points`),
written atomically to ``sweep.nc``, with a summary in ``sweep.json``.

What a point computes is a registered *point kind*: a function ``Config -> xarray.Dataset``
(:func:`register_point_kind`). ``"run"`` runs :func:`advdyn.pipeline.run` and keeps every
method's recorded quantities as ``<method>_<name>`` variables; a kind returning scalars (such
as a limiting risk for a phase diagram) merges the same way.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from advdyn._version import __version__
from advdyn.config.schema import (
    Config,
    format_validation_error,
    load_config,
    read_toml,
    validate_config,
)
from advdyn.errors import ConfigError
from advdyn.io import read_netcdf, write_json, write_netcdf
from advdyn.workflows.progress import progress_bar

PointFunction = Callable[[Config], xr.Dataset]
_POINT_KINDS: dict[str, PointFunction] = {}
_SECTIONS = ("problem", "lr", "run")


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


@register_point_kind("run")
def run_point(config: Config) -> xr.Dataset:
    """Point kind ``"run"``: :func:`advdyn.pipeline.run` without writing files.

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
        ``ode_bins_rel_change`` with spectral bins.
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
    if "bins" in result.summary:
        data["ode_bins_rel_change"] = xr.DataArray(result.summary["bins"]["bins_rel_change"])
    out = xr.Dataset(data)
    out.attrs["wall_time_s"] = json.dumps(result.summary["wall_time_s"])
    return out


@register_point_kind("limit")
def limit_point(config: Config) -> xr.Dataset:
    """Point kind ``"limit"``: the constant-rate limit report (:func:`advdyn.limits.limit_report`).

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
    from advdyn.workflows.bins import spectral_instances
    from advdyn.workflows.limits import constant_rate, limit_report

    gamma = constant_rate(config)
    instance, binned = spectral_instances(config.with_overrides(**{"run.methods": ["ode"]}))
    report = limit_report(binned if binned is not None else instance, gamma)
    names = ("adv_risk_opt", "adv_risk_limit", "clean_risk_limit", "norm_limit",
             "dist_to_opt_limit", "lambda_opt", "lambda_eff")
    data = {k: xr.DataArray(np.nan if report[k] is None else float(report[k])) for k in names}
    data["converges"] = xr.DataArray(float(report["converges"]))
    return xr.Dataset(data)


# ----------------------------------------------------------------------------- sweep file
class SweepConfig(BaseModel):
    """A validated sweep file (frozen, unknown keys refused).

    Not a subclass of the config's ``_Model``: its ``kind`` default (``"run"``) would be taken
    for a union tag by the config's error formatting and dropped from field locations.

    Attributes
    ----------
    base : Path or dict
        The base run config: a TOML file (relative to the sweep file) or an inline table
        with ``problem``, ``lr`` and ``run`` sections.
    kind : str
        Registered point kind (``"run"`` by default).
    grid : dict of str to list
        Dotted config fields (``problem.epsilon``, ``lr.gamma``, ``problem.spectrum.exponent``,
        ``problem.d``, ``problem.seed``, ``run.methods``, ...) and their values; at least one
        field, each with at least one value, no value repeated.
    overrides : dict of str to value
        Dotted fields set on every point before the grid values.
    out : Path, optional
        Result folder (relative to the sweep file).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    base: Path | dict[str, Any]
    kind: str = "run"
    grid: dict[str, list[Any]] = Field(min_length=1)
    overrides: dict[str, Any] = Field(default_factory=dict)
    out: Path | None = None

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, value):
        if value not in _POINT_KINDS:
            raise ValueError(f"unknown point kind {value!r} (known: {', '.join(_POINT_KINDS)})")
        return value

    @field_validator("grid", "overrides")
    @classmethod
    def _dotted(cls, value, info):
        for key, values in value.items():
            parts = key.split(".")
            if len(parts) < 2 or parts[0] not in _SECTIONS or not all(parts):
                raise ValueError(
                    f"{key!r}: a dotted config field starting with problem., lr. or run."
                )
            if info.field_name == "grid":
                if len(values) == 0:
                    raise ValueError(f"{key!r}: needs at least one value")
                canon = [_canonical(v) for v in values]
                if len(set(canon)) != len(canon):
                    raise ValueError(f"{key!r}: repeated values")
        return value


@dataclass(frozen=True)
class SweepSpec:
    """A sweep ready to run: the validated file, the base config and the folder.

    Attributes
    ----------
    sweep : SweepConfig
        The validated sweep file.
    base : Config
        The validated base run config.
    out : Path or None
        Result folder from the file (resolved), if any.
    """

    sweep: SweepConfig
    base: Config
    out: Path | None = None


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def load_sweep(path: str | Path) -> SweepSpec:
    """Read and validate a sweep file and its base config.

    Parameters
    ----------
    path : str or Path
        The sweep TOML file.

    Returns
    -------
    SweepSpec

    Raises
    ------
    ConfigError
        If the file is missing or invalid, or the base config is (naming the field).
    """
    path = Path(path)
    return sweep_from_dict(read_toml(path, "sweep"), base_dir=path.resolve().parent)


def sweep_from_dict(data: dict, base_dir: str | Path | None = None) -> SweepSpec:
    """Validate a sweep given as a mapping (the contents of a sweep file).

    Parameters
    ----------
    data : dict
        ``base``, ``grid`` and optionally ``kind``, ``overrides``, ``out``.
    base_dir : path, optional
        Folder against which ``base`` and ``out`` (and relative paths inside an inline base)
        are resolved; the current folder when omitted.

    Returns
    -------
    SweepSpec

    Raises
    ------
    ConfigError
        Naming the offending field (``sweep.<field>`` or the base config's field).
    """
    base_dir = Path(base_dir) if base_dir is not None else Path.cwd()
    try:
        sweep = SweepConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError("sweep", f"invalid sweep: {format_validation_error(err)}") from None
    if isinstance(sweep.base, dict):
        base = validate_config(sweep.base, base_dir=base_dir)
    else:
        base_path = sweep.base if sweep.base.is_absolute() else base_dir / sweep.base
        base = load_config(base_path)
    out = None
    if sweep.out is not None:
        out = sweep.out if sweep.out.is_absolute() else base_dir / sweep.out
    return SweepSpec(sweep, base, out)


# ----------------------------------------------------------------------------- points
def point_id(values: dict[str, Any]) -> str:
    """Stable id of a grid point: a hash of its swept fields and values.

    Parameters
    ----------
    values : dict
        Swept field to value (the grid coordinates of the point).

    Returns
    -------
    str
        ``"p"`` followed by 16 hexadecimal digits; the same values give the same id in any
        run, on any machine.
    """
    return "p" + hashlib.sha256(_canonical(values).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Point:
    """One point of the grid.

    Attributes
    ----------
    id : str
        :func:`point_id` of ``values``.
    index : tuple of int
        Position along each swept field.
    values : dict
        Swept field to value.
    """

    id: str
    index: tuple[int, ...]
    values: dict


def grid_points(grid: dict[str, list]) -> list[Point]:
    """All points of a grid, in row-major order of its fields.

    Parameters
    ----------
    grid : dict of str to list
        Swept fields and their values.

    Returns
    -------
    list of Point
    """
    keys = list(grid)
    points = []
    for index in itertools.product(*(range(len(grid[k])) for k in keys)):
        values = {k: grid[k][i] for k, i in zip(keys, index, strict=True)}
        points.append(Point(point_id(values), index, values))
    return points


def _fingerprint(spec: SweepSpec, point: Point) -> str:
    text = _canonical(
        {"base": spec.base.to_json(), "kind": spec.sweep.kind,
         "overrides": spec.sweep.overrides, "values": point.values}
    )
    return hashlib.sha256(text.encode()).hexdigest()


def point_config(spec: SweepSpec, point: Point) -> Config:
    """The point's configuration: the base with the sweep overrides, then the grid values.

    Parameters
    ----------
    spec : SweepSpec
        The sweep.
    point : Point
        The point.

    Returns
    -------
    Config

    Raises
    ------
    ConfigError
        If a value is invalid (the message names the field).
    """
    return spec.base.with_overrides(**{**spec.sweep.overrides, **point.values})


def execute_point(fn: PointFunction, config: Config) -> tuple[str, Any, float]:
    """Run one point (on a worker); never raises.

    Parameters
    ----------
    fn : callable
        The point kind's function.
    config : Config
        The point's configuration.

    Returns
    -------
    status : {"done", "failed"}
    payload : xarray.Dataset or dict
        The dataset, or ``{"error_type", "error", "traceback"}``.
    wall_s : float
        Seconds spent.
    """
    start = time.perf_counter()
    try:
        ds = fn(config)
        return "done", ds, time.perf_counter() - start
    except Exception as err:  # recorded, the sweep goes on
        tb = traceback.format_exception_only(type(err), err)[-1].strip()
        return "failed", {"error_type": type(err).__name__, "error": str(err), "traceback": tb}, (
            time.perf_counter() - start
        )


def _paths(out: Path, pid: str) -> dict[str, Path]:
    d = out / "points"
    return {"nc": d / f"{pid}.nc", "json": d / f"{pid}.json", "error": d / f"{pid}.error.json"}


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _point_status(out: Path, point: Point, fingerprint: str) -> str | None:
    """``"done"`` / ``"failed"`` when files with this fingerprint exist, else ``None``."""
    p = _paths(out, point.id)
    meta = _read_json(p["json"])
    if meta is not None and meta.get("fingerprint") == fingerprint and p["nc"].is_file():
        return "done"
    err = _read_json(p["error"])
    if err is not None and err.get("fingerprint") == fingerprint:
        return "failed"
    return None


def _record(out: Path, point: Point, fingerprint: str, status: str, payload, wall: float,
            config_json: str | None) -> None:
    p = _paths(out, point.id)
    meta = {"id": point.id, "values": point.values, "fingerprint": fingerprint,
            "status": status, "wall_time_s": wall, "config": config_json,
            "advdyn_version": __version__}
    if status == "done":
        write_netcdf(payload, p["nc"])
        write_json(meta, p["json"])
        p["error"].unlink(missing_ok=True)
    else:
        write_json({**meta, **payload}, p["error"])
        p["json"].unlink(missing_ok=True)
        p["nc"].unlink(missing_ok=True)


# ----------------------------------------------------------------------------- merging
def _coord(values: list) -> np.ndarray:
    if all(isinstance(v, bool) for v in values):
        return np.array(values, dtype=bool)
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return np.array(values)
    return np.array([",".join(map(str, v)) if isinstance(v, list) else str(v) for v in values])


def merge_points(grid: dict[str, list], results: dict[str, xr.Dataset | str]) -> xr.Dataset:
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
    done = {p.id: results[p.id] for p in points if isinstance(results.get(p.id), xr.Dataset)}

    # variables: their own dims and the largest size of each dim over the points
    var_dims: dict[str, tuple] = {}
    sizes: dict[str, int] = {}
    coords: dict[str, np.ndarray | None] = {}
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

    data_vars = {}
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
                    vals[(*p.index, slice(0, len(v)))] = v
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


# ----------------------------------------------------------------------------- running
@dataclass
class SweepResult:
    """What :func:`run_sweep` produced.

    Attributes
    ----------
    dataset : xarray.Dataset
        The merged dataset (also written to ``sweep.nc``).
    summary : dict
        Contents of ``sweep.json``: counts (``points``, ``run``, ``skipped``, ``done``,
        ``failed``; ``run`` counts the tasks executed, ``invalid`` the points refused at
        validation, ``skipped`` those already recorded), ``errors`` (id to values and
        message), the grid, ``wall_time_s``.
    files : dict of str to Path
        ``"dataset"`` (``sweep.nc``), ``"summary"`` (``sweep.json``) and the points folder.
    """

    dataset: xr.Dataset
    summary: dict
    files: dict[str, Path] = field(default_factory=dict)


def _make_client(scheduler: str | None, workers: int | None, n_tasks: int):
    from dask.distributed import Client, LocalCluster

    if scheduler is not None:
        return Client(scheduler), None
    n = workers if workers is not None else max(1, min(os.cpu_count() or 1, n_tasks))
    cluster = LocalCluster(
        n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
        silence_logs=logging.ERROR,
    )
    return Client(cluster), cluster


def run_sweep(
    spec: SweepSpec,
    out_dir: str | Path | None = None,
    *,
    client=None,
    scheduler: str | None = None,
    workers: int | None = None,
    retry_failed: bool = False,
    progress: bool = False,
) -> SweepResult:
    """Run (or resume) a sweep and write its merged result.

    Parameters
    ----------
    spec : SweepSpec
        From :func:`load_sweep` or :func:`sweep_from_dict`.
    out_dir : path, optional
        Result folder; default ``spec.out``.
    client : dask.distributed.Client, optional
        Use this client (e.g. a cluster shared by several sweeps); it is left open.
    scheduler : str, optional
        Address of a running Dask scheduler (``tcp://host:8786``); the workers must see
        the same files (spectrum files of the config). Ignored when ``client`` is given.
    workers : int, optional
        Worker processes of the ``LocalCluster`` started when neither ``client`` nor
        ``scheduler`` is given (default: the number of CPUs, at most the number of points
        to run).
    retry_failed : bool
        Run again points whose recorded run failed (by default they are kept as failed).
    progress : bool
        Show a progress bar of points done.

    Returns
    -------
    SweepResult

    Raises
    ------
    ConfigError
        If no output folder is given.
    """
    out = Path(out_dir) if out_dir is not None else spec.out
    if out is None:
        raise ConfigError("out", "no output folder: set `out` in the sweep file or pass one")
    start = time.perf_counter()
    grid = spec.sweep.grid
    fn = _POINT_KINDS[spec.sweep.kind]
    points = grid_points(grid)
    todo, skipped = [], 0
    invalid = 0
    for p in points:
        fp = _fingerprint(spec, p)
        status = _point_status(out, p, fp)
        if status == "done" or (status == "failed" and not retry_failed):
            skipped += 1
            continue
        try:
            cfg = point_config(spec, p)
        except ConfigError as err:  # invalid value: recorded without a task
            payload = {"error_type": "ConfigError", "error": str(err), "traceback": ""}
            _record(out, p, fp, "failed", payload, 0.0, None)
            invalid += 1
            continue
        todo.append((p, fp, cfg))

    with progress_bar(f"sweep ({spec.sweep.kind})", total=len(points), enabled=progress) as adv:
        adv(len(points) - len(todo))
        if todo:
            own = client is None
            if own:
                client, cluster = _make_client(scheduler, workers, len(todo))
            try:
                from dask.distributed import as_completed

                futures = {}
                for p, fp, cfg in todo:
                    key = f"point-{p.id}-{uuid.uuid4().hex[:8]}"
                    fut = client.submit(execute_point, fn, cfg, pure=False, key=key)
                    futures[fut] = (p, fp, cfg)
                for fut in as_completed(list(futures)):
                    p, fp, cfg = futures[fut]
                    try:
                        status, payload, wall = fut.result()
                    except Exception as err:  # worker died, task lost, ...
                        status, wall = "failed", 0.0
                        payload = {"error_type": type(err).__name__, "error": str(err),
                                   "traceback": ""}
                    _record(out, p, fp, status, payload, wall, cfg.to_json())
                    adv(1)
                    fut.release()
            finally:
                if own:
                    client.close()
                    if cluster is not None:
                        cluster.close()

    results: dict[str, xr.Dataset | str] = {}
    errors = {}
    for p in points:
        paths = _paths(out, p.id)
        if paths["nc"].is_file():
            results[p.id] = read_netcdf(paths["nc"])
        else:
            err = _read_json(paths["error"]) or {}
            msg = f"{err.get('error_type', 'Error')}: {err.get('error', 'not run')}"
            results[p.id] = msg
            errors[p.id] = {"values": p.values, "error": msg}
    merged = merge_points(grid, results)
    merged.attrs.update({"kind": spec.sweep.kind, "advdyn_version": __version__,
                         "base_config": spec.base.to_json(),
                         "overrides": _canonical(spec.sweep.overrides)})
    summary = {
        "advdyn_version": __version__,
        "kind": spec.sweep.kind,
        "grid": grid,
        "overrides": spec.sweep.overrides,
        "points": len(points),
        "run": len(todo),
        "invalid": invalid,
        "skipped": skipped,
        "done": len(points) - len(errors),
        "failed": len(errors),
        "errors": errors,
        "wall_time_s": time.perf_counter() - start,
    }
    files = {"dataset": write_netcdf(merged, out / "sweep.nc"),
             "summary": write_json(summary, out / "sweep.json"),
             "points": out / "points"}
    return SweepResult(merged, summary, files)
