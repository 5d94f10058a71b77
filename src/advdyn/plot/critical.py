"""Figures of the critical-eps study (matplotlib ``Figure`` objects, no pyplot state).

* `plot_critical`: adversarial training loss against eps (from scratch and after
  fine-tuning), the clean test loss as a horizontal line, both eps* crossings marked; FGM
  panel when available.
* `plot_linear_fig2` / `plot_linear_fig3`: analogues of the paper's figures 2
  and 3 for linear regression (`advdyn.critical.linear`).
* `plot_scaling`: Theorem-1 crossing and surrogate eps* against ``d/n``.
* `plot_exact_critical`: eps*(n/d) of any problem from its exact ODE
  (``advdyn critical-exact``) and the risks it compares.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from advdyn.plot import style
from advdyn.solution import RESULTS

_C = style.COLORS


def plot_critical(scratch, fast, fgm=None, strong_scratch=None, strong_fast=None, *,
                  radius: float | None = None,
                  interval: tuple[float, float, float] | None = None) -> Figure:
    """Adversarial training loss against eps with the clean test loss and the crossings.

    Parameters
    ----------
    scratch : ScratchEstimate
        From-scratch grid.
    fast : FineTuneEstimate
        Fine-tuning points and extrapolation.
    fgm : OverfittingResult, optional
        Adds a panel with the PGD test accuracy of FGM- and PGD-trained models.
    strong_scratch, strong_fast : StrongEstimate, optional
        The same models' adversarial training losses under the strong evaluation (worst
        case over PGD, APGD-CE, APGD-T) and their eps*.
    radius : float, optional
        The radius being judged (``--eps``): a vertical line.
    interval : (float, float, float), optional
        ``(lower, upper, level)``: the prediction interval of eps* over repeats, shaded.

    Returns
    -------
    matplotlib.figure.Figure
        Legends beside the panels, outside the data.
    """
    ncols = 2 if fgm is not None else 1
    fig, axes2 = style.new_figure(1, ncols, width=6.8 * ncols, height=4.4)
    axes = axes2[0]
    ax = axes[0]
    if interval is not None and all(v is not None and np.isfinite(v) for v in interval[:2]):
        lower, upper, level = interval
        ax.axvspan(lower, upper, color=_C["grey"], alpha=0.2, lw=0,
                   label=f"eps* {100 * level:.0f}% prediction interval")
    if radius is not None and np.isfinite(radius):
        ax.axvline(radius, color=_C["black"], lw=1.6, ls=(0, (4, 2)),
                   label=f"judged radius --eps = {radius:.4g}")
    eps = scratch.table["eps"].values
    ax.plot(eps, scratch.table["adv_train_loss"].values, "o-", color=_C["blue"],
            label="adv. training loss, trained from scratch")
    ax.plot(eps, scratch.table["adv_test_loss"].values, "s:", color=_C["sky"],
            label="adv. test loss, from scratch", zorder=3)
    fe = fast.table["eps"].values
    fl = fast.table["adv_train_loss"].values
    stage = fast.table["stage"].values if "stage" in fast.table else np.zeros(len(fe))
    ax.plot(fe[stage == 0], fl[stage == 0], "^", color=_C["orange"], ms=8,
            label="adv. training loss, fine-tuned")
    if np.any(stage == 1):
        ax.plot(fe[stage == 1], fl[stage == 1], "v", color=_C["vermillion"], ms=8,
                label="fine-tuned, refinement near eps*")
    fit = stage == 1 if np.sum(stage == 1) > 1 else np.ones(len(fe), bool)
    if np.isfinite(fast.eps_star_linear):
        b, a = np.polyfit(fe[fit], fl[fit], 1)
        xs = np.linspace(0, max(fast.eps_star_linear, fe[-1]) * 1.1, 50)
        ax.plot(xs, a + b * xs, "--", color=_C["orange"], label="linear extrapolation")
    if strong_scratch is not None:
        ax.plot(eps, strong_scratch.losses, "o--", color=_C["purple"], mfc="none",
                label="adv. training loss, strong evaluation")
    if strong_fast is not None:
        ax.plot(fe, strong_fast.losses, "^", color=_C["purple"], mfc="none", ms=8,
                label="fine-tuned, strong evaluation")
    level = scratch.clean_test_loss
    ax.axhline(level, color="black", lw=1, label=f"clean test loss {level:.3f}")
    marks = [(scratch.eps_star, _C["blue"], "from scratch"),
             (fast.eps_star, _C["orange"], f"fine-tune ({fast.method})")]
    if strong_scratch is not None:
        marks.append((strong_scratch.eps_star, _C["purple"], "from scratch, strong eval."))
    for value, color, name in marks:
        if np.isfinite(value):
            ax.axvline(value, color=color, lw=0.8, ls="-.")
            ax.plot([value], [level], "*", color=color, ms=14, mec="black",
                    label=f"eps* {name} = {value:.4g}")
    ax.set_xlabel("attack radius eps (input units)")
    ax.set_ylabel("cross-entropy loss (nats)")
    top = np.nanmax([*scratch.table["adv_train_loss"].values,
                     *scratch.table["adv_test_loss"].values, level])
    ax.set_ylim(0, top * 1.1)
    ax.set_title("critical attack strength eps*")
    style.legend(ax)
    if fgm is not None:
        ax = axes[1]
        ax.plot(eps[1:], scratch.table["adv_test_acc"].values[1:], "o-", color=_C["blue"],
                label="PGD-trained (selected epoch)")
        ge = fgm.table["eps"].values
        ax.plot(ge, fgm.table["pgd_test_acc_final"].values, "v-", color=_C["vermillion"],
                label="FGM-trained, last epoch")
        ax.plot(ge, fgm.table["pgd_test_acc_best"].values, "v:", color=_C["orange"],
                label="FGM-trained, best epoch")
        ax.axhline(fgm.threshold, color="gray", lw=0.8, ls="--", label="collapse threshold")
        if np.isfinite(fgm.eps_unstable):
            ax.axvline(fgm.eps_unstable, color=_C["vermillion"], lw=0.8, ls="-.",
                       label=f"unstable eps = {fgm.eps_unstable:.3g}")
        if np.isfinite(scratch.eps_star):
            ax.axvline(scratch.eps_star, color=_C["blue"], lw=0.8, ls="-.", label="eps*")
        ax.set_xlabel("attack radius eps (input units)")
        ax.set_ylabel("PGD test accuracy (fraction)")
        ax.set_ylim(0, 1)
        ax.set_title("FGM training: catastrophic overfitting")
        style.legend(ax)
    return style.finish(fig)


#: Line styles and markers cycled with the colours, so that series lying on top of each
#: other stay distinguishable.
_SERIES = (("-", "o"), ("--", "s"), (":", "^"), ("-.", "v"), ((0, (5, 1, 1, 1)), "D"),
           ((0, (1, 1)), "x"))


def _series(i: int) -> dict:
    ls, marker = _SERIES[i % len(_SERIES)]
    return {"color": style.PALETTE[i % len(style.PALETTE)], "ls": ls, "marker": marker,
            "ms": 4, "mfc": "none"}


#: Relative differences at or below this are round-off (float64), not a difference.
_ROUND_OFF = 1e-12


def plot_linear_fig2(trajectories, pvalues) -> Figure:
    """Analogue of the paper's figure 2 for linear regression.

    Parameters
    ----------
    trajectories : list of xarray.Dataset
        `trajectory_study` results (``d > n`` and ``d < n``).
    pvalues : list of xarray.Dataset
        `pvalue_study` results.

    Returns
    -------
    matplotlib.figure.Figure
        Left: relative difference at the last step against ``log(eps/eps*)``; middle: its
        evolution over the steps for the first study (steps where it is zero up to
        round-off, e.g. the first step from ``theta = 0``, are left out of the log axis);
        right: p-value of the estimator.
    """
    fig, axes = style.new_figure(1, 3, width=16, height=4.4)
    a0, a1, a2 = axes[0]
    for i, ds in enumerate(trajectories):
        regime = "d > n" if ds.attrs["d"] > ds.attrs["n"] else "d < n"
        a0.plot(ds["log_ratio"], ds["rel_diff"].isel(step=-1),
                label=f"d={ds.attrs['d']}, n={ds.attrs['n']} ({regime})", **_series(i))
    a0.set_yscale("log")
    a0.axvline(0, color=_C["grey"], lw=0.8)
    a0.set_xlabel("log(eps / eps*),  eps* = sqrt(d/n)")
    a0.set_ylabel("|theta_T(eps) - theta_T(0)| / |theta_T(0)|")
    a0.set_title("relative difference after T steps")
    style.legend(a0)
    ds = trajectories[0]
    picks = range(0, ds.sizes["log_ratio"], max(1, ds.sizes["log_ratio"] // 5))
    for k, i in enumerate(picks):
        rel = np.asarray(ds["rel_diff"].isel(log_ratio=i).values, dtype=float)
        # the first step from theta = 0 is identical for every eps (the dual-norm
        # subgradient vanishes at 0): its difference is zero up to round-off, which has no
        # place on a log axis (it drew a vertical line down to 1e-16)
        rel = np.where(rel > _ROUND_OFF, rel, np.nan)
        a1.plot(ds["step"], rel, markevery=max(1, ds.sizes["step"] // 8),
                label=f"log(eps/eps*) = {float(ds['log_ratio'][i]):.2f}", **_series(k))
    a1.set_yscale("log")
    a1.set_xlabel("gradient-descent step t")
    a1.set_ylabel("|theta_t(eps) - theta_t(0)| / |theta_t(0)|")
    a1.set_title(f"trajectories, d={ds.attrs['d']}, n={ds.attrs['n']}")
    style.legend(a1)
    _pvalue_panel(a2, pvalues, "p_theta", "p-value: theta_T(eps) ~ law of theta_T(0)")
    return style.finish(fig)


def plot_linear_fig3(pvalues) -> Figure:
    """Analogue of the paper's figure 3: p-value of the adversarial training loss."""
    fig, axes = style.new_figure(1, 1, width=6.4, height=4.2)
    _pvalue_panel(axes[0, 0], pvalues, "p_loss",
                  "p-value: R_n(theta_T(eps), eps) ~ law of R_n(theta_T(0), 0)")
    return style.finish(fig)


