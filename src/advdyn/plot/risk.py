"""Figures (matplotlib): risk curves of the ODE and the simulators.

Figures are built as :class:`matplotlib.figure.Figure` objects without pyplot, so importing
advdyn never changes the user's matplotlib backend and works on machines without a display.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib
import xarray as xr
from matplotlib.figure import Figure

from advdyn.io import atomic_path

_STYLE = {
    "ode": {"color": "black", "lw": 1.8, "ls": "-", "label": "ODE (d -> inf)"},
    "sgd": {"color": "tab:blue", "lw": 1.2, "ls": "--", "label": "SGD mean"},
    "hsgd": {"color": "tab:orange", "lw": 1.2, "ls": "-.", "label": "homogenized SGD mean"},
}


def plot_quantities(
    results: Mapping[str, xr.Dataset],
    names: tuple[str, ...] = ("adv_risk", "clean_risk"),
    logy: bool = True,
    title: str | None = None,
):
    """Plot quantities of several methods side by side.

    Deterministic results are drawn as lines; results with a ``replicate`` dimension as
    their mean with a band from the smallest to the largest replicate.

    Parameters
    ----------
    results : mapping of method name to Dataset
        E.g. ``{"ode": ..., "sgd": ...}``; ``"ode"``, ``"sgd"`` and ``"hsgd"`` get fixed
        styles.
    names : tuple of str
        Quantities, one panel each (those missing from every dataset are skipped).
    logy : bool
        Logarithmic y axis.
    title : str, optional
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
        One row of panels against ``time t = k/d``.
    """
    names = tuple(n for n in names if any(n in ds for ds in results.values()))
    ncols = min(len(names), 2)
    nrows = -(-len(names) // ncols)
    fig = Figure(figsize=(5.5 * ncols, 3.8 * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax in axes.flat[len(names):]:
        ax.set_visible(False)
    for ax, name in zip(axes.flat, names, strict=False):
        for method, ds in results.items():
            if name not in ds:
                continue
            style = dict(_STYLE.get(method, {"label": method}))
            da = ds[name]
            if "replicate" in da.dims:
                mean = da.mean("replicate")
                ax.fill_between(
                    ds.time, da.min("replicate"), da.max("replicate"),
                    color=style.get("color"), alpha=0.25, lw=0,
                    label=f"{method} range over {da.sizes['replicate']} replicates",
                )
                ax.plot(ds.time, mean, **style)
            else:
                ax.plot(ds.time, da, **style)
        ax.set_xlabel("time t = k/d")
        ax.set_ylabel(name)
        if logy:
            ax.set_yscale("log")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_monotone_scan(scan, curves_init: str = "near_optimum"):
    """Figure of a monotone-descent scan (:func:`advdyn.limits.monotone_scan`).

    Left: for each rate and initialisation, whether both the adversarial risk and the
    distance to the optimum decreased monotonically. Right: the risk curves from
    ``curves_init`` for every rate, with the minimum risk as a dashed line.

    Parameters
    ----------
    scan : xarray.Dataset
        Output of :func:`~advdyn.limits.monotone_scan`.
    curves_init : str
        Initialisation whose curves are drawn (the first one if absent).

    Returns
    -------
    matplotlib.figure.Figure
    """
    import numpy as np

    fig = Figure(figsize=(11, 4.2))
    ax_map, ax_curve = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.1, 1]})
    both = (scan.monotone_risk & scan.monotone_dist).values.astype(float)
    both[scan.diverged.values] = np.nan
    cmap = matplotlib.colormaps["RdYlGn"].with_extremes(bad="0.6")
    ax_map.imshow(both, cmap=cmap, vmin=0, vmax=1, aspect="auto")
    ax_map.set_yticks(range(scan.sizes["lr"]), [f"{g:g}" for g in scan.lr.values])
    ax_map.set_xticks(range(scan.sizes["init"]), list(scan.init.values), rotation=45,
                      ha="right", fontsize=8)
    ax_map.set_ylabel("constant learning rate")
    ax_map.set_title("monotone risk and distance (green), not (red), diverged (grey)",
                     fontsize=9)
    init = curves_init if curves_init in scan.init.values else str(scan.init.values[0])
    for g in scan.lr.values:
        curve = scan.adv_risk.sel(lr=g, init=init)
        ax_curve.plot(scan.time, curve, label=f"gamma = {g:g}")
    ax_curve.axhline(scan.attrs["adv_risk_opt"], color="k", ls="--", lw=1, label="min R_eps")
    ax_curve.set_xlabel("time t")
    ax_curve.set_ylabel("adversarial risk (ODE)")
    ax_curve.set_title(f"from init '{init}'", fontsize=9)
    ax_curve.legend(fontsize=8)
    ax_curve.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def save_figure(fig, path: str | Path, dpi: int = 120) -> Path:
    """Save a figure atomically.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        The figure.
    path : str or Path
        Destination; its suffix picks the format (e.g. ``.png``). Missing parent folders
        are created.
    dpi : int
        Resolution.

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    with atomic_path(path, suffix=path.suffix) as tmp:
        fig.savefig(tmp, dpi=dpi)
    return path
