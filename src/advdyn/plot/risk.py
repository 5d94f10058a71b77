"""Figures (matplotlib): risk curves of the ODE and the simulators.

Figures are built as :class:`matplotlib.figure.Figure` objects without pyplot, so importing
advdyn never changes the user's matplotlib backend and works on machines without a display.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib
import numpy as np
import xarray as xr
from matplotlib.figure import Figure
from matplotlib.ticker import LogFormatter

from advdyn.io import atomic_path, make_dataset

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
            _log_y(ax)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


class _PlainLogFormatter(LogFormatter):
    """Matplotlib's ``LogFormatter`` choice of labelled ticks, labels as ``f"{x:g}"``."""

    def __call__(self, x, pos=None):
        return f"{x:g}" if super().__call__(x, pos) else ""


def _log_y(ax) -> None:
    """A logarithmic y axis with plain-text tick labels (``0.5``, ``2``, ``1e-05``).

    Matplotlib's default log labels are mathtext (``10^{-2}``); building its parser and
    laying out the labels took 0.25 s of the 0.56 s this module spent on the command line's
    figure (profiled). Which ticks carry a label is left to matplotlib's ``LogFormatter``
    (e.g. minor ticks when fewer than two decades show); only the text differs.
    """
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(_PlainLogFormatter(base=10))
    ax.yaxis.set_minor_formatter(_PlainLogFormatter(base=10, labelOnlyBase=False))


def _monotone_map(ax, scan, title: str | None = None) -> None:
    """Left panel: monotone (green), not (red) or diverged (grey, labelled) per rate/start."""
    both = (scan.monotone_risk & scan.monotone_dist).values.astype(float)
    diverged = scan.diverged.values
    both[diverged] = np.nan
    cmap = matplotlib.colormaps["RdYlGn"].with_extremes(bad="0.6")
    ax.imshow(both, cmap=cmap, vmin=0, vmax=1, aspect="auto")
    for i, j in zip(*np.nonzero(diverged), strict=True):
        ax.text(j, i, "div.", ha="center", va="center", fontsize=7, color="white")
    ax.set_yticks(range(scan.sizes["lr"]), [f"{g:g}" for g in scan.lr.values])
    ax.set_xticks(range(scan.sizes["init"]), list(scan.init.values), rotation=45,
                  ha="right", fontsize=8)
    ax.set_ylabel("constant learning rate")
    every = [f"{g:g}" for g in scan.lr.values
             if bool((scan.monotone_risk & scan.monotone_dist).sel(lr=g).all())]
    verdict = (f"monotone from every start at gamma = {', '.join(every)}" if every
               else "no rate monotone from every start")
    ax.set_title(f"{title}\n{verdict}" if title else verdict, fontsize=9)


def _monotone_curves(ax, scan, init: str) -> None:
    """Right panel: excess risk ``R - R*`` from ``init`` for every rate, log scale."""
    opt = float(scan.attrs["adv_risk_opt"])
    for g in scan.lr.values:
        if bool(scan.diverged.sel(lr=g, init=init)):
            ax.plot([], [], ls=":", color="0.5", label=f"gamma = {g:g}: diverged")
            continue
        excess = scan.adv_risk.sel(lr=g, init=init).values - opt
        ax.plot(scan.time, np.maximum(excess, 1e-16), label=f"gamma = {g:g}")
    _log_y(ax)
    ax.set_xlabel("time t")
    ax.set_ylabel("R_eps - min R_eps (ODE)")
    ax.set_title(f"from start '{init}'", fontsize=9)
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3, which="both")


def plot_monotone_scan(scan, curves_init: str = "near_optimum"):
    """Figure of a monotone-descent scan (:func:`advdyn.limits.monotone_scan`).

    Left: for each rate and initialisation, whether both the adversarial risk and the
    distance to the optimum decreased monotonically (diverged runs grey and labelled).
    Right: the excess risk over the minimum from ``curves_init`` for every rate, on a log
    scale (a diverged rate is listed as such).

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
    return plot_monotone_comparison({"": scan}, curves_init)


def plot_monotone_comparison(scans: Mapping[str, xr.Dataset],
                             curves_init: str = "near_optimum"):
    """Monotone-descent scans of several problems, one row each (figure (b)).

    Parameters
    ----------
    scans : mapping of title to Dataset
        Outputs of :func:`~advdyn.limits.monotone_scan` (e.g. the ``eps = 0`` control and
        the adversarial problem).
    curves_init : str
        Initialisation whose curves are drawn (the first one if absent).

    Returns
    -------
    matplotlib.figure.Figure
        Per row: the map of :func:`plot_monotone_scan` and the log-scale excess risk.
    """
    fig = Figure(figsize=(12, 4.4 * len(scans)))
    axes = fig.subplots(len(scans), 2, squeeze=False,
                        gridspec_kw={"width_ratios": [1.1, 1]})
    for (ax_map, ax_curve), (title, scan) in zip(axes, scans.items(), strict=True):
        _monotone_map(ax_map, scan, title)
        init = curves_init if curves_init in scan.init.values else str(scan.init.values[0])
        _monotone_curves(ax_curve, scan, init)
    fig.tight_layout()
    return fig


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
        (:func:`advdyn.io.files.put_in_place`).

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
    """Draw :func:`plot_quantities` and save it (:func:`save_figure`).

    Parameters
    ----------
    results : mapping of method name to Dataset or (times, quantities, replicated)
        As for :func:`plot_quantities`; a result may also be given as plain arrays, a
        :class:`~advdyn.solution.Solution`'s ``ts``, ``ys`` and ``replicated``, labelled
        here with :func:`advdyn.io.make_dataset` as :func:`advdyn.io.to_dataset` labels
        them. That is what a :class:`~advdyn.plot.process.FigureProcess` draws for
        ``advdyn run``: NumPy arrays, no JAX or equinox objects to unpickle.
    path : str or Path
        Destination; its suffix picks the format.
    names, logy, title
        As for :func:`plot_quantities`.
    atomic : bool
        As for :func:`save_figure`.

    Returns
    -------
    Path
        ``path``.
    """
    datasets = {m: r if isinstance(r, xr.Dataset) else make_dataset(r[0], r[1], m, replicates=r[2])
                for m, r in results.items()}
    fig = plot_quantities(datasets, names, logy=logy, title=title)
    return save_figure(fig, path, atomic=atomic)
