"""Figures of ``advdyn sme`` (seed 002), built without pyplot.

Each function takes the dataset of one part of `advdyn.workflows.sme.run_sme` and its
summary and returns a `matplotlib.figure.Figure`.
"""

from __future__ import annotations

import xarray as xr
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from advdyn.plot import style

_C = style.COLORS
_METHOD = {"sgd": dict(color=_C["black"], lw=1.6, label="SGD (mean)"),
           "sme1": dict(color=_C["blue"], ls="--", lw=1.3, label="SME order 1"),
           "sme2": dict(color=_C["vermillion"], ls=":", lw=1.6, label="SME order 2")}
_TRAIN = {"clean": _C["green"], "adversarial": _C["purple"]}
_RISK = {"adv_risk": "adversarial risk R_eps", "clean_risk": "clean risk R_0"}


def plot_risks(ds: xr.Dataset, summary: dict | None = None) -> Figure:
    """Clean and adversarial risk of SGD with SME overlays, clean vs adversarial training."""
    fig, axes = style.new_figure(2, 2, width=11, height=7.8)
    for row, train in enumerate(ds["training"].values):
        for col, name in enumerate(("adv_risk", "clean_risk")):
            ax = axes[row, col]
            for m in ds["solver"].values:
                mean = ds[name].sel(training=train, solver=m).values
                ax.plot(ds["time"], mean, **_METHOD[str(m)])
                if m == "sgd":
                    sd = ds[f"{name}_sd"].sel(training=train, solver=m).values
                    ax.fill_between(ds["time"], mean - sd, mean + sd, color="0.8",
                                    label="SGD +- 1 sd")
            ax.set_title(f"{train} training")
            ax.set_xlabel("time tau = k eta")
            ax.set_ylabel(_RISK[name])
    style.figure_legend(fig, ncol=4)
    # an sme_risks.nc written by advdyn 0.1 names its replicates "paths"
    replicates = ds.attrs.get("replicates", ds.attrs.get("paths"))  # rename29: keep
    fig.suptitle(f"SGD vs its SMEs (eta = {ds.attrs.get('eta')}, {replicates} replicates, "
                 f"eps = {ds.attrs.get('eps')})", fontsize=style.FONT_TITLE)
    return style.finish(fig)


def plot_weak_error(ds: xr.Dataset, summary: dict) -> Figure:
    """Weak error vs eta (log-log), exact moments, with fitted slopes +- standard error."""
    fig, axes = style.new_figure(1, 1, width=8.6, height=4.6)
    ax = axes[0, 0]
    eta = ds["eta"].values
    for order, color in ((1, _C["blue"]), (2, _C["vermillion"])):
        for at, marker, ls in (("final", "o", "-"), ("max", "s", ":")):
            slope, se = summary[f"slope_order{order}_{at}"]
            ax.loglog(eta, ds[f"order{order}_{at}"], marker=marker, ls=ls, color=color,
                      label=f"order {order}, {at}: slope {slope:.2f} +- {se:.2f}")
    ax.loglog(eta, float(ds["order1_final"][0]) * eta / eta[0], color="0.6", lw=0.8, label="eta^1")
    ax.loglog(eta, float(ds["order2_final"][0]) * (eta / eta[0]) ** 2, color="0.3", lw=0.8,
              label="eta^2")
    ax.set_xlabel("learning rate eta")
    ax.set_ylabel("weak error |E|Delta|^2 (SGD) - E|Delta|^2 (SME)|")
    ax.set_title("weak error from exact second moments")
    style.legend(ax)
    style.finish(fig)
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xticks(eta, [f"{e:.3g}" for e in eta])
    return fig


