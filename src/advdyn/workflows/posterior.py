"""From a `PosteriorConfig` to result files (seed 003).

Files written in the output folder (atomically):

* ``posterior_small.nc``: adversarial least squares in ``d = 4``: the additive (Lyapunov)
  stationary covariance at ``theta_eps^*`` against chains, and the transient after a rate
  decay (propagation, injected, total) against chains (dimensions ``step``, ``direction``).
* ``posterior_sweep.nc``: ``tr(H Sigma)``, its leading order and ``-1/2 ln det Sigma`` over
  rates and batch sizes (``rate``, ``batch``).
* ``posterior_highdim.nc``: the ODE's per-direction posterior variance through a rate drop
  and the variance over SGD replicates (``time``, ``direction``), the curvature term and the
  KL divergence to the prior (``time``).
* ``posterior_robust.nc``: per-epoch terms of adversarial training without and with AWP
  (``run``, ``epoch``, ``k``).
* ``posterior.json``: a summary and the config.
* Figures: ``posterior_bound_terms.png``, ``posterior_shrinkage.png``,
  ``posterior_sweep.png``, ``posterior_variance_spectrum.png``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import xarray as xr

from advdyn._version import __version__
from advdyn.adversarial import Attack, Schedule, gaussian_mixture, load_digits, make_model
from advdyn.config.posterior import (
    HighdimConfig,
    PosteriorConfig,
    RobustConfig,
    SmallConfig,
    SweepConfig,
)
from advdyn.errors import ConfigError
from advdyn.io import write_json, write_netcdf
from advdyn.io.files import folder_lock
from advdyn.posterior import (
    UnstableRateError,
    adversarial_ls_gradient_moment,
    adversarial_ls_hessian,
    adversarial_ls_optimum,
    stationary_covariance,
    transient_covariance,
)
from advdyn.posterior.chains import ls_chains
from advdyn.posterior.highdim import (
    group_by_eigenvalue,
    posterior_kl,
    posterior_path,
    replicate_variance,
    stationary_variance,
)
from advdyn.posterior.robust import RECORDS, Measure, RobustRecord, robust_training
from advdyn.precision import float64
from advdyn.problem import LeastSquares, ProblemInstance, stream_key
from advdyn.simulate import sgd_iterates
from advdyn.theory.rates import StepDrop
from advdyn.workflows.memory import check_size


@dataclass(frozen=True)
class PosteriorResult:
    """What `run_posterior` produced.

    Attributes
    ----------
    datasets : dict of str to xarray.Dataset
        ``small``, ``sweep``, ``highdim`` and (when enabled) ``robust``.
    summary : dict
        The JSON summary.
    files : dict of str to Path
        Written files by role.
    """

    datasets: dict[str, xr.Dataset]
    summary: dict
    files: dict[str, Path]


def _small_problem(c: SmallConfig):
    K = np.diag(np.asarray(c.spectrum, np.float64))
    ts = np.asarray(c.theta_star, np.float64)
    opt = np.asarray(adversarial_ls_optimum(K, ts, c.sigma, c.eps))
    H = np.asarray(adversarial_ls_hessian(opt, K, ts, c.sigma, c.eps))
    C = np.asarray(adversarial_ls_gradient_moment(opt, K, ts, c.sigma, c.eps))
    return K, ts, opt, H, C


@float64
def run_small(c: SmallConfig) -> xr.Dataset:
    """Covariance at ``theta_eps^*`` and the transient after a decay, theory vs chains.

    Parameters
    ----------
    c : SmallConfig

    Returns
    -------
    xarray.Dataset
    """
    _, ts, opt, H, C = _small_problem(c)
    try:
        old = stationary_covariance(H, C, c.eta)
    except UnstableRateError as err:
        raise ConfigError("small.eta", str(err)) from None
    eta2 = c.eta / c.decay_factor
    steps = np.asarray(c.transient_steps)
    tr = transient_covariance(H, C, eta2, old.full, steps)
    rates = np.concatenate([np.full(c.burn_in, c.eta), np.full(int(steps.max()), eta2)])
    it = np.asarray(ls_chains(np.asarray(c.spectrum), ts, c.sigma, c.eps, opt, rates,
                              c.burn_in + steps, c.chains, c.seed))
    chain_var = np.var(it, axis=1, ddof=1)
    diag = lambda a: np.diagonal(np.asarray(a), axis1=-2, axis2=-1)  # noqa: E731
    ds = xr.Dataset(
        {
            "chain_variance": (("step", "direction"), chain_var),
            "chain_se": (("step", "direction"), chain_var * np.sqrt(2 / c.chains)),
            "theory_variance": (("step", "direction"), diag(tr.total)),
            "propagation": (("step", "direction"), diag(tr.propagation)),
            "injected": (("step", "direction"), diag(tr.injected)),
            "stationary_old": ("direction", diag(old.position)),
            "stationary_new": ("direction", diag(tr.stationary)),
            "optimum": ("direction", opt),
            "hessian_diag": ("direction", np.diag(H)),
        },
        coords={"step": steps, "direction": np.arange(len(c.spectrum))},
        attrs={"eta": c.eta, "eta_after": eta2, "chains": c.chains, "eps": c.eps,
               "sigma": c.sigma},
    )
    emp = np.cov(it[0].T)
    ds.attrs["stationary_relative_error"] = float(
        np.linalg.norm(np.asarray(old.position) - emp) / np.linalg.norm(emp)
    )
    return ds


@float64
def run_sweep(c: SweepConfig, small: SmallConfig) -> xr.Dataset:
    """``tr(H Sigma)`` of the small problem over rates and batch sizes (closed forms).

    Parameters
    ----------
    c : SweepConfig
    small : SmallConfig
        The problem.

    Returns
    -------
    xarray.Dataset
        ``trace_hs``, ``leading`` (``eta tr(C) / (2 B (1 - m))``) and ``neg_half_logdet``;
        NaN where the rate is unstable.
    """
    _, _, _, H, C = _small_problem(small)
    h = np.linalg.eigvalsh(H)
    shape = (len(c.rates), len(c.batches))
    trace_hs, leading, logdet = np.full(shape, np.nan), np.full(shape, np.nan), np.full(
        shape, np.nan)
    for i, eta in enumerate(c.rates):
        for j, b in enumerate(c.batches):
            leading[i, j] = eta * np.trace(C) / (2 * b * (1 - c.momentum))
            try:
                S = np.asarray(stationary_covariance(H, C, eta, c.momentum, b).position)
            except UnstableRateError:
                continue
            trace_hs[i, j] = np.sum(H * S)
            logdet[i, j] = -0.5 * np.linalg.slogdet(S)[1]
    return xr.Dataset(
        {"trace_hs": (("rate", "batch"), trace_hs), "leading": (("rate", "batch"), leading),
         "neg_half_logdet": (("rate", "batch"), logdet)},
        coords={"rate": np.asarray(c.rates), "batch": np.asarray(c.batches)},
        attrs={"momentum": c.momentum, "h_max": float(h.max()), "h_min": float(h.min())},
    )


def highdim_instance(c: HighdimConfig) -> ProblemInstance:
    """Streaming adversarial least squares with a uniform spectrum (seeded draws)."""
    rng = np.random.default_rng(c.seed)
    d = c.d
    lam = np.linspace(c.eigen_low, c.eigen_high, d)
    ts = rng.standard_normal(d)
    ts /= np.linalg.norm(ts)
    f = lambda x: jnp.asarray(x, jnp.float64)  # noqa: E731
    return ProblemInstance(
        eigenvalues=f(lam[None]), theta_star=f(ts), means=f(np.zeros((1, d))),
        weights=f([1.0]), labels=f([0.0]), theta0=f(0.5 * rng.standard_normal(d) / np.sqrt(d)),
        noise=f(c.noise), epsilon=f(c.eps), ridge=f(0.0), loss=LeastSquares(),
        task="regression",
    )


@float64
def run_highdim(c: HighdimConfig) -> xr.Dataset:
    """ODE posterior variance through a rate drop, against SGD replicates.

    Parameters
    ----------
    c : HighdimConfig

    Returns
    -------
    xarray.Dataset
    """
    inst = highdim_instance(c)
    lr = StepDrop(c.gamma1, c.gamma2, c.t_drop)
    times, thetas = sgd_iterates(inst, lr, stream_key(c.seed), t_max=c.t_max,
                                 n_times=c.n_times, replicates=c.replicates, dtype="float64")
    path = posterior_path(inst, lr, times)
    emp = replicate_variance(thetas)
    prior = c.prior_variance if c.prior_variance is not None else 1.0 / c.d
    kl = np.asarray(posterior_kl(path, inst, prior))
    lam = np.asarray(inst.eigenvalues[0])
    centres, g_emp = group_by_eigenvalue(emp, lam, c.groups)
    _, g_ode = group_by_eigenvalue(np.asarray(path.variance), lam, c.groups)
    # the limits with the coefficients frozen at the drop (before) and at the end (after)
    i_drop = int(np.searchsorted(np.asarray(times), c.t_drop, side="right") - 1)
    v1 = np.asarray(stationary_variance(path.D[i_drop], path.N[i_drop], c.gamma1, c.d))
    v2 = np.asarray(stationary_variance(path.D[-1], path.N[-1], c.gamma2, c.d))
    return xr.Dataset(
        {
            "ode_variance": (("time", "direction"), np.asarray(path.variance)),
            "sgd_variance": (("time", "direction"), emp),
            "ode_group": (("time", "group"), g_ode),
            "sgd_group": (("time", "group"), g_emp),
            "curvature": ("time", np.asarray(path.curvature)),
            "kl": ("time", kl),
            "lr": ("time", np.asarray(path.lr)),
            "objective": ("time", np.asarray(path.objective)),
            "eigenvalue": ("direction", lam),
            "group_eigenvalue": ("group", centres),
            "stationary_before": ("direction", v1),
            "stationary_after": ("direction", v2),
        },
        coords={"time": np.asarray(times), "direction": np.arange(c.d),
                "group": np.arange(c.groups)},
        attrs={"d": c.d, "replicates": c.replicates, "t_drop": c.t_drop, "gamma1": c.gamma1,
               "gamma2": c.gamma2, "prior_variance": prior},
    )


def _robust_data(c: RobustConfig):
    if c.data == "digits":
        n_train = min(c.n_train, 1797 - c.n_test - 10)
        return load_digits(n_train, c.n_test, c.seed)
    return gaussian_mixture(c.n_train, c.n_test, c.d, c.classes, 3.0, c.seed)


def run_robust(c: RobustConfig, advance=None) -> tuple[xr.Dataset, list[RobustRecord]]:
    """Adversarial training without and with AWP; per-epoch bound terms.

    Parameters
    ----------
    c : RobustConfig
    advance : callable, optional
        Called with 1 per epoch.

    Returns
    -------
    dataset : xarray.Dataset
        Dimensions ``run`` (``at``, ``awp``), ``epoch``, ``k``.
    records : list of RobustRecord
    """
    data = _robust_data(c)
    try:
        model = make_model("mlp", data.input_shape, data.classes, c.width, c.depth,
                           seed=c.seed)
    except ValueError as err:
        raise ConfigError("robust", str(err)) from None
    attack = Attack(c.eps, norm=c.norm, method=c.method, steps=c.steps, clip=data.domain)
    sched = Schedule(epochs=c.epochs, batch_size=c.batch_size, lr=c.lr, momentum=c.momentum,
                     weight_decay=c.weight_decay, kind="step", drops=tuple(c.drops))
    measure = Measure(c.subset, c.top_k, c.lanczos_iterations, c.probes,
                      tuple(c.prior_variances), c.delta, c.loss_scale, c.measure_every)
    records = [
        robust_training(model, data, attack, sched, awp_gamma=g,
                        awp_warmup_epochs=c.awp_warmup_epochs, measure=measure,
                        label_noise=c.label_noise, seed=c.seed, advance=advance)
        for g in (0.0, c.awp_gamma)
    ]
    variables: dict[str, tuple] = {
        name: (("run", "epoch"), np.stack([r.scalars[name] for r in records]))
        for name in RECORDS
    }
    variables["top_eigenvalues"] = (("run", "epoch", "k"),
                                    np.stack([r.top_eigenvalues for r in records]))
    ds = xr.Dataset(
        variables,
        coords={"run": ["at", "awp"], "epoch": records[0].epochs, "k": np.arange(c.top_k)},
        attrs={"data": data.name, "label_noise": c.label_noise, "awp_gamma": c.awp_gamma,
               "n_train": data.n_train, "eps": c.eps, "norm": c.norm,
               "loss_scale": c.loss_scale, "delta": c.delta},
    )
    ds["time"].attrs.update(units="s", long_name="wall-clock time since the start of training")
    return ds, records


def _summary(cfg: PosteriorConfig, ds: dict[str, xr.Dataset], seconds: float) -> dict:
    small, high = ds["small"], ds["highdim"]
    rel = np.abs(high["sgd_group"].values[1:] / high["ode_group"].values[1:] - 1)
    z = (small["chain_variance"] - small["theory_variance"]) / small["chain_se"]
    out = {
        "advdyn_version": __version__,
        "seconds": seconds,
        "small": {
            "lyapunov_relative_error_at_eta": small.attrs["stationary_relative_error"],
            # z-scores of the chains against the *additive* transient: large by design,
            # the O(eta) multiplicative-noise bias over the chains' standard error
            "transient_max_abs_z_additive": float(np.abs(z.values).max()),
        },
        "highdim": {
            "max_relative_gap_ode_vs_sgd_groups": float(rel.max()),
            "kl_at_drop": float(high["kl"].sel(time=cfg.highdim.t_drop, method="nearest")),
            "kl_final": float(high["kl"].values[-1]),
            "curvature_at_drop": float(
                high["curvature"].sel(time=cfg.highdim.t_drop, method="nearest")),
            "curvature_final": float(high["curvature"].values[-1]),
        },
        "config": cfg.model_dump(mode="json"),
    }
    if "robust" in ds:
        r = ds["robust"]
        out["robust"] = {
            run: {
                "final_train_loss": float(r["train_loss"].sel(run=run)[-1]),
                "final_test_loss": float(r["test_loss"].sel(run=run)[-1]),
                "min_test_loss": float(r["test_loss"].sel(run=run).min()),
                "best_epoch": int(
                    r["epoch"].values[int(np.argmin(r["test_loss"].sel(run=run).values))]),
                "final_gap": float(r["gap"].sel(run=run)[-1]),
                "final_bound": float(r["bound"].sel(run=run)[-1]),
                "final_curvature": float(r["curvature"].sel(run=run)[-1]),
                "final_kl": float(r["kl"].sel(run=run)[-1]),
                "final_top_eigenvalue": float(r["top_eigenvalues"].sel(run=run)[-1, 0]),
                "final_test_loss_scaled": float(r["test_loss"].sel(run=run)[-1])
                / r.attrs["loss_scale"],
                "bound_vacuous": bool(r["bound"].sel(run=run)[-1] >= 1.0),
            }
            for run in ("at", "awp")
        }
    return out


def run_posterior(cfg: PosteriorConfig, out: str | Path, progress: bool = False,
                  figures: bool = True,
                  on_start: Callable[[], None] | None = None) -> PosteriorResult:
    """Compute every part of a config and write the files listed in the module docstring.

    Parameters
    ----------
    cfg : PosteriorConfig
    out : str or Path
        Output folder (created).
    progress : bool
        Show a progress bar over the training epochs.
    figures : bool
        Write the figures.
    on_start : callable, optional
        Called once the inputs and the output folder have been checked (and the folder is
        held), before any computation: a command's status line goes there, so that a
        refusal is the only line it prints.

    Returns
    -------
    PosteriorResult

    Raises
    ------
    ConfigError
        If the high-dimensional part's iterates would not fit in memory (field
        ``highdim.d``), or ``out`` cannot be written or is in use by another command
        (field ``out``; [`advdyn.io.folder_lock`][advdyn.io.folder_lock], held from before the first
        part runs).
    """
    h = cfg.highdim  # the recorded SGD iterates (replicates, n_times, d), float64, at least
    check_size(8.0 * h.replicates * h.n_times * h.d, "highdim.d", "the recorded SGD iterates")
    with folder_lock(out, "advdyn posterior"):
        if on_start is not None:
            on_start()
        return _run_posterior(cfg, Path(out), progress, figures)


def _run_posterior(cfg: PosteriorConfig, out: Path, progress: bool,
                   figures: bool) -> PosteriorResult:
    from advdyn.workflows.progress import progress_bar

    start = time.perf_counter()
    seconds: dict[str, float] = {}
    ds: dict[str, xr.Dataset] = {}
    for name, part in (("small", lambda: run_small(cfg.small)),
                       ("sweep", lambda: run_sweep(cfg.sweep, cfg.small)),
                       ("highdim", lambda: run_highdim(cfg.highdim))):
        t0 = time.perf_counter()
        ds[name] = part()
        seconds[name] = time.perf_counter() - t0
    if cfg.robust.enabled:
        t0 = time.perf_counter()
        with progress_bar("adversarial training (AT, AWP)", 2 * cfg.robust.epochs,
                          progress) as advance:
            ds["robust"], _ = run_robust(cfg.robust, advance)
        seconds["robust"] = time.perf_counter() - t0
    files: dict[str, Path] = {}
    for name, d in ds.items():
        d.attrs["advdyn_version"] = __version__
        files[name] = write_netcdf(d, out / f"posterior_{name}.nc")
    summary = _summary(cfg, ds, time.perf_counter() - start)
    summary["seconds_by_part"] = seconds
    files["summary"] = write_json(summary, out / "posterior.json")
    if figures:
        from advdyn.plot.posterior import write_figures

        files.update(write_figures(ds, out))
    return PosteriorResult(ds, summary, files)
