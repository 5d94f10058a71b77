"""Figures of the critical-eps study (matplotlib ``Figure`` objects, no pyplot state).

* :func:`plot_critical`: adversarial training loss against eps (from scratch and after
  fine-tuning), the clean test loss as a horizontal line, both eps* crossings marked; FGM
  panel when available.
* :func:`plot_linear_fig2` / :func:`plot_linear_fig3`: analogues of the paper's figures 2
  and 3 for linear regression (:mod:`advdyn.critical.linear`).
* :func:`plot_scaling`: Theorem-1 crossing and surrogate eps* against ``d/n``.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure


def plot_critical(scratch, fast, fgm=None, strong_scratch=None, strong_fast=None) -> Figure:
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

    Returns
    -------
    matplotlib.figure.Figure
    """
    ncols = 2 if fgm is not None else 1
    fig = Figure(figsize=(6.0 * ncols, 4.2), layout="constrained")
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    ax = axes[0]
    eps = scratch.table["eps"].values
    ax.plot(eps, scratch.table["adv_train_loss"].values, "o-", color="tab:blue",
            label="adv. training loss, trained from scratch")
    ax.plot(eps, scratch.table["adv_test_loss"].values, "s:", color="tab:blue", alpha=0.5,
            label="adv. test loss, from scratch")
    fe = fast.table["eps"].values
    fl = fast.table["adv_train_loss"].values
    stage = fast.table["stage"].values if "stage" in fast.table else np.zeros(len(fe))
    ax.plot(fe[stage == 0], fl[stage == 0], "^", color="tab:orange", ms=8,
            label="adv. training loss, fine-tuned")
    if np.any(stage == 1):
        ax.plot(fe[stage == 1], fl[stage == 1], "v", color="tab:red", ms=8,
                label="fine-tuned, refinement near eps*")
    fit = stage == 1 if np.sum(stage == 1) > 1 else np.ones(len(fe), bool)
    if np.isfinite(fast.eps_star_linear):
        b, a = np.polyfit(fe[fit], fl[fit], 1)
        xs = np.linspace(0, max(fast.eps_star_linear, fe[-1]) * 1.1, 50)
        ax.plot(xs, a + b * xs, "--", color="tab:orange", label="linear extrapolation")
    if strong_scratch is not None:
        ax.plot(eps, strong_scratch.losses, "o--", color="tab:purple", mfc="none",
                label="adv. training loss, strong evaluation")
    if strong_fast is not None:
        ax.plot(fe, strong_fast.losses, "^", color="tab:purple", mfc="none", ms=8,
                label="fine-tuned, strong evaluation")
    level = scratch.clean_test_loss
    ax.axhline(level, color="black", lw=1, label=f"clean test loss {level:.3f}")
    marks = [(scratch.eps_star, "tab:blue", "from scratch"),
             (fast.eps_star, "tab:orange", f"fine-tune ({fast.method})")]
    if strong_scratch is not None:
        marks.append((strong_scratch.eps_star, "tab:purple", "from scratch, strong eval."))
    for value, color, name in marks:
        if np.isfinite(value):
            ax.axvline(value, color=color, lw=0.8, ls="-.")
            ax.plot([value], [level], "*", color=color, ms=14, mec="black",
                    label=f"eps* {name} = {value:.4g}")
    ax.set_xlabel("eps")
    ax.set_ylabel("cross-entropy")
    ax.set_ylim(0, max(scratch.table["adv_train_loss"].values.max(), level) * 1.3)
    ax.set_title("critical attack strength eps*")
    ax.legend(fontsize=7, loc="upper left")
    if fgm is not None:
        ax = axes[1]
        ax.plot(eps[1:], scratch.table["adv_test_acc"].values[1:], "o-", color="tab:blue",
                label="PGD-trained (selected epoch)")
        ge = fgm.table["eps"].values
        ax.plot(ge, fgm.table["pgd_test_acc_final"].values, "v-", color="tab:red",
                label="FGM-trained, last epoch")
        ax.plot(ge, fgm.table["pgd_test_acc_best"].values, "v:", color="tab:red", alpha=0.5,
                label="FGM-trained, best epoch")
        ax.axhline(fgm.threshold, color="gray", lw=0.8, ls="--", label="collapse threshold")
        if np.isfinite(fgm.eps_unstable):
            ax.axvline(fgm.eps_unstable, color="tab:red", lw=0.8, ls="-.",
                       label=f"unstable eps = {fgm.eps_unstable:.3g}")
        if np.isfinite(scratch.eps_star):
            ax.axvline(scratch.eps_star, color="tab:blue", lw=0.8, ls="-.", label="eps*")
        ax.set_xlabel("eps")
        ax.set_ylabel("PGD test accuracy")
        ax.set_ylim(0, 1)
        ax.set_title("FGM training: catastrophic overfitting")
        ax.legend(fontsize=7)
    return fig


