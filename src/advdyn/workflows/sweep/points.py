"""Grid points: stable ids, fingerprints and per-point configurations."""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass
from typing import Any

from advdyn.config.schema import Config
from advdyn.workflows.sweep.schema import SweepSpec, canonical


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
    return "p" + hashlib.sha256(canonical(values).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Point:
    """One point of the grid.

    Attributes
    ----------
    id : str
        `point_id` of ``values``.
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


def fingerprint(spec: SweepSpec, point: Point) -> str:
    """Hash of everything that determines a point's result: base config, kind, values.

    Parameters
    ----------
    spec : SweepSpec
        The sweep.
    point : Point
        The point.

    Returns
    -------
    str
        64 hexadecimal digits; recorded in the point's files and checked on resumption.
    """
    text = canonical(
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
