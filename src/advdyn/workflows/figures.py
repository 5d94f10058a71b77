"""The figures that show the source paper's claims (``advdyn figure NAME``).

Each ``figure_*`` function computes what it shows from scratch (fixed seeds) and returns
``(Figure, info)``, where ``info`` is a JSON-ready dict of the numbers behind the figure
(e.g. time ratios). ``docs/figures.md`` shows the committed images and the numbers.

- ``agreement`` (a): SGD vs ODE vs SDE risk curves, least squares and logistic.
- ``monotone`` (b): the monotone-descent scan, noiseless least squares with one class:
  adversarial (``eps > 0``) against the ``eps = 0`` control.
- ``adaptive`` (c): Polyak vs exact line search vs the best constant rate; isotropic vs
  anisotropic covariance; explicit ridge equal vs unequal to the effective one.
- ``limit`` (d): ODE at large time vs the fixed point vs the ridge solution with
  ``lambda_eff``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from advdyn.config.schema import Config, default_config, validate_config
from advdyn.io import to_dataset

C0 = np.sqrt(2 / np.pi)
Progress = Callable[[int, int], None]


def _ls_config(d: int = 1000, spectrum: dict | None = None, eps: float = 0.5,
               ridge: float = 0.0, lr: dict | None = None, t_max: float = 6.0) -> Config:
    return validate_config({
        "problem": {
            "d": d, "loss": "least_squares", "epsilon": eps, "ridge": ridge, "seed": 0,
            "spectrum": spectrum or {"kind": "uniform", "low": 0.2, "high": 1.8},
            "task": {"kind": "regression", "noise": 0.3},
        },
        "lr": lr or {"kind": "constant", "gamma": 0.8},
        "run": {"t_max": t_max},
    })


# ----------------------------------------------------------------------------- (a)
def figure_agreement(d: int = 2000, replicates: int = 8,
                     progress: Progress | None = None) -> tuple[Figure, dict]:
    """(a) SGD vs ODE vs SDE (adversarial homogenized SGD) risk curves.

    Adversarial least squares (the embedded default problem) and adversarial logistic
    regression on a binary mixture (``examples/logistic_binary_mixture.toml``), both at
    dimension ``d``. Bands: replicate mean +/- one standard deviation.

    Parameters
    ----------
    d : int
        Dimension.
    replicates : int
        SGD and SDE replicates.
    progress : callable, optional
        ``progress(advance, total)``, called after each of the two problems.

    Returns
    -------
    (Figure, dict)
        The figure, and the largest relative gaps of the replicate means to the ODE.
    """
    from advdyn.io import compare
    from advdyn.workflows.run import run

    # THEORY section 12's logistic check (= examples/logistic_binary_mixture.toml)
    logistic = validate_config({
        "problem": {
            "d": d, "loss": "logistic", "epsilon": 0.4, "seed": 0,
            "spectrum": {"kind": "uniform", "low": 0.3, "high": 1.7},
            "task": {"kind": "classification", "teacher_norm": 1.0, "mean_norm": 1.5},
        },
        "lr": {"kind": "constant", "gamma": 2.0},
        "run": {"t_max": 5.0, "n_times": 51},
    })
    cases = {"adversarial least squares": default_config(),
             "adversarial logistic regression": logistic}
    from advdyn.plot import style

    fig, axes = style.new_figure(2, 2, width=11, height=7.4, sharex="col",
                                 gridspec_kw={"height_ratios": [2, 1]})
    info: dict = {"d": d, "replicates": replicates}
    widest = 0.0  # the largest relative sd, for the note under the figure
    styles = {"sgd": (style.COLORS["blue"], "SGD"),
              "hsgd": (style.COLORS["vermillion"], "SDE (homogenized SGD)")}
    for (ax, ax_gap), (title, cfg) in zip(axes.T, cases.items(), strict=True):
        cfg = cfg.with_overrides(**{"problem.d": d, "run.replicates": replicates,
                                    "run.methods": ["ode", "sgd", "hsgd"]})
        result = run(cfg)
        ode = result.datasets["ode"]
        for method, (color, label) in styles.items():
            ds = result.datasets[method]
            mean, sd = ds["adv_risk"].mean("replicate"), ds["adv_risk"].std("replicate")
            widest = max(widest, float((sd / mean).max()))
            # bands: +-1 sd of the replicates (top), +-1 standard error of the mean (bottom);
            # opaque enough to see, edged so that overlapping bands stay apart
            ax.fill_between(ds.time, mean - sd, mean + sd, color=color, alpha=0.3, lw=0.8,
                            edgecolor=color, label=f"{label}: +-1 sd of {replicates} replicates")
            ax.plot(ds.time, mean, color=color, lw=1.5, label=f"{label}: mean of {replicates}")
            rel = 100 * (mean / ode["adv_risk"] - 1)
            se = 100 * sd / np.sqrt(replicates) / ode["adv_risk"]
            ax_gap.fill_between(ds.time, rel - se, rel + se, color=color, alpha=0.3, lw=0.8,
                                edgecolor=color)
            ax_gap.plot(ds.time, rel, color=color, lw=1.2)
            gap = compare(ode, ds)["adv_risk"]["max_relative_gap"]
            info.setdefault(title, {})[f"max_gap_{method}_vs_ode"] = gap
        ax.plot(ode.time, ode["adv_risk"], color=style.COLORS["black"], ls="--", lw=1.2,
                label="ODE (d -> inf)", zorder=3)
        ax.set_title(f"{title}, d = {style.power_of_ten(d)}, eps = {cfg.problem.epsilon:g}")
        ax.set_ylabel("adversarial risk R_eps")
        ax_gap.axhline(0, color=style.COLORS["black"], lw=0.8)
        ax_gap.set_ylabel("mean / ODE - 1 (%), +-1 s.e.")
        ax_gap.set_xlabel("time t = k/d")
        if progress is not None:
            progress(1, len(cases))
    handles, labels = axes[0, 0].get_legend_handles_labels()
    style.figure_legend(fig, handles, labels, ncol=3)
    style.caption(fig, f"top: the +-1 sd bands are at most {100 * widest:.1f}% of the risk "
                       f"at d = {style.power_of_ten(d)}, hardly wider than the lines; bottom: "
                       "the means' gaps to the ODE in %, with +-1 standard-error bands")
    return style.finish(fig), info


# ----------------------------------------------------------------------------- (b)
MONOTONE_RATES = (0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 1.5, 2.0, 2.5)


def _monotone_config(d: int, eps: float) -> Config:
    return validate_config({
        "problem": {
            "d": d, "loss": "least_squares", "epsilon": eps, "seed": 0,
            "spectrum": {"kind": "uniform", "low": 0.2, "high": 1.8},
            "task": {"kind": "regression", "noise": 0.0},
        },
        "lr": {"kind": "constant", "gamma": 0.5},
    })


def figure_monotone(d: int = 500, rates=MONOTONE_RATES, eps: float = 0.5,
                    progress: Progress | None = None) -> tuple[Figure, dict]:
    """(b) No constant rate gives monotone descent to the minimiser from every start.

    The paper's claim, as a contrast: *unlike noiseless standard least squares*, adversarial
    least squares has no constant rate that descends monotonically (in risk and in distance
    to the minimiser) from every initialisation. Both problems here are noiseless
    (``task.noise = 0``) with one class and the same anisotropic covariance (uniform on
    ``[0.2, 1.8]``): the control has ``eps = 0``, the adversarial problem ``eps``. ODE runs
    from the starts of `advdyn.workflows.limits.default_inits` (among them a start near the
    minimiser, where a constant rate's noise floor shows).

    Parameters
    ----------
    d : int
        Dimension.
    rates : sequence of float
        Constant learning rates scanned (the largest ones diverge, and are shown so).
    eps : float
        Attack radius of the adversarial problem.
    progress : callable, optional
        ``progress(advance, total)``, called after each of the two scans.

    Returns
    -------
    (Figure, dict)
        The figure and, for each problem, per rate how many starts descended
        monotonically (risk and distance) and how many diverged, the rates that are
        monotone from every start, and whether there is one.
    """
    from advdyn.config.build import instantiate
    from advdyn.plot.risk import plot_monotone_comparison
    from advdyn.theory.stationary import adversarial_optimum
    from advdyn.workflows.limits import default_inits, monotone_scan

    problems = {"control: eps = 0 (noiseless least squares)": 0.0,
                f"adversarial: eps = {eps:g}": eps}
    scans: dict = {}
    info: dict = {
        "d": d, "noise": 0.0, "rates": [float(g) for g in rates],
        "claim": "no constant rate is monotone from every start for adversarial least "
                 "squares, unlike noiseless standard least squares",
        "problems": {},
    }
    for title, e in problems.items():
        inst = instantiate(_monotone_config(d, e).problem)
        opt = adversarial_optimum(inst)
        scan = monotone_scan(inst, list(rates), default_inits(inst, opt), t_max=20.0,
                             n_times=401, optimum=opt)
        scans[title] = scan
        both = scan.monotone_risk & scan.monotone_dist
        every = [float(g) for g in scan.lr.values if bool(both.sel(lr=g).all())]
        info["problems"][title] = {
            "epsilon": e,
            "inits": [str(x) for x in scan.init.values],
            "per_rate": {
                f"{g:g}": {
                    "monotone_both": int(both.sel(lr=g).sum()),
                    "diverged": int(scan.diverged.sel(lr=g).sum()),
                    "of": int(scan.sizes["init"]),
                }
                for g in scan.lr.values
            },
            "rates_monotone_from_every_start": every,
            "some_rate_monotone_from_every_start": bool(every),
        }
        if progress is not None:
            progress(1, len(problems))
    return plot_monotone_comparison(scans), info


# ----------------------------------------------------------------------------- (c)
def _hitting_time(times: np.ndarray, subopt: np.ndarray, level: float) -> float:
    below = np.nonzero(subopt <= level)[0]
    if below.size == 0:
        return float("inf")
    k = below[0]
    if k == 0:
        return 0.0
    # log-linear interpolation between the last record above and the first below
    t0, t1 = times[k - 1], times[k]
    y0, y1 = np.log(subopt[k - 1]), np.log(max(subopt[k], 1e-300))
    return float(t0 + (np.log(level) - y0) * (t1 - t0) / (y1 - y0))


def _adaptive_case(cfg: Config, t_max: float, level: float, rates) -> dict:
    from advdyn.config.build import instantiate, make_learning_rate
    from advdyn.errors import DivergenceError
    from advdyn.theory.ode import solve_ode
    from advdyn.theory.rates import Constant, LineSearch
    from advdyn.theory.stationary import adversarial_optimum
    from advdyn.theory.statistics import training_objective

    inst = instantiate(cfg.problem)
    opt = adversarial_optimum(inst)
    times = np.linspace(0.0, t_max, 601)
    ridge = float(cfg.problem.ridge)

    def subopt(ds):
        obj = training_objective(ds["adv_risk"].values, ds["norm"].values ** 2, ridge)
        return np.maximum(obj - float(opt.objective), 1e-300)

    runs = {}
    polyak = make_learning_rate(validate_config({"problem": {"d": 1}, "lr": {
        "kind": "polyak", "gamma_max": 10.0}}).lr, optimum=opt)
    for name, rule in (("polyak", polyak), ("line_search", LineSearch(10.0))):
        ds = to_dataset(solve_ode(inst, rule, times, optimum=opt))
        runs[name] = (ds, subopt(ds))
    start = runs["polyak"][1][0]
    target = level * start
    best: tuple[float, float | None, xr.Dataset | None] = (float("inf"), None, None)
    for g in rates:
        try:
            ds = to_dataset(solve_ode(inst, Constant(float(g)), times, optimum=opt))
        except DivergenceError:  # a rate too large for this problem: not a candidate
            continue
        hit = _hitting_time(times, subopt(ds), target)
        if hit < best[0]:
            best = (hit, float(g), ds)
    if best[2] is None:  # no constant rate reaches the level: show the smallest rate
        g = float(min(rates))
        ds = to_dataset(solve_ode(inst, Constant(g), times, optimum=opt))
        best = (float("inf"), g, ds)
    best_ds = best[2]
    assert best_ds is not None
    runs["best constant"] = (best_ds, subopt(best_ds))
    hits = {k: _hitting_time(times, v[1], target) for k, v in runs.items()}
    return {"runs": runs, "hits": hits, "best_gamma": best[1], "times": times,
            "lambda_opt": float(opt.effective_ridge) if not bool(opt.at_zero) else None}


def figure_adaptive(d: int = 1000, level: float = 1e-2, t_max: float = 40.0,
                    rates=None, progress: Progress | None = None) -> tuple[Figure, dict]:
    """(c) Polyak vs exact line search vs the best constant rate.

    Scenarios (least squares, label noise 0.3, ``d`` given): adversarial (``eps = 0.5``)
    with an isotropic and an anisotropic (uniform on [0.2, 1.8]) covariance; and, on the
    anisotropic covariance, clean ridge least squares whose explicit ridge equals the
    adversarial problem's effective ridge ``lambda^*`` (same minimiser) or is a tenth of it.
    The best constant rate is the one of ``rates`` that first reaches the suboptimality
    ``level * (initial suboptimality)``; times to reach that level are reported, and their
    ratios to the best constant rate's time.

    Parameters
    ----------
    d : int
        Dimension.
    level : float
        Relative suboptimality defining the hitting time.
    t_max : float
        ODE horizon.
    rates : sequence of float, optional
        Constant rates scanned (default: 16 log-spaced in [0.05, 2.5]).
    progress : callable, optional
        ``progress(advance, total)``, called after each scenario.

    Returns
    -------
    (Figure, dict)
        The figure (suboptimality and learning-rate curves per scenario) and, per scenario,
        the hitting times, the best constant rate and the ratios.
    """
    from advdyn.config.build import instantiate
    from advdyn.theory.stationary import adversarial_optimum

    rates = list(np.geomspace(0.05, 2.5, 16)) if rates is None else list(rates)
    aniso = {"kind": "uniform", "low": 0.2, "high": 1.8}
    lam_star = float(adversarial_optimum(
        instantiate(_ls_config(d, aniso).problem)).effective_ridge)
    scenarios = {
        "adversarial, isotropic K": _ls_config(d, {"kind": "identity"}),
        "adversarial, anisotropic K": _ls_config(d, aniso),
        "ridge = lambda* (clean), anisotropic": _ls_config(d, aniso, eps=0.0, ridge=lam_star),
        "ridge = lambda*/10 (clean), anisotropic": _ls_config(d, aniso, eps=0.0,
                                                              ridge=lam_star / 10),
    }
    from advdyn.plot import style

    fig, axes = style.new_figure(len(scenarios), 2, width=13, height=2.7 * len(scenarios))
    colors = {"polyak": style.COLORS["vermillion"], "line_search": style.COLORS["blue"],
              "best constant": style.COLORS["black"]}
    info: dict = {"d": d, "level": level, "lambda_star_anisotropic": lam_star, "scenarios": {}}
    for row, (title, cfg) in zip(axes, scenarios.items(), strict=True):
        case = _adaptive_case(cfg, t_max, level, rates)
        hits = case["hits"]
        ref = hits["best constant"]
        info["scenarios"][title] = {
            "hitting_time": hits,
            "best_constant_gamma": case["best_gamma"],
            "ratio_polyak_to_best_constant": hits["polyak"] / ref if np.isfinite(ref) else None,
            "ratio_line_search_to_best_constant": (
                hits["line_search"] / ref if np.isfinite(ref) else None),
        }
        for name, (ds, sub) in case["runs"].items():
            label = name if name != "best constant" else f"best constant ({case['best_gamma']:.3g})"
            t_hit = hits[name]
            label += f", t = {t_hit:.2f}" if np.isfinite(t_hit) else ", never"
            row[0].plot(case["times"], sub, color=colors[name], label=label)
            row[1].plot(case["times"], ds["lr"], color=colors[name], label=name)
        row[0].set_yscale("log")
        row[0].axhline(level * case["runs"]["polyak"][1][0], color=style.COLORS["grey"],
                       ls=":", lw=1, label="target level")
        row[0].set_title(f"{title}: suboptimality")
        row[0].set_ylabel("Rtilde - Rtilde*")
        style.legend(row[0], title="time to the target")
        row[1].set_title(f"{title}: learning rate")
        row[1].set_ylabel("learning rate gamma_t")
        style.legend(row[1])
        for ax in row:
            ax.set_xlabel("time t = k/d")
        if progress is not None:
            progress(1, len(scenarios))
    return style.finish(fig), info


# ----------------------------------------------------------------------------- (d)
def figure_limit(d: int = 1000, rates=None,
                 progress: Progress | None = None) -> tuple[Figure, dict]:
    """(d) The constant-rate limit: ODE at large time vs fixed point vs ridge solution.

    Adversarial least squares (embedded default at dimension ``d``). For each constant
    rate: the ODE's adversarial risk and overlap at ``t = 100 / (gamma min_i D_i)`` (four
    times the horizon at which the slowest linear mode has decayed by ``e^-25``), the fixed
    point of THEORY section 7, and the
    overlap ``<theta_ridge, theta*>`` of the ridge solution
    ``(K + lambda_eff I)^{-1} K theta*`` computed in closed form from the spectrum
    (the limiting mean iterate).

    Parameters
    ----------
    d : int
        Dimension.
    rates : sequence of float, optional
        Constant rates (default: 12 log-spaced in [0.05, 1.8]).
    progress : callable, optional
        ``progress(advance, total)``, called after each rate.

    Returns
    -------
    (Figure, dict)
        The figure and the table behind it.
    """
    from advdyn.config.build import instantiate
    from advdyn.theory.ode import solve_ode
    from advdyn.theory.rates import Constant
    from advdyn.theory.stationary import adversarial_optimum, constant_rate_limit

    rates = list(np.geomspace(0.05, 1.8, 12)) if rates is None else list(rates)
    inst = instantiate(default_config().with_overrides(**{"problem.d": d}).problem)
    opt = adversarial_optimum(inst)
    lam = np.asarray(inst.eigenvalues[0])
    ts2 = np.asarray(inst.teacher2)
    rows = []
    for g in rates:
        if progress is not None:
            progress(1, len(rates))
        lim = constant_rate_limit(inst, float(g), start=opt)
        if not bool(lim.converged):
            continue
        # four times the horizon at which the slowest linear mode has decayed by e^-25:
        # near the largest convergent rate the approach is slower than that mode
        t_end = 100.0 * lim.relaxation_time(float(g))
        ode = to_dataset(solve_ode(inst, Constant(float(g)), np.linspace(0, t_end, 11), rtol=1e-10,
                        optimum=opt))
        lam_eff = float(lim.effective_ridge)
        rows.append({
            "gamma": float(g),
            "ode_adv_risk": float(ode["adv_risk"][-1]),
            "fixed_point_adv_risk": float(lim.adv_risk),
            "ode_overlap": float(ode["overlap"][-1]),
            "fixed_point_overlap": float(lim.observables["overlap"]),
            "ridge_solution_overlap": float(np.sum(lam * ts2 / (lam + lam_eff))),
            "lambda_eff": lam_eff,
        })
    if not rows:
        raise ValueError("no rate has a convergent limit: choose smaller rates")
    g = np.array([r["gamma"] for r in rows])
    from advdyn.plot import style

    fig, axes = style.new_figure(1, 3, width=14, height=4.6)
    ax_r, ax_o, ax_l = axes[0]
    ax_r.plot(g, [r["fixed_point_adv_risk"] for r in rows], "-", label="fixed point")
    ax_r.plot(g, [r["ode_adv_risk"] for r in rows], "o", mfc="none", label="ODE at large t")
    ax_r.axhline(float(opt.adv_risk), color=style.COLORS["black"], ls="--", lw=1,
                 label="min R_eps")
    ax_r.set_ylabel("limiting adversarial risk R_eps")
    ax_r.set_yscale("log")
    ax_o.plot(g, [r["fixed_point_overlap"] for r in rows], "-", label="fixed point")
    ax_o.plot(g, [r["ode_overlap"] for r in rows], "o", mfc="none", label="ODE at large t")
    ax_o.plot(g, [r["ridge_solution_overlap"] for r in rows], "x",
              label="ridge solution, lambda_eff")
    ax_o.set_ylabel("<theta, theta*> in the limit")
    ax_l.plot(g, [r["lambda_eff"] for r in rows], "o-", label="lambda_eff (limit)")
    ax_l.axhline(float(opt.effective_ridge), color=style.COLORS["black"], ls="--", lw=1,
                 label="lambda* (optimum)")
    ax_l.set_ylabel("effective ridge")
    for ax in (ax_r, ax_o, ax_l):
        ax.set_xscale("log")
        ax.set_xlabel("constant learning rate gamma")
    style.figure_legend(fig, ncol=3)  # the entries of the three panels, each once
    fig.suptitle(f"constant-rate limit, adversarial least squares, d = {style.power_of_ten(d)}, "
                 "eps = 0.5", fontsize=style.FONT_TITLE)
    style.finish(fig)
    gaps = [abs(r["ode_adv_risk"] / r["fixed_point_adv_risk"] - 1) for r in rows]
    ov_gaps = [abs(r["ridge_solution_overlap"] / r["fixed_point_overlap"] - 1) for r in rows]
    info = {"d": d, "adv_risk_opt": float(opt.adv_risk), "lambda_opt": float(opt.effective_ridge),
            "rows": rows, "max_gap_ode_vs_fixed_point": max(gaps),
            "max_gap_ridge_overlap_vs_fixed_point": max(ov_gaps)}
    return fig, info


FIGURES: dict[str, Callable[..., tuple[Figure, dict]]] = {
    "agreement": figure_agreement,
    "monotone": figure_monotone,
    "adaptive": figure_adaptive,
    "limit": figure_limit,
}
"""Figure names accepted by ``advdyn figure`` (also ``a``-``d``); each takes ``progress``."""

ALIASES = {"a": "agreement", "b": "monotone", "c": "adaptive", "d": "limit"}
