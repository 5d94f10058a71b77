"""Figures of the posterior / PAC-Bayes study (seed 003), as matplotlib ``Figure`` objects.

* `plot_bound_terms`: robust train/test loss, gap, curvature and KL terms and the
  bound over adversarial training, AT against AWP.
* `plot_shrinkage`: the covariance after a rate decay against theory (``d = 4``
  chains; the high-dimensional ODE against SGD replicates).
* `plot_sweep`: ``tr(H Sigma)`` over learning rates and batch sizes.
* `plot_variance_spectrum`: per-direction posterior variance against eigenvalue.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from advdyn.plot import style
from advdyn.plot.risk import save_figure

_C = style.COLORS
_RUNS = {"at": ("AT", _C["blue"]), "awp": ("AT + AWP", _C["vermillion"])}


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
    fig, axes = style.new_figure(2, 3, width=15, height=7.8)
    ep = ds["epoch"].values
    scale = ds.attrs.get("loss_scale", 1.0)
    for run in ds["run"].values:
        label, color = _RUNS.get(str(run), (str(run), _C["black"]))
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
    drops = ep[np.flatnonzero(np.diff(ds["lr"].isel(run=0).values) < 0) + 1]
    for ax, (title, ylabel) in zip(axes.flat, titles, strict=True):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        for k, e in enumerate(drops):
            ax.axvline(e - 0.5, color=_C["grey"], lw=0.8, ls=":",
                       label="learning-rate drop" if k == 0 else None)
        style.legend(ax)
    axes[0, 2].set_yscale("log")
    axes[1, 0].set_yscale("log")
    gap_end = float(np.nanmax(ds["gap"].isel(epoch=-1).values))
    fig.suptitle(f"{ds.attrs.get('data', '')}, label noise {ds.attrs.get('label_noise', 0)}",
                 fontsize=style.FONT_TITLE)
    if not gap_end > 0:
        style.caption(fig, f"no robust overfitting in this run (final robust gap {gap_end:.3f}"
                           " <= 0); a small, noisy training set shows it: "
                           "advdyn posterior examples/posterior/overfitting.toml")
    return style.finish(fig)


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
    fig, axes = style.new_figure(1, 2, width=14, height=4.6)
    ax1, ax2 = axes[0]
    steps = small["step"].values
    x = np.maximum(steps, 0.5)

    def positive(values):  # a zero (e.g. the injected part at the drop) has no log position
        values = np.asarray(values, dtype=float)
        return np.where(values > 0, values, np.nan)

    for i in small["direction"].values:
        c = style.PALETTE[int(i) % len(style.PALETTE)]
        s = small.sel(direction=i)
        ax1.plot(x, positive(s["theory_variance"]), color=c, label=f"direction {i}")
        ax1.plot(x, positive(s["propagation"]), color=c, ls=":", lw=1.0)
        ax1.plot(x, positive(s["injected"]), color=c, ls="--", lw=1.0)
        ax1.errorbar(x, s["chain_variance"], yerr=s["chain_se"], fmt="o", color=c, ms=4)
    key = [Line2D([], [], color=_C["black"], label="theory (Lyapunov)"),
           Line2D([], [], color=_C["black"], ls=":", label="propagated part"),
           Line2D([], [], color=_C["black"], ls="--", label="injected part"),
           Line2D([], [], color=_C["black"], marker="o", ls="none",
                  label="chains (mean +- s.e.)")]
    handles, _ = ax1.get_legend_handles_labels()
    style.legend(ax1, handles=[*handles, *key])
    ax1.set_xscale("log")
    ax1.set_yscale("log")
    ax1.set_xlabel("steps after the decay (step 0 drawn at 0.5)")
    ax1.set_ylabel("posterior variance Var x_i")
    ax1.set_title(f"d = 4: eta {small.attrs['eta']:g} -> {small.attrs['eta_after']:g}")
    t = high["time"].values
    for g in high["group"].values:
        c = style.PALETTE[int(g) % len(style.PALETTE)]
        lam = float(high["group_eigenvalue"][g])
        ax2.plot(t, high["ode_group"].isel(group=g), color=c, label=f"lambda ~ {lam:.2f}")
        ax2.plot(t, high["sgd_group"].isel(group=g), "o", color=c, ms=3)
    ax2.axvline(high.attrs["t_drop"], color=_C["grey"], lw=0.8, ls=":")
    handles, _ = ax2.get_legend_handles_labels()
    style.legend(ax2, handles=[
        *handles, Line2D([], [], color=_C["black"], label="ODE"),
        Line2D([], [], color=_C["black"], marker="o", ls="none", ms=3,
               label=f"SGD, {high.attrs['replicates']} replicates"),
        Line2D([], [], color=_C["grey"], ls=":", label="learning-rate drop")])
    ax2.set_xlabel("time t = k/d")
    ax2.set_ylabel("posterior variance v_i (group mean)")
    ax2.set_title(f"d = {high.attrs['d']}: ODE vs SGD")
    return style.finish(fig)


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
    fig, axes = style.new_figure(1, 2, width=12, height=4.4)
    ax1, ax2 = axes[0]
    rates = sweep["rate"].values
    for j, b in enumerate(sweep["batch"].values):
        c = style.PALETTE[j % len(style.PALETTE)]
        ax1.plot(rates, sweep["trace_hs"].isel(batch=j), "o-", color=c, label=f"B = {b}")
        ax1.plot(rates, sweep["leading"].isel(batch=j), ls="--", color=c, lw=0.8)
        ax2.plot(rates, sweep["neg_half_logdet"].isel(batch=j), "o-", color=c, label=f"B = {b}")
    ax1.plot([], [], color=_C["black"], ls="--", lw=0.8,
             label="leading order eta tr(C) / 2B(1-m)")
    for ax in (ax1, ax2):
        ax.set_xscale("log")
        ax.set_xlabel("learning rate eta")
        style.legend(ax, title="batch size")
    ax1.set_yscale("log")
    ax1.set_ylabel("tr(H Sigma)")
    ax2.set_ylabel("-1/2 ln det Sigma (enters the KL)")
    ax1.set_title("curvature term vs rate and batch size")
    ax2.set_title("log-volume term vs rate and batch size")
    return style.finish(fig)


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
    fig, axes = style.new_figure(1, 1, width=8.4, height=4.6)
    ax = axes[0, 0]
    lam = high["eigenvalue"].values
    t = high["time"].values
    i_drop = int(np.searchsorted(t, high.attrs["t_drop"], side="right") - 1)
    for i, label, c in ((i_drop, "before the drop", _C["blue"]),
                        (len(t) - 1, "at the end", _C["vermillion"])):
        ax.plot(lam, high["sgd_variance"].isel(time=i), ".", color=c, ms=2, alpha=0.4)
        ax.plot(high["group_eigenvalue"], high["sgd_group"].isel(time=i), "o", color=c,
                label=f"SGD replicates, t = {t[i]:.2f} ({label})")
        ax.plot(lam, high["ode_variance"].isel(time=i), color=c, label=f"ODE, {label}")
    ax.plot(lam, high["stationary_before"], color=_C["black"], ls="--", lw=0.8,
            label="stationary variance at the\nrate in force (gamma N_i / (2 d D_i))")
    ax.plot(lam, high["stationary_after"], color=_C["black"], ls="--", lw=0.8)
    ax.set_yscale("log")
    ax.set_xlabel("eigenvalue lambda_i of the data covariance")
    ax.set_ylabel("posterior variance v_i")
    ax.set_title(f"adversarial least squares, d = {high.attrs['d']}")
    style.legend(ax)
    return style.finish(fig)


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
