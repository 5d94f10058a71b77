"""Long-time behaviour under a constant learning rate: the limit report and the monotone scan.

[`limit_report`][advdyn.workflows.limits.limit_report] answers "where does constant-rate adversarial
SGD end up, and does it
get there?": the adversarial optimum and the fixed point of THEORY section 7, checked
against the ODE run long enough for its slowest mode to die out.
[`monotone_scan`][advdyn.workflows.limits.monotone_scan]
asks, for a list of constant rates and several initialisations, whether the adversarial
risk and the distance to the optimum decrease monotonically along the ODE.
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import xarray as xr

from advdyn.errors import ConfigError, DivergenceError
from advdyn.io import to_dataset
from advdyn.precision import float64
from advdyn.theory.equivalence import equivalence_applies
from advdyn.theory.ode import solve_ode
from advdyn.theory.rates import Constant
from advdyn.theory.stationary import StationaryPoint, adversarial_optimum, constant_rate_limit

# The ODE check runs until the slowest linear mode has decayed by exp(-_DECAY_FACTOR).
_DECAY_FACTOR = 25.0
_MAX_CHECK_TIME = 5000.0
_AGREEMENT = 1e-4
_MONOTONE_TOL = 1e-9


def constant_rate(config, hint: str = "") -> float:
    """The constant learning rate of a config, for the limit theory.

    Parameters
    ----------
    config : Config
        A validated configuration.
    hint : str
        Appended to the error message (e.g. how else to give a rate).

    Returns
    -------
    float
        ``config.lr.gamma``.

    Raises
    ------
    ConfigError
        Naming ``lr`` when the rule is not constant.
    """
    from advdyn.config.schema import ConstantLR

    if isinstance(config.lr, ConstantLR):
        return config.lr.gamma
    raise ConfigError("lr", f"the limit needs a constant rate: lr.kind is {config.lr.kind!r}{hint}")


@float64
def limit_report(
    instance, gamma: float, *, optimum: StationaryPoint | None = None, check_with_ode: bool = True
) -> dict:
    """Optimum, constant-rate limit and whether the constant rate converges at all.

    ``converges`` is true when the fixed point exists (admissible, residual below 1e-9)
    and, if ``check_with_ode``, the ODE started from the instance's ``theta_0`` neither
    diverges nor ends farther than 1e-4 (relative adversarial risk) from the fixed point
    after ``t_check = 25 / (gamma * min_i D_i)`` (the slowest linear mode decayed by
    ``e^-25``), extended up to twice by a factor 4 while the gap keeps shrinking (at most
    5000). Without an admissible fixed point the limit entries are ``None`` and
    the ODE is still run (to the same horizon built from the optimum's ``D``), so that the
    report says whether it diverged.

    Parameters
    ----------
    instance : ProblemInstance or binned instance
        The problem.
    gamma : float
        The constant learning rate.
    optimum : StationaryPoint, optional
        Precomputed adversarial optimum.
    check_with_ode : bool
        Run the ODE check (otherwise ``converges`` only reflects the fixed point).

    Returns
    -------
    dict
        JSON-ready: ``gamma``, ``epsilon``, ``d``, ``adv_risk_opt`` (minimum adversarial
        risk), ``objective_opt``, ``adv_risk_limit``, ``clean_risk_limit``, ``norm_opt``,
        ``norm_limit``, ``dist_to_opt_limit`` (``E|theta_inf - theta_eps^*|^2``),
        ``lambda_opt`` and ``lambda_eff`` (least squares with one centred class, else
        ``None``), ``optimum_converged`` and ``optimum_residual`` (the optimum's own fixed
        point), ``fixed_point_converged``, ``fixed_point_residual``, ``converges``,
        and, with the ODE check, ``t_check``, ``ode_adv_risk_at_t_check`` and
        ``ode_relative_gap``.
    """
    opt = optimum if optimum is not None else adversarial_optimum(instance)
    lim = constant_rate_limit(instance, gamma, start=opt)
    ls = equivalence_applies(instance)
    report: dict[str, object] = {
        "gamma": float(gamma),
        "epsilon": float(instance.epsilon),
        "d": int(instance.d),
        "adv_risk_opt": float(opt.adv_risk),
        "objective_opt": float(opt.objective),
        "adv_risk_limit": float(lim.adv_risk),
        "clean_risk_limit": float(lim.observables["clean_risk"]),
        "norm_opt": float(jnp.sqrt(opt.stats.norm2)),
        "norm_limit": float(jnp.sqrt(lim.stats.norm2)),
        "dist_to_opt_limit": float(opt.distance2(lim.state, instance)),
        "lambda_opt": float(opt.effective_ridge) if ls and not bool(opt.at_zero) else None,
        "lambda_eff": float(lim.effective_ridge) if ls else None,
        "optimum_at_zero": bool(opt.at_zero),
        "optimum_converged": bool(opt.converged),
        "optimum_residual": float(opt.residual),
        "fixed_point_converged": bool(lim.converged),
        "fixed_point_residual": float(lim.residual),
    }
    if not lim.converged:  # no admissible stationary level: nothing to report as the limit
        for key in ("adv_risk_limit", "clean_risk_limit", "norm_limit", "dist_to_opt_limit",
                    "lambda_eff"):
            report[key] = None
    converges = bool(lim.converged)
    if check_with_ode:
        # run until the slowest mode at the limit (or, without one, at the optimum) has decayed
        tau = (lim if lim.converged else opt).relaxation_time(gamma)
        t_check = min(_DECAY_FACTOR * tau, _MAX_CHECK_TIME)
        try:
            # near the largest convergent rate the feedback through the noise term slows the
            # approach below the linear rate: extend the horizon (x4, up to twice) while the
            # gap to the fixed point is still shrinking
            previous = np.inf
            for _ in range(3):
                ode = to_dataset(solve_ode(
                    instance, Constant(gamma), np.linspace(0.0, t_check, 51), rtol=1e-8,
                    optimum=opt,
                ))
                end = float(ode["adv_risk"][-1])
                # relative gap, with an absolute floor for problems whose limiting risk is 0
                # (noiseless, eps = 0): 1e-12 of the risk at the start
                floor = 1e-12 * max(float(ode["adv_risk"][0]), 1e-300)
                gap = _mixed_gap(end, float(lim.adv_risk), floor) if lim.converged else None
                if gap is None or gap <= _AGREEMENT or gap >= previous:
                    break
                previous = gap
                t_check = min(4 * t_check, _MAX_CHECK_TIME)
            report["t_check"] = t_check
            report["ode_adv_risk_at_t_check"] = end
            report["ode_relative_gap"] = gap
            if gap is not None:
                converges = gap <= _AGREEMENT
        except DivergenceError as err:
            report["t_check"] = t_check
            report["ode_adv_risk_at_t_check"] = None
            report["ode_relative_gap"] = None
            report["ode_diverged"] = str(err)
            converges = False
    report["converges"] = converges
    return report


def _mixed_gap(value: float, reference: float, floor: float) -> float:
    return abs(value - reference) / max(abs(reference), floor)


def default_inits(instance, optimum: StationaryPoint, n_random: int = 3, seed: int = 0):
    """A spread of initialisations for [`monotone_scan`][advdyn.workflows.limits.monotone_scan]
    (per-direction instances).

    Parameters
    ----------
    instance : ProblemInstance
    optimum : StationaryPoint
        The adversarial optimum (for the near-optimum starts).
    n_random : int
        Number of Gaussian starts ``N(0, s^2/d I)`` with ``s`` log-spaced in ``[0.3, 3]``.
    seed : int
        Seed of those draws.

    Returns
    -------
    dict of str to numpy.ndarray
        Name to ``theta_0`` (eigenbasis coordinates): the config's ``theta_0``, random
        starts, ``theta*``, ``2 theta*``, ``0.5 theta*_opt`` and the optimum plus a small
        random perturbation (``|delta| = 0.05 |theta_eps^*|``), the start that exposes the
        noise floor of a constant rate.
    """
    from advdyn.theory.stationary import optimum_vector

    rng = np.random.default_rng(seed)
    d = instance.d
    ts = np.asarray(instance.theta_star)
    theta_opt = optimum_vector(instance, optimum)
    inits = {"config": np.asarray(instance.theta0)}
    for s in np.geomspace(0.3, 3.0, n_random) if n_random > 0 else []:
        inits[f"gaussian_{s:.2g}"] = s * rng.standard_normal(d) / np.sqrt(d)
    inits["teacher"] = ts.copy()
    inits["2_teacher"] = 2 * ts
    inits["half_optimum"] = 0.5 * theta_opt
    delta = rng.standard_normal(d)
    scale = 0.05 * max(float(np.linalg.norm(theta_opt)), 1e-3)
    inits["near_optimum"] = theta_opt + scale * delta / np.linalg.norm(delta)
    return inits


def _first_increase(x: np.ndarray) -> float:
    """Largest relative increase between consecutive records (<= 0 for monotone)."""
    inc = np.diff(x) / np.maximum(np.abs(x[:-1]), 1e-300)
    return float(inc.max()) if inc.size else 0.0


@float64
def monotone_scan(
    instance, lrs, inits: dict, *, t_max: float = 20.0, n_times: int = 401,
    optimum: StationaryPoint | None = None, progress: bool = False,
) -> xr.Dataset:
    """Scan constant rates and initialisations for monotone descent along the ODE.

    A trajectory counts as monotone when no recorded value exceeds the previous one by
    more than 1e-9 relative (the ODE's own accuracy is ~1e-10).

    Parameters
    ----------
    instance : ProblemInstance
        A per-direction instance (its ``theta0`` is replaced by each init).
    lrs : sequence of float
        Constant learning rates.
    inits : dict of str to array
        Initialisations (e.g. `default_inits`).
    t_max, n_times : float, int
        ODE horizon and number of records.
    optimum : StationaryPoint, optional
        Precomputed adversarial optimum.
    progress : bool
        Show a progress bar.

    Returns
    -------
    xarray.Dataset
        On ``(lr, init)``: ``monotone_risk``, ``monotone_dist`` (bool),
        ``max_increase_risk``, ``max_increase_dist`` (largest relative step up),
        ``diverged``; on ``(lr, init, time)``: ``adv_risk`` and ``dist_to_opt`` curves
        (NaN after a divergence); attributes ``adv_risk_opt``.
    """
    from advdyn.workflows.progress import progress_bar

    opt = optimum if optimum is not None else adversarial_optimum(instance)
    lrs = [float(g) for g in lrs]
    names = list(inits)
    times = np.linspace(0.0, t_max, n_times)
    shape = (len(lrs), len(names))
    risk = np.full((*shape, n_times), np.nan)
    dist = np.full((*shape, n_times), np.nan)
    diverged = np.zeros(shape, bool)
    with progress_bar("monotone scan", total=len(lrs) * len(names), enabled=progress) as advance:
        for i, g in enumerate(lrs):
            for j, name in enumerate(names):
                inst = eqx.tree_at(lambda x: x.theta0, instance, jnp.asarray(inits[name]))
                try:
                    ode = to_dataset(solve_ode(inst, Constant(g), times, rtol=1e-11, optimum=opt))
                    risk[i, j] = ode["adv_risk"].values
                    dist[i, j] = ode["dist_to_opt"].values
                except DivergenceError:
                    diverged[i, j] = True
                advance(1)
    inc_r = np.array([[_first_increase(risk[i, j]) for j in range(shape[1])]
                      for i in range(shape[0])])
    inc_d = np.array([[_first_increase(dist[i, j]) for j in range(shape[1])]
                      for i in range(shape[0])])
    ok = ~diverged
    return xr.Dataset(
        {
            "monotone_risk": (("lr", "init"), ok & (inc_r <= _MONOTONE_TOL)),
            "monotone_dist": (("lr", "init"), ok & (inc_d <= _MONOTONE_TOL)),
            "max_increase_risk": (("lr", "init"), np.where(ok, inc_r, np.nan)),
            "max_increase_dist": (("lr", "init"), np.where(ok, inc_d, np.nan)),
            "diverged": (("lr", "init"), diverged),
            "adv_risk": (("lr", "init", "time"), risk),
            "dist_to_opt": (("lr", "init", "time"), dist),
        },
        coords={"lr": lrs, "init": names, "time": times},
        attrs={"adv_risk_opt": float(opt.adv_risk), "method": "monotone_scan"},
    )


def limit_from_config(config, gamma: float | None = None, *, check_with_ode: bool = True) -> dict:
    """[`limit_report`][advdyn.workflows.limits.limit_report] for a config (what ``advdyn limit``
    and the sweep's limit point run).

    Parameters
    ----------
    config : Config
        A validated configuration; spectral bins when ``run.bins`` is set (no instance is
        drawn for an isotropic config, so any ``d`` works).
    gamma : float, optional
        The constant rate; the config's (constant) ``lr`` when omitted.
    check_with_ode : bool
        Run the long ODE check.

    Returns
    -------
    dict
        The report, with ``config`` the configuration as used (its ``lr`` the constant rate).

    Raises
    ------
    ConfigError
        Naming ``lr`` when no rate is given and the config's rule is not constant.
    """
    from advdyn.workflows.bins import spectral_instances

    g = constant_rate(config) if gamma is None else float(gamma)
    instance, binned = spectral_instances(config.with_overrides(**{"run.methods": ["ode"]}))
    report = limit_report(binned if binned is not None else instance, g,
                          check_with_ode=check_with_ode)
    used = config.with_overrides(**{"lr": {"kind": "constant", "gamma": g}})
    report["config"] = used.model_dump(mode="json")
    return report


def monotone_from_config(config, rates, *, random_inits: int = 3, t_max: float = 20.0,
                         n_times: int = 401, progress: bool = False) -> xr.Dataset:
    """[`monotone_scan`][advdyn.workflows.limits.monotone_scan] for a config, from the starts of
    `default_inits`.

    Parameters
    ----------
    config : Config
        A validated configuration (its problem is drawn).
    rates : sequence of float
        Constant learning rates.
    random_inits : int
        Gaussian starts besides the structured ones.
    t_max, n_times : float, int
        ODE horizon and records.
    progress : bool
        Show a progress bar.

    Returns
    -------
    xarray.Dataset
        The scan, with the config as JSON in ``attrs["config"]``.
    """
    from advdyn.config.build import instantiate

    inst = instantiate(config.problem)
    opt = adversarial_optimum(inst)
    inits = default_inits(inst, opt, n_random=random_inits, seed=config.problem.seed)
    ds = monotone_scan(inst, list(rates), inits, t_max=t_max, n_times=n_times, optimum=opt,
                       progress=progress)
    ds.attrs["config"] = config.to_json()
    return ds