def plot_linear_fig2(trajectories, pvalues) -> Figure:
    """Analogue of the paper's figure 2 for linear regression.

    Parameters
    ----------
    trajectories : list of xarray.Dataset
        :func:`~advdyn.critical.linear.trajectory_study` results (``d > n`` and ``d < n``).
    pvalues : list of xarray.Dataset
        :func:`~advdyn.critical.linear.pvalue_study` results.

    Returns
    -------
    matplotlib.figure.Figure
        Left: relative difference at the last step against ``log(eps/eps*)``; middle: its
        evolution over the steps for the first study; right: p-value of the estimator.
    """
    fig = Figure(figsize=(15, 4.2), layout="constrained")
    a0, a1, a2 = fig.subplots(1, 3)
    for ds in trajectories:
        regime = "d > n" if ds.attrs["d"] > ds.attrs["n"] else "d < n"
        a0.plot(ds["log_ratio"], ds["rel_diff"].isel(step=-1), "o-",
                label=f"d={ds.attrs['d']}, n={ds.attrs['n']} ({regime})")
    a0.set_yscale("log")
    a0.axvline(0, color="black", lw=0.8)
    a0.set_xlabel("log(eps / eps*),  eps* = sqrt(d/n)")
    a0.set_ylabel("|theta_T(eps) - theta_T(0)| / |theta_T(0)|")
    a0.set_title("relative difference after T steps")
    a0.legend(fontsize=8)
    ds = trajectories[0]
    for i in range(0, ds.sizes["log_ratio"], max(1, ds.sizes["log_ratio"] // 5)):
        a1.plot(ds["step"], ds["rel_diff"].isel(log_ratio=i),
                label=f"log(eps/eps*) = {float(ds['log_ratio'][i]):.2f}")
    a1.set_yscale("log")
    # the first step from theta = 0 is identical for every eps (the dual-norm subgradient
    # vanishes at 0): start the axis at the differences of the later steps
    later = ds["rel_diff"].isel(step=slice(2, None)).values
    a1.set_ylim(bottom=0.3 * later[later > 0].min())
    a1.set_xlabel("gradient-descent step t")
    a1.set_ylabel("relative difference")
    a1.set_title(f"trajectories, d={ds.attrs['d']}, n={ds.attrs['n']}")
    a1.legend(fontsize=7)
    _pvalue_panel(a2, pvalues, "p_theta", "p-value: theta_T(eps) ~ law of theta_T(0)")
    return fig


def plot_linear_fig3(pvalues) -> Figure:
    """Analogue of the paper's figure 3: p-value of the adversarial training loss."""
    fig = Figure(figsize=(5.5, 4.2), layout="constrained")
    _pvalue_panel(fig.subplots(), pvalues, "p_loss",
                  "p-value: R_n(theta_T(eps), eps) ~ law of R_n(theta_T(0), 0)")
    return fig


def _pvalue_panel(ax, pvalues, name, title):
    for ds in pvalues:
        ax.plot(ds["log_ratio"], ds[name], "o-", label=f"d={ds.attrs['d']}, n={ds.attrs['n']}")
    ax.axvline(0, color="black", lw=0.8)
    ax.set_xlabel("log(eps / eps*),  eps* = sqrt(d/n)")
    ax.set_ylabel(f"mean p-value over {pvalues[0].attrs['adv_reps']} adversarial runs")
    ax.set_ylim(-0.02, 1)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)


def plot_scaling(study) -> Figure:
    """Theorem-1 crossing and surrogate eps* against ``d/n`` (log-log), with slope fits.

    Parameters
    ----------
    study : xarray.Dataset
        :func:`~advdyn.critical.linear.critical_study` result.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from advdyn.critical.linear import loglog_slope

    ratio = study["d"].values / study["n"].values
    fig = Figure(figsize=(5.5, 4.2), layout="constrained")
    ax = fig.subplots()
    for name, label, marker in (("eps_cross", "std. difference crosses 1", "o"),
                                ("eps_surrogate", "surrogate eps* (loss criterion)", "s")):
        v = study[name].values
        ax.loglog(ratio, v, marker, label=f"{label}: slope {loglog_slope(ratio, v):.2f}")
    xs = np.geomspace(ratio.min(), ratio.max(), 20)
    ax.loglog(xs, np.sqrt(np.pi / 2 * xs), "k--", lw=0.8, label="sqrt(pi/2 * d/n)")
    ax.set_xlabel("d / n")
    ax.set_ylabel("eps")
    ax.set_title("linear regression, l2 attack")
    ax.legend(fontsize=8)
    return fig
