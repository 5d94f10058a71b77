"""``advdyn sme``: SGD vs its SMEs, weak errors, control, flows, mini-max, digits (seed 002).

Turns a validated `SMERunConfig` into results: each part calls the
pure mathematics of [`advdyn.sme`][advdyn.sme], labels the output as xarray, writes NetCDF/JSON
(atomic) and one figure. Progress is reported through a ``progress(advance, total)``
callback.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from advdyn.config.sme import SMERunConfig
from advdyn.errors import ConfigError
from advdyn.io.files import folder_lock
from advdyn.precision import x64
from advdyn.workflows.memory import check_size

Progress = Callable[[int, int], None]
PARTS = ("risks", "weak_error", "control", "flows", "minimax", "digits")


@dataclass
class SMEResult:
    """What a run produced: datasets per part, the summary and the written files."""

    datasets: dict[str, xr.Dataset] = field(default_factory=dict)
    summary: dict = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)


def _mean_sd(sol, names):
    return {n: (sol[n].mean(0), sol[n].std(0)) for n in names}


def risks_part(cfg: SMERunConfig) -> xr.Dataset:
    """SGD and the order-1/order-2 SMEs of clean and adversarial training (means and SDs
    over the replicates)."""
    from advdyn.sme import SME, GaussianLeastSquares, simulate_objective_sgd, solve_sme

    p, r = cfg.problem, cfg.risks
    key = jax.random.key(cfg.seed)
    names = ("adv_risk", "clean_risk", "norm", "input_grad_norm")
    data: dict = {}
    ts = None
    for train in ("clean", "adversarial"):
        ob = GaussianLeastSquares(jnp.asarray(p.eigenvalues), jnp.asarray(p.theta_star),
                                  p.sigma, p.eps, train=train)
        th0 = jnp.asarray(p.theta0)
        sols = {"sgd": simulate_objective_sgd(ob, r.eta, th0, key, t_max=r.t_max, n_times=r.n_times,
                                    replicates=r.replicates)}
        for order in (1, 2):
            sols[f"sme{order}"] = solve_sme(
                SME(ob, r.eta, order), th0, key, t_max=r.t_max, dt=r.dt_factor * r.eta,
                n_times=r.n_times, replicates=r.replicates, scheme=r.scheme)
        ts = sols["sgd"].ts
        for method, sol in sols.items():
            # SGD records on its own step grid; the SMEs on a finer one: interpolate to SGD's
            for n in names:
                mean = np.interp(ts, sol.ts, sol[n].mean(0))
                sd = np.interp(ts, sol.ts, sol[n].std(0))
                data.setdefault(n, {}).setdefault(train, {})[method] = (mean, sd)
    trains, methods = ["clean", "adversarial"], ["sgd", "sme1", "sme2"]
    ds = xr.Dataset(coords={"training": trains, "solver": methods, "time": ts})
    for n in names:
        ds[n] = (("training", "solver", "time"),
                 np.array([[data[n][t][m][0] for m in methods] for t in trains]))
        ds[f"{n}_sd"] = (("training", "solver", "time"),
                         np.array([[data[n][t][m][1] for m in methods] for t in trains]))
    ds.attrs.update(eta=r.eta, replicates=r.replicates, scheme=r.scheme, eps=p.eps,
                    sigma=p.sigma, time_unit="tau = k eta")
    return ds


def weak_error_part(cfg: SMERunConfig) -> tuple[xr.Dataset, dict]:
    """Exact weak errors of orders 1 and 2 and their fitted log-log slopes (+- standard error)."""
    from advdyn.sme import loglog_fit, weak_error_study

    w = cfg.weak_error
    ds = xr.Dataset(coords={"eta": np.asarray(w.etas)})
    summary = {}
    for at in ("final", "max"):
        study = weak_error_study(w.eigenvalues, w.sigma, w.delta0, w.etas, w.t_max, at=at)
        for order in (1, 2):
            err = study[f"order{order}"]
            ds[f"order{order}_{at}"] = ("eta", err)
            slope, se = loglog_fit(w.etas, err)
            summary[f"slope_order{order}_{at}"] = [slope, se]
    ds.attrs.update(t_max=w.t_max, sigma=w.sigma, observable="E|theta - theta*|^2")
    return ds, summary


def control_part(cfg: SMERunConfig) -> tuple[xr.Dataset, dict]:
    """Optimal feedback multiplier vs fixed ones (toy problem of SME section 2)."""
    from advdyn.sme import optimal_policy, solve_control, switch_time

    c = cfg.control
    times = np.linspace(0.0, c.t_max, 201)
    opt = solve_control(c.a, c.noise, c.eta, c.m0, times)
    ds = xr.Dataset(coords={"time": times, "policy": ["optimal"] + [f"u={u:g}" for u in c.fixed]})
    ms, us = [opt["m"]], [opt["u"]]
    for u in c.fixed:
        out = solve_control(c.a, c.noise, c.eta, c.m0, times, policy=u)
        ms.append(out["m"])
        us.append(out["u"])
    ds["loss"] = (("policy", "time"), 0.5 * c.a * np.array(ms))
    ds["u"] = (("policy", "time"), np.array(us))
    ds["u_closed_form"] = ("time", optimal_policy(times, c.a, c.noise, c.eta, c.m0))
    summary = {"switch_time": switch_time(c.a, c.noise, c.eta, c.m0),
               "final_loss": dict(zip(ds["policy"].values.tolist(),
                                      ds["loss"][:, -1].values.tolist(), strict=True)),
               "max_policy_error": float(np.max(np.abs(opt["u"] - ds["u_closed_form"].values)))}
    return ds, summary


def flows_part(cfg: SMERunConfig) -> tuple[xr.Dataset, dict]:
    """Gradient flows of clean and adversarial training (``K = I``, ``|theta*| = 1``,
    ``theta_0 = 0``)."""
    from advdyn.sme import GaussianLeastSquares, gradient_flow

    f = cfg.flows
    times = np.linspace(0.0, f.t_max, 301)
    names = ("adv_risk", "clean_risk", "norm", "input_grad_norm", "adv_rate")
    ds = xr.Dataset(coords={"training": ["clean", "adversarial"], "time": times})
    sols = [gradient_flow(GaussianLeastSquares(jnp.ones(2), jnp.array([1.0, 0.0]), f.sigma,
                                               f.eps, train=t), jnp.zeros(2), times)
            for t in ("clean", "adversarial")]
    for n in names:
        ds[n] = (("training", "time"), np.array([s[n] for s in sols]))
    ds.attrs.update(eps=f.eps, sigma=f.sigma)
    clean, adv = sols
    summary = {"adv_risk_start": float(clean["adv_risk"][0]),
               "adv_risk_end_clean_flow": float(clean["adv_risk"][-1]),
               "adv_risk_end_adversarial_flow": float(adv["adv_risk"][-1]),
               "max_adv_rate_adversarial_flow": float(np.max(adv["adv_rate"])),
               "max_adv_rate_clean_flow": float(np.max(clean["adv_rate"]))}
    return ds, summary


def minimax_part(cfg: SMERunConfig) -> tuple[xr.Dataset, dict]:
    """Gradient flows of the K-step PGD game and of the exact inner maximum on Gaussian data."""
    from advdyn.sme import EmpiricalObjective
    from advdyn.sme.minimax import (
        alternating_descent,
        effective_radius,
        exact_game_loss_gap,
        game_objective,
    )

    m, p = cfg.minimax, cfg.problem
    rng = np.random.default_rng(cfg.seed)
    d = len(p.eigenvalues)
    x = jnp.asarray(rng.standard_normal((m.n, d)) * np.sqrt(p.eigenvalues))
    y = x @ jnp.asarray(p.theta_star) + p.sigma * jnp.asarray(rng.standard_normal(m.n))
    th0 = jnp.asarray(p.theta0)
    labels = [f"K={k}" for k in m.steps] + ["exact"]
    risks, gaps = [], {}
    lr = 0.02
    for k in m.steps:
        times, risk = alternating_descent(game_objective(x, y, k, m.alpha, p.eps), th0, lr,
                                          m.t_max)
        risks.append(risk)
        gaps[f"K={k}"] = exact_game_loss_gap(x, y, th0 + 0.1, k, m.alpha, p.eps)
    exact = EmpiricalObjective(x, y, linear_eps=p.eps, n_params=d)
    times, risk = alternating_descent(exact, th0, lr, m.t_max)
    risks.append(risk)
    ds = xr.Dataset(coords={"adversary": labels, "time": times})
    ds["adv_risk"] = (("adversary", "time"), np.array(risks))
    ds["effective_radius"] = ("adversary", np.array(
        [effective_radius(k, m.alpha, p.eps) for k in m.steps] + [p.eps]))
    ds.attrs.update(alpha=m.alpha, eps=p.eps, n=m.n, learner_lr=lr,
                    note="full-batch alternating game (adversary K PGD steps, learner one step)")
    summary = {"final_adv_risk": dict(zip(labels, [float(r[-1]) for r in risks], strict=True)),
               "game_vs_effective_radius_loss_gap": gaps}
    return ds, summary


def _softmax_ce(logits, y):
    return -jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1)[:, 0]


def _linear_softmax(theta, x):
    d, c = x.shape[1], 10
    return x @ theta[: d * c].reshape(d, c) + theta[d * c:]


def digits_part(cfg: SMERunConfig) -> tuple[xr.Dataset, dict]:
    """Clean vs adversarial (l-inf PGD) softmax regression on the digits: SGD and order-1 SME."""
    from advdyn.adversarial.attacks import Attack
    from advdyn.adversarial.data import load_digits
    from advdyn.sme import SME, EmpiricalObjective, simulate_objective_sgd, solve_sme

    g = cfg.digits
    data = load_digits(n_train=g.n_train, seed=cfg.seed)
    x = jnp.asarray(data.x_train, jnp.float64)
    y = jnp.asarray(data.y_train)
    attack = Attack(g.eps, norm="linf", method="pgd", steps=g.attack_steps, rel_step=2.5,
                    clip=data.domain)
    p = x.shape[1] * 10 + 10
    th0 = jnp.zeros(p)
    t_max = g.steps * g.eta
    key = jax.random.key(cfg.seed)
    rows = {}
    for train in ("clean", "adversarial"):
        ob = EmpiricalObjective(x, y, predict=_linear_softmax, sample_loss=_softmax_ce,
                                attack=attack, train=train, batch=g.batch, n_params=p)
        sgd = simulate_objective_sgd(ob, g.eta, th0, key, t_max=t_max, n_times=21,
                                     replicates=g.replicates)
        sme = solve_sme(SME(ob, g.eta, 1), th0, key, t_max=t_max, dt=g.eta, n_times=21,
                        replicates=g.replicates)
        rows[train] = (sgd, sme)
    ts = rows["clean"][0].ts
    ds = xr.Dataset(coords={"training": ["clean", "adversarial"], "solver": ["sgd", "sme1"],
                            "time": ts})
    for n in ("clean_risk", "adv_risk", "input_grad_norm", "norm"):
        ds[n] = (("training", "solver", "time"), np.array(
            [[np.interp(ts, s.ts, s[n].mean(0)) for s in rows[t]]
             for t in ("clean", "adversarial")]))
    ds.attrs.update(eps=g.eps, eta=g.eta, batch=g.batch, n_train=g.n_train,
                    note="risks on the training set; time tau = k eta")
    summary = {f"{t}_{m}_final": {n: float(ds[n].sel(training=t, solver=m)[-1])
                                  for n in ("clean_risk", "adv_risk")}
               for t in ("clean", "adversarial") for m in ("sgd", "sme1")}
    return ds, summary


def run_sme(cfg: SMERunConfig, out: str | Path, progress: Progress | None = None,
            parts: list[str] | None = None,
            on_start: Callable[[], None] | None = None) -> SMEResult:
    """Run every enabled part, write NetCDF/JSON and figures into ``out``.

    Parameters
    ----------
    cfg : SMERunConfig
        Validated configuration.
    out : str or Path
        Result folder (created).
    progress : callable, optional
        ``progress(advance, total)`` after each part.
    parts : list of str, optional
        Subset of `PARTS` to run (default: every enabled part).
    on_start : callable, optional
        Called once the inputs and the output folder have been checked (and the folder is
        held), before any computation: a command's status line goes there, so that a
        refusal is the only line it prints.

    Returns
    -------
    SMEResult

    Raises
    ------
    ConfigError
        If ``parts`` names an unknown part (field ``only``), the recorded runs of ``risks``
        would not fit in memory (field ``risks.replicates``), or ``out`` cannot be written
        or is in use by another command (field ``out``;
        [`advdyn.io.folder_lock`][advdyn.io.folder_lock],
        checked before any part runs).
    """
    if parts is not None:
        unknown = sorted(set(parts) - set(PARTS))
        if unknown or not parts:
            raise ConfigError("only", f"unknown or empty parts {unknown}; choose from {PARTS}")
    if (parts is None and cfg.risks is not None) or (parts is not None and "risks" in parts):
        r = cfg.risks  # the recorded SGD runs (replicates, n_times, d), float64, at least
        check_size(8.0 * r.replicates * r.n_times * len(cfg.problem.eigenvalues),
                   "risks.replicates", "the recorded SGD runs of risks")
    with folder_lock(out, "advdyn sme"):  # checked and held before any part runs
        if on_start is not None:
            on_start()
        return _run(cfg, Path(out), progress, parts)


def _run(cfg, out, progress, selected) -> SMEResult:
    """See `run_sme` (the caller holds the folder's lock).

    Every part is computed before any file is written, so that an interrupted run leaves
    the previous result set as it was; the set is then replaced as a whole (files of parts
    not run this time are removed: ``sme_summary.json`` describes every file present).

    Returns
    -------
    SMEResult
    """
    from advdyn.io import write_json, write_netcdf
    from advdyn.plot import sme as plots
    from advdyn.plot.risk import save_figure

    out = Path(out)
    parts = [p for p in PARTS if getattr(getattr(cfg, p), "enabled", True)]
    if selected is not None:
        parts = [p for p in PARTS if p in selected]
    result = SMEResult()
    timing = {}
    with x64():
        for part in parts:
            t0 = time.perf_counter()
            if part == "risks":
                ds = risks_part(cfg)
                se = ds["adv_risk_sd"].sel(solver="sgd") / np.sqrt(cfg.risks.replicates)
                summ = {f"{t}_{m}_max_gap_adv_risk_in_sgd_se": float(np.max(np.abs(
                    ds["adv_risk"].sel(training=t, solver=m)
                    - ds["adv_risk"].sel(training=t, solver="sgd"))[1:]
                    / se.sel(training=t)[1:]))
                    for t in ("clean", "adversarial") for m in ("sme1", "sme2")}
            else:
                ds, summ = globals()[f"{part}_part"](cfg)
            timing[part] = time.perf_counter() - t0
            result.datasets[part] = ds
            result.summary[part] = summ
            if progress is not None:
                progress(1, len(parts))
    result.summary["seconds"] = timing
    result.summary["config"] = cfg.model_dump(mode="json")
    for part in PARTS:
        if part not in parts:  # of an earlier run with other parts
            for suffix in ("nc", "png"):
                (out / f"sme_{part}.{suffix}").unlink(missing_ok=True)
    for part in parts:
        ds, summ = result.datasets[part], result.summary[part]
        result.files[f"{part}.nc"] = write_netcdf(ds, out / f"sme_{part}.nc")
        fig = getattr(plots, f"plot_{part}")(ds, summ)
        result.files[f"{part}.png"] = save_figure(fig, out / f"sme_{part}.png")
    result.files["summary.json"] = write_json(result.summary, out / "sme_summary.json")
    return result
