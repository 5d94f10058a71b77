"""Figures (matplotlib): risk curves of the ODE and the simulators.

Figures are built as `matplotlib.figure.Figure` objects without pyplot, so importing
advdyn never changes the user's matplotlib backend and works on machines without a display.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import xarray as xr
from matplotlib.colors import ListedColormap
from matplotlib.patches import Patch

from advdyn.io import atomic_path, make_dataset
from advdyn.plot import style

_STYLE = {
    "ode": {"color": style.COLORS["black"], "lw": 1.8, "ls": "-", "label": "ODE (d -> inf)",
            "zorder": 3},
    "sgd": {"color": style.COLORS["blue"], "lw": 1.3, "ls": "--", "label": "SGD"},
    "hsgd": {"color": style.COLORS["vermillion"], "lw": 1.3, "ls": "-.",
             "label": "homogenized SGD"},
    "data_sgd": {"color": style.COLORS["green"], "lw": 1.3, "ls": ":",
                 "label": "SGD on the data rows"},
}
#: Axis labels of the recorded quantities (the variable name in brackets).
LABELS = {
    "adv_risk": "adversarial risk R_eps (adv_risk)",
    "clean_risk": "clean risk R_0 (clean_risk)",
    "clean_error": "clean test error (clean_error)",
    "robust_error": "robust test error (robust_error)",
    "norm": "|theta|^2 (norm)",
    "overlap": "<theta, theta*> (overlap)",
    "dist_to_opt": "|theta - theta_eps*|^2 (dist_to_opt)",
    "lr": "learning rate gamma_t (lr)",
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
        E.g. ``{"ode": ..., "sgd": ...}``; ``"ode"``, ``"sgd"``, ``"hsgd"`` and ``"data_sgd"``
        get fixed styles; a dataset's ``plot_label`` attribute replaces its method's label.
    names : tuple of str
        Quantities, one panel each (those missing from every dataset are skipped).
    logy : bool
        Logarithmic y axis.
    title : str, optional
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
        Panels (two per row) against ``time t = k/d``, one legend under them.
    """
    names = tuple(n for n in names if any(n in ds for ds in results.values()))
    ncols = min(len(names), 2)
    nrows = -(-len(names) // ncols)
    fig, axes = style.new_figure(nrows, ncols, height=style.PANEL_HEIGHT * nrows + 0.6)
    for ax in axes.flat[len(names):]:
        ax.set_visible(False)
    for ax, name in zip(axes.flat, names, strict=False):
        for method, ds in results.items():
            if name not in ds:
                continue
            line = dict(_STYLE.get(method, {"label": method}))
            label = ds.attrs.get("plot_label", line.pop("label"))
            line.pop("label", None)
            da = ds[name]
            if "replicate" in da.dims:
                n = da.sizes["replicate"]
                ax.fill_between(
                    ds.time, da.min("replicate"), da.max("replicate"),
                    color=line.get("color"), alpha=0.25, lw=0,
                    label=f"{label}: range over {n} replicates",
                )
                ax.plot(ds.time, da.mean("replicate"), label=f"{label}: mean of {n}", **line)
            else:
                ax.plot(ds.time, da, label=label, **line)
        ax.set_xlabel("time t = k/d")
        ax.set_ylabel(LABELS.get(name, name))
        if logy:
            ax.set_yscale("log")
    style.figure_legend(fig, ncol=3)
    if title:
        fig.suptitle(title, fontsize=style.FONT_TITLE)
    return style.finish(fig)


def _monotone_map(ax, scan, title: str | None = None) -> None:
    """Left panel: monotone (green), not (vermillion) or diverged (grey) per rate and start."""
    both = (scan.monotone_risk & scan.monotone_dist).values.astype(float)
    diverged = scan.diverged.values
    both[diverged] = np.nan
    cmap = ListedColormap([style.COLORS["vermillion"], style.COLORS["green"]]).with_extremes(
        bad="0.75")
    ax.imshow(both, cmap=cmap, vmin=0, vmax=1, aspect="auto")
    ax.set_yticks(range(scan.sizes["lr"]), [f"{g:g}" for g in scan.lr.values])
    ax.set_xticks(range(scan.sizes["init"]), list(scan.init.values), rotation=30,
                  ha="right")
    ax.set_ylabel("constant learning rate gamma")
    ax.set_xlabel("start theta_0 (initialisation)")
    every = [f"{g:g}" for g in scan.lr.values
             if bool((scan.monotone_risk & scan.monotone_dist).sel(lr=g).all())]
    verdict = (f"monotone from every start at gamma = {', '.join(every)}" if every
               else "no rate monotone from every start")
    verdict = textwrap.fill(verdict, 50)  # a long list of rates stays over its panel
    ax.set_title(f"{title}\n{verdict}" if title else verdict)
    style.legend(ax, handles=[
        Patch(color=style.COLORS["green"], label="risk and distance\nboth monotone"),
        Patch(color=style.COLORS["vermillion"], label="not monotone"),
        Patch(color="0.75", label="diverged"),
    ])


def _monotone_curves(ax, scan, init: str) -> None:
    """Right panel: excess risk ``R - R*`` from ``init`` for every rate, log scale."""
    opt = float(scan.attrs["adv_risk_opt"])
    for g in scan.lr.values:
        if bool(scan.diverged.sel(lr=g, init=init)):
            ax.plot([], [], ls=":", color="0.5", label=f"gamma = {g:g}: diverged")
            continue
        excess = scan.adv_risk.sel(lr=g, init=init).values - opt
        ax.plot(scan.time, np.maximum(excess, 1e-16), label=f"gamma = {g:g}")
    ax.set_yscale("log")
    ax.set_xlabel("time t = k/d")
    ax.set_ylabel("excess risk R_eps - min R_eps (ODE)")
    ax.set_title(f"from start '{init}'")
    style.legend(ax)


def plot_monotone_scan(scan, curves_init: str = "near_optimum"):
    """Figure of a monotone-descent scan
    ([`advdyn.workflows.limits.monotone_scan`][advdyn.workflows.monotone_scan]).

    Left: for each rate and initialisation, whether both the adversarial risk and the
    distance to the optimum decreased monotonically (green), not (vermillion), or the run
    diverged (grey); a legend names the colours. Right: the excess risk over the minimum
    from ``curves_init`` for every rate, on a log scale (a diverged rate is listed as such).

    Parameters
    ----------
    scan : xarray.Dataset
        Output of [`monotone_scan`][advdyn.workflows.monotone_scan].
    curves_init : str
        Initialisation whose curves are drawn (the first one if absent).

    Returns
    -------
    matplotlib.figure.Figure
    """
    return plot_monotone_comparison({"": scan}, curves_init)


def plot_monotone_comparison(scans: Mapping[str, xr.Dataset],
                             curves_init: str = "near_optimum"):
    """Monotone-descent scans of several problems, one row each (figure (b)).

    Parameters
    ----------
    scans : mapping of title to Dataset
        Outputs of [`monotone_scan`][advdyn.workflows.monotone_scan] (e.g. the ``eps = 0`` control
        and
        the adversarial problem).
    curves_init : str
        Initialisation whose curves are drawn (the first one if absent).

    Returns
    -------
    matplotlib.figure.Figure
        Per row: the map of `plot_monotone_scan` and the log-scale excess risk.
    """
    fig, axes = style.new_figure(len(scans), 2, width=12, height=4.2 * len(scans),
                                 gridspec_kw={"width_ratios": [1, 1.1]})
    for (ax_map, ax_curve), (title, scan) in zip(axes, scans.items(), strict=True):
        _monotone_map(ax_map, scan, title)
        init = curves_init if curves_init in scan.init.values else str(scan.init.values[0])
        _monotone_curves(ax_curve, scan, init)
    return style.finish(fig)


def save_figure(fig, path: str | Path, dpi: int = 120, atomic: bool = True) -> Path:
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
    atomic : bool
        Write a temporary file and rename it onto ``path`` (default). False writes ``path``
        itself, for a path that is already a temporary file which the caller puts in place
        ([`advdyn.io.files.put_in_place`][advdyn.io.files.put_in_place]).

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    if not atomic:
        fig.savefig(path, dpi=dpi)
        return path
    with atomic_path(path, suffix=path.suffix) as tmp:
        fig.savefig(tmp, dpi=dpi)
    return path


def save_quantities(
    results: Mapping[str, xr.Dataset | tuple[np.ndarray, Mapping[str, np.ndarray], bool]],
    path: str | Path,
    names: tuple[str, ...] = ("adv_risk", "clean_risk"),
    logy: bool = True,
    title: str | None = None,
    atomic: bool = True,
) -> Path:
    """Draw `plot_quantities` and save it (`save_figure`).

    Parameters
    ----------
    results : mapping of method name to Dataset or (times, quantities, replicated)
        As for `plot_quantities`; a result may also be given as plain arrays, a
        [`Solution`][advdyn.solution.Solution]'s ``ts``, ``ys`` and ``replicated``, labelled
        here with [`advdyn.io.make_dataset`][advdyn.io.make_dataset] as
        [`advdyn.io.to_dataset`][advdyn.io.to_dataset] labels
        them.
    path : str or Path
        Destination; its suffix picks the format.
    names, logy, title
        As for `plot_quantities`.
    atomic : bool
        As for `save_figure`.

    Returns
    -------
    Path
        ``path``.
    """
    datasets = {m: r if isinstance(r, xr.Dataset) else make_dataset(r[0], r[1], m, replicates=r[2])
                for m, r in results.items()}
    fig = plot_quantities(datasets, names, logy=logy, title=title)
    return save_figure(fig, path, atomic=atomic)
