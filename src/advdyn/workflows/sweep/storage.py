"""Point files of a sweep: status by fingerprint, atomic records, stale temporary files.

A point is *done* only when ``points/<id>.json`` records the expected fingerprint **and**
``points/<id>.nc`` opens and carries the same fingerprint in its attributes; a point file
that is truncated, empty or from another sweep is reported and run again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import xarray as xr

from advdyn._version import __version__
from advdyn.io import read_netcdf, write_json, write_netcdf
from advdyn.workflows.sweep.points import Point

FINGERPRINT_ATTR = "sweep_fingerprint"


def point_paths(out: Path, pid: str) -> dict[str, Path]:
    """Files of point ``pid`` in the result folder ``out``: ``nc``, ``json`` and ``error``."""
    d = out / "points"
    return {"nc": d / f"{pid}.nc", "json": d / f"{pid}.json", "error": d / f"{pid}.error.json"}


def read_json(path: Path) -> dict | None:
    """Contents of a JSON file, or ``None`` when it is missing or unreadable."""
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def open_point(path: Path, fingerprint: str) -> xr.Dataset | None:
    """The point dataset at ``path`` if it opens and carries ``fingerprint``, else ``None``."""
    if not path.is_file():
        return None
    try:
        ds = read_netcdf(path)
    except Exception:  # truncated, empty, not NetCDF: any reader error means "not done"
        return None
    if ds.attrs.get(FINGERPRINT_ATTR) != fingerprint:
        return None
    return ds


def point_status(out: Path, point: Point, fingerprint: str) -> tuple[str | None, str]:
    """Recorded status of a point and, when its files cannot be trusted, why.

    Parameters
    ----------
    out : Path
        Result folder.
    point : Point
        The point.
    fingerprint : str
        Its expected fingerprint.

    Returns
    -------
    status : {"done", "failed"} or None
        ``None`` when the point must run.
    problem : str
        Empty, or why existing files were not accepted (e.g. a corrupt ``.nc``).
    """
    p = point_paths(out, point.id)
    meta = read_json(p["json"])
    if meta is not None and meta.get("fingerprint") == fingerprint:
        if open_point(p["nc"], fingerprint) is not None:
            return "done", ""
        if p["nc"].is_file():
            return None, f"{p['nc'].name} does not open or does not match its fingerprint"
        return None, f"{p['nc'].name} is missing"
    err = read_json(p["error"])
    if err is not None and err.get("fingerprint") == fingerprint:
        return "failed", ""
    return None, ""


def record_point(out: Path, point: Point, fingerprint: str, status: str, payload: Any,
                 wall: float, config_json: str | None) -> None:
    """Write a finished (``.nc`` then ``.json``) or failed (``.error.json``) point atomically.

    Parameters
    ----------
    out : Path
        Result folder.
    point : Point
        The point.
    fingerprint : str
        Its fingerprint (stored in the ``.nc`` attributes and the JSON files).
    status : {"done", "failed"}
        What happened.
    payload : xarray.Dataset or dict
        The dataset, or the error description.
    wall : float
        Seconds spent.
    config_json : str or None
        The point's configuration as JSON.
    """
    p = point_paths(out, point.id)
    meta = {"id": point.id, "values": point.values, "fingerprint": fingerprint,
            "status": status, "wall_time_s": wall, "config": config_json,
            "advdyn_version": __version__}
    if status == "done":
        ds = payload.copy()
        ds.attrs[FINGERPRINT_ATTR] = fingerprint
        write_netcdf(ds, p["nc"])
        write_json(meta, p["json"])
        p["error"].unlink(missing_ok=True)
    else:
        write_json({**meta, **payload}, p["error"])
        p["json"].unlink(missing_ok=True)
        p["nc"].unlink(missing_ok=True)


def remove_stale_temporaries(out: Path) -> list[Path]:
    """Delete temporary files that interrupted atomic writes left in ``out`` and ``points/``.

    Call it only while holding the folder's lock (another process's writes in progress
    would otherwise be removed).

    Parameters
    ----------
    out : Path
        Result folder.

    Returns
    -------
    list of Path
        The files removed.
    """
    candidates: list[Path] = []
    if (out / "points").is_dir():
        candidates += (out / "points").glob(".p*.*")  # .<point id>.<ext>.<random>.tmp
    if out.is_dir():
        for name in ("sweep.nc", "sweep.json", "phase.png"):
            candidates += out.glob(f".{name}.*")
    removed = []
    for tmp in candidates:
        if tmp.is_file():
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed
