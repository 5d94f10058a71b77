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
values, `point_id`). Points run as tasks on a Dask cluster (a ``LocalCluster`` of worker
processes by default, or an existing scheduler). As each finishes, the client writes it
atomically to ``points/<id>.nc`` and ``points/<id>.json``; a failing point (divergence, any
exception) is written to ``points/<id>.error.json`` and the sweep goes on. Grid values that
make an invalid config are refused before any point runs (`check_points`).
Re-running a sweep skips every point whose files record the same fingerprint (base config,
point overrides and kind); failed points are skipped too unless ``retry_failed``. Finally all
points are merged into one dataset with the swept fields as dimensions (`merge_points`),
written atomically to ``sweep.nc``, with a summary in ``sweep.json``.

What a point computes is a registered *point kind*: a function ``Config -> xarray.Dataset``
(`register_point_kind`). ``"run"`` runs `advdyn.workflows.run.run` and keeps every
method's recorded quantities as ``<method>_<name>`` variables; a kind returning scalars (such
as a limiting risk for a phase diagram) merges the same way.

The package has one module per job: `kinds` (registry of
point kinds), `schema` (the sweep file, validated against the
config schema before any point runs), `points` (ids and
fingerprints), `storage` (point files),
`merge` and `execute` (Dask).
"""

from advdyn.workflows.sweep.execute import SweepResult, check_points, execute_point, run_sweep
from advdyn.workflows.sweep.kinds import (
    PointFunction,
    limit_point,
    point_kinds,
    register_point_kind,
    run_point,
)
from advdyn.workflows.sweep.merge import merge_points
from advdyn.workflows.sweep.points import Point, fingerprint, grid_points, point_config, point_id
from advdyn.workflows.sweep.schema import SweepConfig, SweepSpec, load_sweep, sweep_from_dict

__all__ = [
    "Point",
    "PointFunction",
    "SweepConfig",
    "SweepResult",
    "SweepSpec",
    "check_points",
    "execute_point",
    "fingerprint",
    "grid_points",
    "limit_point",
    "load_sweep",
    "merge_points",
    "point_config",
    "point_id",
    "point_kinds",
    "register_point_kind",
    "run_point",
    "run_sweep",
    "sweep_from_dict",
]