def _pvalue_panel(ax, pvalues, name, title):
    for i, ds in enumerate(pvalues):
        ax.plot(ds["log_ratio"], ds[name], label=f"d={ds.attrs['d']}, n={ds.attrs['n']}",
                **_series(i))
    ax.axvline(0, color=_C["grey"], lw=0.8)
    ax.set_xlabel("log(eps / eps*),  eps* = sqrt(d/n)")
    ax.set_ylabel(f"mean p-value over {pvalues[0].attrs['adv_reps']} adversarial runs")
    ax.set_ylim(-0.02, 1)
    ax.set_title(title)
    style.legend(ax)


def plot_scaling(study) -> Figure:
    """Theorem-1 crossing and surrogate eps* against ``d/n`` (log-log), with slope fits.

    Parameters
    ----------
    study : xarray.Dataset
        `critical_study` result.

    Returns
    -------
    matplotlib.figure.Figure
        The fitted slopes are printed with the number of points they rest on and the
        caveat that, over this range of ``d/n``, they are noisy (see the docs).
    """
    from advdyn.critical.linear import loglog_slope

    ratio = study["d"].values / study["n"].values
    fig, axes = style.new_figure(1, 1, width=7.4, height=4.4)
    ax = axes[0, 0]
    for i, (name, label) in enumerate((("eps_cross", "std. difference crosses 1"),
                                       ("eps_surrogate", "surrogate eps* (loss criterion)"))):
        v = study[name].values
        line = _series(i) | {"ls": "none"}
        ax.plot(ratio, v, label=f"{label}: fitted slope {loglog_slope(ratio, v):.2f}", **line)
    xs = np.geomspace(ratio.min(), ratio.max(), 20)
    ax.plot(xs, np.sqrt(np.pi / 2 * xs), color=_C["black"], ls="--", lw=0.8,
            label="theory sqrt(pi/2 * d/n): slope 0.5")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("d / n")
    ax.set_ylabel("eps (l2 radius)")
    ax.set_title("linear regression, l2 attack")
    style.legend(ax)
    style.caption(fig, f"slopes fitted to {len(ratio)} (d, n) pairs over "
                       f"{np.log10(ratio.max() / ratio.min()):.1f} decades of d/n: at this "
                       "size a slope far from 0.5 is sampling noise (docs: Critical eps*)")
    return style.finish(fig)