def plot_control(ds: xr.Dataset, summary: dict) -> Figure:
    """Loss and multiplier under the optimal feedback and fixed rates."""
    fig, axes = style.new_figure(1, 2, width=12, height=4.4)
    a1, a2 = axes[0]
    for pol in ds["policy"].values:
        a1.plot(ds["time"], ds["loss"].sel(policy=pol), label=str(pol))
        a2.plot(ds["time"], ds["u"].sel(policy=pol), label=str(pol))
    a1.set_yscale("log")
    a2.plot(ds["time"], ds["u_closed_form"], color=_C["black"], ls=":",
            label="closed form 1/(1+a(t-t*))")
    a2.axvline(summary["switch_time"], color=_C["grey"], lw=0.8, ls="--",
               label=f"switch time t* = {summary['switch_time']:.3f}")
    a1.set_title("expected loss under each policy")
    a1.set_ylabel("expected loss a E x^2 / 2")
    a2.set_title("rate multiplier")
    a2.set_ylabel("rate multiplier u(t)")
    for ax in (a1, a2):
        ax.set_xlabel("time t")
    style.legend(a2, title="policy")
    return style.finish(fig)


def plot_flows(ds: xr.Dataset, summary: dict) -> Figure:
    """Gradient flows of clean vs adversarial training: risks, norm, input-gradient norm."""
    fig, grid = style.new_figure(2, 2, width=11, height=7.8)
    axes = grid.flat
    titles = {"adv_risk": "adversarial risk R_eps (adv_risk)",
              "clean_risk": "clean risk R_0 (clean_risk)", "norm": "|theta| (norm)",
              "input_grad_norm": "input-gradient norm (input_grad_norm)"}
    later = ds.isel(time=ds["time"].values > 0)  # log time axis: t = 0 is the dotted line
    for ax, name in zip(axes, titles, strict=True):
        for train in ds["training"].values:
            ax.plot(later["time"], later[name].sel(training=train), color=_TRAIN[str(train)],
                    label=f"{train} flow")
        ax.set_ylabel(titles[name])
        ax.set_xscale("log")
        ax.set_xlabel("time t")
    grid[0, 0].axhline(summary["adv_risk_start"], color=_C["grey"], ls=":", lw=0.8,
                       label="R_eps(theta_0)")
    style.figure_legend(fig, ncol=3)
    fig.suptitle(f"gradient flows, K = I, |theta*| = 1, eps = {ds.attrs['eps']}: clean "
                 f"training raises R_eps late ({summary['adv_risk_start']:.3f} -> "
                 f"{summary['adv_risk_end_clean_flow']:.3f})", fontsize=style.FONT_TITLE)
    return style.finish(fig)


def plot_minimax(ds: xr.Dataset, summary: dict) -> Figure:
    """Adversarial risk (exact inner max) along the flows of K-step PGD games."""
    fig, axes = style.new_figure(1, 1, width=8.4, height=4.6)
    ax = axes[0, 0]
    for adv, r in zip(ds["adversary"].values, ds["effective_radius"].values, strict=True):
        exact = adv == "exact"  # dashed and on top: a game that reaches eps shows beneath
        ax.plot(ds["time"], ds["adv_risk"].sel(adversary=adv),
                label=f"{adv} (eps_K = {r:.2g})", color="black" if exact else None,
                lw=1.2 if exact else 2.5, ls="--" if exact else "-", zorder=3 if exact else 2)
    ax.set_xlabel("time t")
    ax.set_ylabel("adversarial risk R_eps (exact inner max)")
    ax.set_title(f"K PGD steps of size {ds.attrs['alpha']} vs exact inner maximum")
    style.legend(ax)
    return style.finish(fig)


def plot_digits(ds: xr.Dataset, summary: dict) -> Figure:
    """Clean vs adversarial softmax regression on the digits: SGD and SME order 1."""
    fig, grid = style.new_figure(1, 2, width=11, height=4.6)
    axes = grid[0]
    for ax, name in zip(axes, ("clean_risk", "adv_risk"), strict=True):
        for train in ds["training"].values:
            for m, ls in (("sgd", "-"), ("sme1", "--")):
                ax.plot(ds["time"], ds[name].sel(training=train, solver=m),
                        color=_TRAIN[str(train)], ls=ls, label=f"{train} training, {m}")
        ax.set_title("digits 8x8, train set")
        ax.set_xlabel("time tau = k eta")
        ax.set_ylabel(f"{_RISK[name]} (cross-entropy, nats)")
    style.figure_legend(fig, ncol=4)
    return style.finish(fig)


__all__ = ["plot_control", "plot_digits", "plot_flows", "plot_minimax", "plot_risks",
           "plot_weak_error"]
