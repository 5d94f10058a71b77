"""Figures of the posterior / PAC-Bayes study (seed 003), as matplotlib ``Figure`` objects.

* :func:`plot_bound_terms`: robust train/test loss, gap, curvature and KL terms and the
  bound over adversarial training, AT against AWP.
* :func:`plot_shrinkage`: the covariance after a rate decay against theory (``d = 4``
  chains; the high-dimensional ODE against SGD replicates).
* :func:`plot_sweep`: ``tr(H Sigma)`` over learning rates and batch sizes.
* :func:`plot_variance_spectrum`: per-direction posterior variance against eigenvalue.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from advdyn.plot.risk import save_figure

_RUNS = {"at": ("AT", "C0"), "awp": ("AT + AWP", "C3")}


def plot_bound_terms(ds: xr.Dataset) -> Figure:
    """Per-epoch robust losses, gap, curvature/KL terms and bound, AT vs AWP.

    Parameters
    ----------
    ds : xarray.Dataset
        ``posterior_robust.nc``.

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig = Figure(figsize=(12, 7.5), layout="constrained")
    axes = fig.subplots(2, 3)
    ep = ds["epoch"].values
    scale = ds.attrs.get("loss_scale", 1.0)
    for run in ds["run"].values:
        label, color = _RUNS.get(str(run), (str(run), "k"))
        r = ds.sel(run=run)
        axes[0, 0].plot(ep, r["train_loss"], color=color, ls="--", label=f"{label} train")
        axes[0, 0].plot(ep, r["test_loss"], color=color, label=f"{label} test")
        axes[0, 1].plot(ep, r["gap"], color=color, label=label)
        # measured terms may be NaN between measurements: plot the finite points only
        def m(ax, y, **kw):
            y = np.asarray(y, dtype=float)
            ok = np.isfinite(y)
            ax.plot(ep[ok], y[ok], marker=".", ms=4, color=color, **kw)  # noqa: B023

        m(axes[0, 2], r["top_eigenvalues"].isel(k=0), label=f"{label} h_1")
        m(axes[0, 2], r["hessian_trace"], ls=":", label=f"{label} tr H")
        m(axes[1, 0], r["curvature"], label=f"{label} leading order")
        m(axes[1, 0], r["curvature_topk"], ls="--", label=f"{label} top-k")
        m(axes[1, 1], r["kl"], label=label)
        m(axes[1, 2], r["bound"], label=f"{label} bound")
        axes[1, 2].plot(ep, r["test_loss"] / scale, color=color, ls="--",
                        label=f"{label} test loss / L")
    titles = [
        ("robust cross-entropy", "loss"), ("robust generalization gap", "test - train"),
        ("curvature (Lanczos, Hutchinson)", "eigenvalue / trace"),
        ("curvature term 1/2 tr(H Sigma)", "loss"), ("KL(Q || P), best prior", "nats"),
        ("McAllester bound vs test", "scaled loss"),
    ]
    for ax, (title, ylabel) in zip(axes.flat, titles, strict=True):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=7)
        for e in ep[np.flatnonzero(np.diff(ds["lr"].isel(run=0).values) < 0) + 1]:
            ax.axvline(e - 0.5, color="0.7", lw=0.8)
    axes[0, 2].set_yscale("log")
    axes[1, 0].set_yscale("log")
    fig.suptitle(f"{ds.attrs.get('data', '')}, label noise {ds.attrs.get('label_noise', 0)}")
    return fig