def plot_exact_critical(ds, *, radius: float | None = None, units: str = "l2",
                        radius_label: str = "problem's radius") -> Figure:
    """eps*(n/d) from the exact ODE (top) and the risks it compares (bottom).

    Parameters
    ----------
    ds : xarray.Dataset
        [`instance_critical_radius`][advdyn.critical.exact.instance_critical_radius]'s
        result (``eps_star``, ``eps_star_margin`` on ``t``; ``adv_risk`` on ``(eps, t)``;
        ``clean_risk`` on ``t``).
    radius : float, optional
        The problem's radius: a horizontal line on the top panel.
    units : str
        What the radii are measured in, for the axis labels.
    radius_label : str
        The legend's name of ``radius``.

    Returns
    -------
    matplotlib.figure.Figure
        Top: both definitions of eps* against ``n/d`` (log axis, ``t > 0``); records
        where eps* lies beyond the largest radius solved sit on a dotted line at that
        radius (said in the legend), and a definition undefined everywhere (e.g. the
        gap-matched one when the floor is not finite) is said undefined there. Bottom:
        the adversarial risk of the iterate trained at each positive radius (the legend
        names a radius whose ODE failed and from when), and the clean risk of the clean
        iterate (which is the adversarial risk at ``eps = 0``), against ``n/d``.
    """
    t = ds["t"].values
    eps = ds["eps"].values
    keep = t > 0
    fig, axes = style.new_figure(2, 1, width=10.0, height=8.4)
    ax, rx = axes[0, 0], axes[1, 0]
    top = float(eps[-1])
    ax.axhline(top, color=_C["grey"], lw=0.8, ls=":",
               label=f"largest radius solved ({top:.3g}): eps* beyond it is drawn here")
    if radius is not None and np.isfinite(radius):
        ax.axhline(radius, color=_C["black"], lw=1.0, ls=(0, (4, 2)),
                   label=f"{radius_label} {radius:.3g}")
    m = float(ds.attrs.get("margin", 1.0))
    for i, (name, label) in enumerate((
            ("eps_star", "eps*: adv. risk of adv. iterate <= clean risk of clean iterate"),
            ("eps_star_margin", f"gap-matched eps* (margin m = {m:g} x clean excess risk)"))):
        v = np.minimum(ds[name].values[keep], top)
        if not np.isfinite(ds.attrs.get("floor", 0.0)) and name == "eps_star_margin":
            label += " (undefined: the clean optimum's risk is not finite)"
        elif np.all(np.isnan(v)):
            label += " (undefined at every n/d)"
        ax.plot(t[keep], v, label=label, **_series(i))
    ax.set_xscale("log")
    ax.set_xlabel("samples per dimension n/d = t" + style.LOG_SUFFIX)
    ax.set_ylabel(f"critical radius eps* ({units})")
    ax.set_ylim(bottom=0)
    ax.set_title("eps* from the exact ODE")
    style.legend(ax)
    # eps = 0's adversarial risk is the clean risk of the clean iterate (the dashed line)
    positive = np.flatnonzero(eps > 0)
    pick = np.linspace(0, positive.size - 1, min(positive.size, 6)).round().astype(int)
    shown = sorted(set(positive[pick].tolist()))
    for k, i in enumerate(shown):
        risk = ds["adv_risk"].values[i]
        lost = t[~np.isfinite(risk)]
        how = ("diverged" if "result" in ds and ds["result"].values[i] == RESULTS.diverged
               else "failed")
        failed = f" (ODE {how}: none from n/d = {lost[0]:.3g})" if lost.size else ""
        rx.plot(t[keep], risk[keep], color=style.PALETTE[k], lw=1.2,
                label=f"adv. risk, trained at eps = {eps[i]:.3g}{failed}")
    rx.plot(t[keep], ds["clean_risk"].values[keep], color=_C["black"], lw=1.6, ls="--",
            label="clean risk of the clean iterate (= adv. risk at eps = 0)")
    rx.set_xscale("log")
    rx.set_yscale("log")
    rx.set_xlabel("samples per dimension n/d = t" + style.LOG_SUFFIX)
    rx.set_ylabel("risk (loss per sample)" + style.LOG_SUFFIX)
    rx.set_title(f"risks compared ({len(shown)} of {positive.size} positive radii shown)")
    style.legend(rx)
    return style.finish(fig)
