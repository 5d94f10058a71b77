"""The critical radius eps*(n/d) of a run config from the exact ODE: what ``advdyn
critical-exact`` calls.

`critical_exact` builds the problem of a
[`CriticalExactConfig`][advdyn.config.critical_exact.CriticalExactConfig] as ``advdyn run``
does (a synthetic instance, its spectral bins with ``run.bins``, or a data set's surrogate,
dense or binned), resolves the radii (absolute, or multiples of the problem's radius) and
solves the ODE at each with
[`instance_critical_radius`][advdyn.critical.exact.instance_critical_radius];
`write_critical_exact` writes ``critical_exact.nc``, ``critical_exact.png`` and
``critical_exact.json`` (last) into a held folder, each atomically.

In ``critical_exact.json`` the lists ``eps_star`` and ``eps_star_margin`` (one entry per
recorded ``n/d``) hold a radius, the string ``"inf"`` where eps* lies beyond the largest
radius solved, or ``null`` where it is undefined (the gap-matched one when its floor, the
clean optimum's risk, is not finite; ``warnings`` says so). A radius whose ODE diverges
does not stop the study: its adversarial risk counts as infinite from then on (eps* lies
below it) and ``warnings`` names it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from advdyn._version import __version__
from advdyn.config.critical_exact import DEFAULT_EPS_OVER_RADIUS, CriticalExactConfig
from advdyn.errors import ConfigError
from advdyn.io import write_json, write_netcdf
from advdyn.io.files import folder_lock
from advdyn.precision import float64

#: every file `write_critical_exact` writes
CRITICAL_EXACT_FILES = ("critical_exact.nc", "critical_exact.png", "critical_exact.json")


@dataclass
class CriticalExactPlan:
    """What `plan_critical_exact` resolved: the problem, the rule, the grids.

    Attributes
    ----------
    instance : AbstractInstance
        The instance the ODE runs on (per direction, binned, or a data set's surrogate).
    lr : AbstractLearningRate
        The config's rule.
    times : ndarray
        Recording times ``n/d`` (``advdyn run``'s step-aligned grid).
    eps : ndarray
        The positive radii solved after ``eps = 0``.
    radius : float
        The problem's radius (``nan`` where undefined).
    radius_source : str
        ``"data"`` (the data-scaled radius), ``"problem"`` (`problem_radius` of the instance).
    spectrum : str
        How the spectrum was obtained (``"per direction"``, ``"binned (...)"``, a data
        set's ``"dense"`` or ``"binned (Lanczos, ...)"``).
    ode_options : dict
        Keyword arguments of every ODE solve (from ``[run]``).
    """

    instance: Any
    lr: Any
    times: np.ndarray
    eps: np.ndarray
    radius: float
    radius_source: str
    spectrum: str
    ode_options: dict


@dataclass
class CriticalExactResult:
    """What `critical_exact` produced.

    Attributes
    ----------
    dataset : xarray.Dataset
        [`instance_critical_radius`][advdyn.critical.exact.instance_critical_radius]'s
        variables; attributes add ``radius``, ``radius_source``, ``spectrum`` and
        ``config``.
    summary : dict
        Contents of ``critical_exact.json`` (module docstring); ``warnings`` lists what
        makes a number undefined.
    files : dict of label to Path
        Written files (empty unless `write_critical_exact` wrote them).
    """

    dataset: xr.Dataset
    summary: dict
    files: dict[str, Path] = field(default_factory=dict)


@float64
def plan_critical_exact(config: CriticalExactConfig) -> CriticalExactPlan:
    """Every check and every input of the study that needs no ODE solve (a data set is read,
    cached, and its surrogate built).

    Raises
    ------
    ConfigError
        A data set that cannot be read, a spectrum that cannot run the config or an ODE
        whose estimated memory does not fit (as for ``advdyn run``), or radii given as
        multiples of a radius the problem does not
        define (``critical.eps_over_radius``: give ``critical.eps``).
    """
    from advdyn.config.build import data_problem, make_learning_rate
    from advdyn.critical.exact import problem_radius
    from advdyn.simulate.sgd import time_grid
    from advdyn.workflows.bins import plain_spectral_instances
    from advdyn.workflows.memory import check_memory
    from advdyn.workflows.run import check_data_spectrum

    run_config = config.run_config()
    rc = run_config.run
    check_memory(run_config)  # one radius's ODE at a time, as advdyn run's (naming the field)
    if run_config.problem.data is not None:
        dp = data_problem(run_config.problem)
        check_data_spectrum(run_config, dp)
        instance, radius, source = dp.instance, dp.statistics.radius, "data"
        spectrum = dp.diagnostics["spectrum"]
        if not radius > 0:
            radius = float("nan")
    else:
        drawn, binned = plain_spectral_instances(run_config)
        instance = binned if binned is not None else drawn
        radius, source = problem_radius(instance), "problem"
        spectrum = (f"binned ({rc.bins} bins)" if binned is not None else "per direction")
    crit = config.critical
    if crit.eps is not None:
        eps = np.asarray(crit.eps, np.float64)
    else:
        if not np.isfinite(radius):
            field_name = ("critical.eps_over_radius" if crit.eps_over_radius is not None
                          else "critical.eps")
            raise ConfigError(field_name, "this problem defines no radius to scale by (a "
                              "regression without label noise, or a classification whose "
                              "class means coincide): give absolute radii in critical.eps")
        scale = crit.eps_over_radius or list(DEFAULT_EPS_OVER_RADIUS)
        eps = radius * np.asarray(scale, np.float64)
    times = time_grid(run_config.problem.d, rc.t_max, rc.n_times, rc.block_size).times
    lr = make_learning_rate(config.lr, instance)  # (Polyak is refused by the config)
    ode_options = {"rtol": rc.rtol, "atol": rc.atol, "solver": rc.solver,
                   "divergence_factor": rc.divergence_factor}
    return CriticalExactPlan(instance, lr, np.asarray(times), eps, float(radius), source,
                             spectrum, ode_options)


@float64
def critical_exact(config: CriticalExactConfig,
                   plan: CriticalExactPlan | None = None) -> CriticalExactResult:
    """eps*(n/d) of ``config``'s problem from its exact ODE, at each radius of the plan.

    Parameters
    ----------
    config : CriticalExactConfig
    plan : CriticalExactPlan, optional
        `plan_critical_exact` of ``config``, when already made.

    Returns
    -------
    CriticalExactResult

    Raises
    ------
    ConfigError
        As `plan_critical_exact`.
    """
    from advdyn.critical.exact import instance_critical_radius

    plan = plan_critical_exact(config) if plan is None else plan
    start = time.perf_counter()
    ds = instance_critical_radius(plan.instance, plan.times, plan.eps, plan.lr,
                                  config.critical.margin, **plan.ode_options)
    wall = time.perf_counter() - start
    ds.attrs.update({"radius": plan.radius, "radius_source": plan.radius_source,
                     "spectrum": plan.spectrum, "config": config.to_json(),
                     "advdyn_version": __version__})
    ds["eps"].attrs["meaning"] = "attack radius (l2), eps = 0 first"
    ds["t"].attrs["meaning"] = "samples per dimension n/d"
    star, star_m = ds["eps_star"].values, ds["eps_star_margin"].values

    def listed(v: np.ndarray) -> list:  # JSON has no inf or nan (module docstring)
        return [float(x) if np.isfinite(x) else ("inf" if np.isinf(x) else None) for x in v]

    floor = float(ds.attrs["floor"])
    warnings = []
    if not np.isfinite(floor):
        warnings.append("the clean optimum's risk (the floor of the gap-matched eps*) is not "
                        "finite (its fixed point did not converge): eps_star_margin is "
                        "undefined (null); the paper's eps_star stands")
    warnings += failed_radii(ds)

    summary: dict[str, Any] = {
        "advdyn_version": __version__,
        "d": int(ds.attrs["d"]),
        "loss": config.problem.loss if isinstance(config.problem.loss, str) else "custom",
        "data": config.problem.data is not None,
        "spectrum": plan.spectrum,
        "radius": plan.radius if np.isfinite(plan.radius) else None,
        "radius_source": plan.radius_source,
        "eps": plan.eps.tolist(),
        "margin": config.critical.margin,
        "floor": floor if np.isfinite(floor) else None,
        "t": plan.times.tolist(),
        "eps_star": listed(star),
        "eps_star_margin": listed(star_m),
        "warnings": warnings,
        "wall_time_s": wall,
        "files": list(CRITICAL_EXACT_FILES),
        "config": config.model_dump(mode="json"),
    }
    return CriticalExactResult(ds, summary)


def failed_radii(ds: xr.Dataset) -> list[str]:
    """One warning per radius of ``ds`` (`instance_critical_radius`'s) whose ODE failed,
    naming the radius and the first ``n/d`` it did not reach."""
    from advdyn.solution import RESULTS

    out = []
    for e, code, adv in zip(ds["eps"].values, ds["result"].values, ds["adv_risk"].values,
                            strict=True):
        if code == RESULTS.successful:
            continue
        risk = ds["clean_risk"].values if e == 0 else adv
        lost = ds["t"].values[~np.isfinite(risk)]
        when = f" from n/d = {lost[0]:.4g} on" if lost.size else ""
        what = ("diverged" if code == RESULTS.diverged
                else f"failed ({RESULTS(int(code)).name})")
        if e == 0:
            out.append(f"the clean ODE (eps = 0) {what}{when}: eps_star and eps_star_margin "
                       "are undefined (null) there")
        elif code == RESULTS.diverged:
            out.append(f"the ODE at eps = {e:.6g} {what}{when}: its adversarial risk counts "
                       "as infinite there, so eps* lies below that radius")
        else:
            out.append(f"the ODE at eps = {e:.6g} {what}{when}: eps* is undefined (null) "
                       "where it would need that radius")
    return out


def _radius_units(config: CriticalExactConfig) -> str:
    """What the radii are measured in, for the figure: the features the run sees (a data
    set's ``standardize = "scale"`` rescales them; ``"center"`` only shifts them)."""
    data = config.problem.data
    if data is None:
        return "l2"
    return "l2, standardised feature units" if data.standardize == "scale" else (
        "l2, feature units")


def write_critical_exact(config: CriticalExactConfig, out_dir: str | Path, *,
                         on_start: Callable[[CriticalExactPlan], None] | None = None,
                         ) -> CriticalExactResult:
    """Solve `critical_exact` and write ``critical_exact.nc``, ``critical_exact.png`` and
    ``critical_exact.json`` (last) into ``out_dir``, each atomically, holding the folder.

    ``on_start(plan)``, when given, is called once the folder is held and every check has
    passed, before any ODE solve: a command's status line goes there, so that a refusal is
    the only line it prints.

    Raises
    ------
    ConfigError
        As `plan_critical_exact` (before ``on_start``); ``out_dir`` naming a file, or
        another command writing there (field ``out``).
    """
    from advdyn.plot.critical import plot_exact_critical
    from advdyn.plot.risk import save_figure

    out = Path(out_dir)
    with folder_lock(out, "advdyn critical-exact"):
        plan = plan_critical_exact(config)
        if on_start is not None:
            on_start(plan)
        result = critical_exact(config, plan)
        units = _radius_units(config)
        fig = plot_exact_critical(result.dataset, radius=plan.radius, units=units,
                                  radius_label=("data-scaled radius" if plan.radius_source
                                                == "data" else "problem's radius"))
        result.files["critical_exact.nc"] = write_netcdf(result.dataset,
                                                         out / "critical_exact.nc")
        result.files["critical_exact.png"] = save_figure(fig, out / "critical_exact.png")
        result.files["critical_exact.json"] = write_json(result.summary,
                                                         out / "critical_exact.json")
    return result