def plot_shrinkage(small: xr.Dataset, high: xr.Dataset) -> Figure:
    """Covariance shrinkage after a rate decay: theory against simulation.

    Parameters
    ----------
    small : xarray.Dataset
        ``posterior_small.nc``.
    high : xarray.Dataset
        ``posterior_highdim.nc``.

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig = Figure(figsize=(12, 4.5), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    steps = small["step"].values
    x = np.maximum(steps, 0.5)
    for i in small["direction"].values:
        c = f"C{i}"
        s = small.sel(direction=i)
        ax1.plot(x, s["theory_variance"], color=c, label=f"direction {i}: theory (Lyapunov)")
        ax1.plot(x, s["propagation"], color=c, ls=":", lw=0.9)
        ax1.plot(x, s["injected"], color=c, ls="--", lw=0.9)
        ax1.errorbar(x, s["chain_variance"], yerr=s["chain_se"], fmt="o", color=c, ms=4)
    ax1.set_xscale("log")
    ax1.set_yscale("log")
    ax1.set_xlabel("steps after the decay (0 plotted at 0.5)")
    ax1.set_ylabel("Var x_i")
    ax1.set_title(f"d = 4: eta {small.attrs['eta']:g} -> {small.attrs['eta_after']:g} "
                  "(dots: chains; dotted: propagation; dashed: injected)", fontsize=9)
    ax1.legend(fontsize=7)
    t = high["time"].values
    for g in high["group"].values:
        c = f"C{g}"
        lam = float(high["group_eigenvalue"][g])
        ax2.plot(t, high["ode_group"].isel(group=g), color=c, label=f"lambda ~ {lam:.2f}")
        ax2.plot(t, high["sgd_group"].isel(group=g), "o", color=c, ms=3)
    ax2.axvline(high.attrs["t_drop"], color="0.6", lw=0.8)
    ax2.set_xlabel("t = k / d")
    ax2.set_ylabel("posterior variance v_i (group mean)")
    ax2.set_title(f"d = {high.attrs['d']}: ODE (lines) vs {high.attrs['replicates']} SGD "
                  "replicates (dots)", fontsize=9)
    ax2.legend(fontsize=7)
    return fig


def plot_sweep(sweep: xr.Dataset) -> Figure:
    """``tr(H Sigma)`` and ``-1/2 ln det Sigma`` over rates for each batch size.

    Parameters
    ----------
    sweep : xarray.Dataset
        ``posterior_sweep.nc``.

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    rates = sweep["rate"].values
    for j, b in enumerate(sweep["batch"].values):
        c = f"C{j}"
        ax1.plot(rates, sweep["trace_hs"].isel(batch=j), "o-", color=c, label=f"B = {b}")
        ax1.plot(rates, sweep["leading"].isel(batch=j), ls="--", color=c, lw=0.8)
        ax2.plot(rates, sweep["neg_half_logdet"].isel(batch=j), "o-", color=c, label=f"B = {b}")
    for ax in (ax1, ax2):
        ax.set_xscale("log")
        ax.set_xlabel("learning rate eta")
        ax.legend(fontsize=7)
    ax1.set_yscale("log")
    ax1.set_ylabel("tr(H Sigma)  (dashed: eta tr(C) / 2B(1-m))")
    ax2.set_ylabel("-1/2 ln det Sigma (enters the KL)")
    ax1.set_title("curvature term vs rate and batch size")
    ax2.set_title("log-volume term vs rate and batch size")
    return fig


def plot_variance_spectrum(high: xr.Dataset) -> Figure:
    """Per-direction posterior variance against eigenvalue before and after the drop.

    Parameters
    ----------
    high : xarray.Dataset
        ``posterior_highdim.nc``.

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig = Figure(figsize=(6.5, 4.5), layout="constrained")
    ax = fig.subplots()
    lam = high["eigenvalue"].values
    t = high["time"].values
    i_drop = int(np.searchsorted(t, high.attrs["t_drop"], side="right") - 1)
    for i, label, c in ((i_drop, "before drop", "C0"), (len(t) - 1, "end", "C3")):
        ax.plot(lam, high["sgd_variance"].isel(time=i), ".", color=c, ms=2, alpha=0.4)
        ax.plot(high["group_eigenvalue"], high["sgd_group"].isel(time=i), "o", color=c,
                label=f"SGD replicates, t = {t[i]:.2f} ({label})")
        ax.plot(lam, high["ode_variance"].isel(time=i), color=c, label="ODE")
    ax.plot(lam, high["stationary_before"], "k--", lw=0.8, label="gamma N / (2 d D)")
    ax.plot(lam, high["stationary_after"], "k--", lw=0.8)
    ax.set_yscale("log")
    ax.set_xlabel("eigenvalue lambda_i")
    ax.set_ylabel("posterior variance v_i")
    ax.set_title(f"adversarial least squares, d = {high.attrs['d']}")
    ax.legend(fontsize=7)
    return fig


def write_figures(ds: dict[str, xr.Dataset], out: str | Path) -> dict[str, Path]:
    """Write every figure whose data is present.

    Parameters
    ----------
    ds : dict of str to xarray.Dataset
        ``small``, ``sweep``, ``highdim`` and optionally ``robust``.
    out : str or Path
        Folder.

    Returns
    -------
    dict of str to Path
    """
    out = Path(out)
    files = {
        "fig_shrinkage": save_figure(plot_shrinkage(ds["small"], ds["highdim"]),
                                     out / "posterior_shrinkage.png"),
        "fig_sweep": save_figure(plot_sweep(ds["sweep"]), out / "posterior_sweep.png"),
        "fig_spectrum": save_figure(plot_variance_spectrum(ds["highdim"]),
                                    out / "posterior_variance_spectrum.png"),
    }
    if "robust" in ds:
        files["fig_bound_terms"] = save_figure(plot_bound_terms(ds["robust"]),
                                               out / "posterior_bound_terms.png")
    return files
