"""Figures of a phase diagram
([`advdyn.workflows.phase.phase_diagram`][advdyn.workflows.phase.phase_diagram]): heat maps of
the final risks, the monotone descent of the distance to the optimum and the time to come
near the optimum, with the failed (diverged) points marked and the boundaries drawn."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr
from matplotlib.colors import ListedColormap, LogNorm
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from advdyn.plot import style
from advdyn.plot.risk import save_figure

#: readable axis labels of the usual swept fields
LABELS = {
    "problem.epsilon": "attack radius $\\varepsilon$",
    "problem.ridge": "ridge $\\delta$",
    "problem.task.noise": "label noise $\\sigma$",
    "lr.gamma": "learning rate $\\gamma$",
    "lr.gamma0": "initial learning rate $\\gamma_0$",
    "lr.tau": "decay time $\\tau$",
    "lr.beta": "decay exponent $\\beta$",
    "lr.gamma_max": "largest learning rate $\\gamma_{\\max}$",
}
_FAILED = "0.75"
#: how a cell whose quantity was not reached by ``t_max`` (``time_within`` NaN at a point
#: that did not fail) is drawn: its own hatch over white, apart from the failed grey
_NOT_REACHED_HATCH, _NOT_REACHED_EDGE = "///", "0.45"


def _edges(values: np.ndarray) -> np.ndarray:
    """Cell edges around grid values (geometric midpoints on a log-spaced positive grid)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 1:
        return np.array([v[0] - 0.5, v[0] + 0.5]) if v[0] <= 0 else v[0] * np.array([0.8, 1.25])
    log = bool(np.all(v > 0)) and _is_log(v)
    w = np.log(v) if log else v
    mid = (w[1:] + w[:-1]) / 2
    e = np.concatenate([[2 * w[0] - mid[0]], mid, [2 * w[-1] - mid[-1]]])
    return np.exp(e) if log else e


def _is_log(v: np.ndarray) -> bool:
    if v.size < 3 or np.any(v <= 0):
        return False
    r = np.diff(np.log(v))
    return bool(np.allclose(r, r[0], rtol=1e-6)) and not np.allclose(np.diff(v), np.diff(v)[0])


def plot_phase(ds: xr.Dataset, title: str | None = None) -> Figure:
    """Four panels over the grid of ``ds``: final adversarial risk, final clean risk,
    monotone descent of ``dist_to_opt`` and the time to come within the factor of the
    optimum, and one more per stochastic method of ``ds.attrs["methods"]`` (``<m>_gap``,
    the relative gap of its replicate-mean final adversarial risk to the ODE's); failed
    points (nonzero ``result``, or ``<m>_result`` on that method's panel) are grey cells
    with a cross, points whose risk did not come within the factor by ``t_max`` are hatched
    white cells on the ``time_within`` panel (their own legend entry), and the boundary of
    the region where no divergence was detected by ``t_max`` is a black line on every panel
    (not a proof of convergence: a slowly growing risk stays inside it). With
    ``ds.attrs["surrogate"]`` (a data problem) the SGD and HSGD panels are labelled as runs
    on the Gaussian surrogate, ``data_sgd``'s as SGD on the rows.

    Parameters
    ----------
    ds : xarray.Dataset
        A phase-diagram dataset (one or two grid dimensions).
    title : str, optional
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    fields = list(ds.attrs["fields"]) if "fields" in ds.attrs else [
        d for d in ds["result"].dims]
    if isinstance(fields, str):
        fields = [fields]
    methods = ds.attrs.get("methods", ["ode"])
    stochastic = [m for m in ([methods] if isinstance(methods, str) else list(methods))
                  if m != "ode"]
    rows = 2 + -(-len(stochastic) // 2)
    fig, axes = style.new_figure(rows, 2, width=11.5, height=4.25 * rows)
    failed = np.asarray(ds["result"]) != 0
    factor = float(ds.attrs.get("factor", np.nan))
    panels = [
        ("final_adv_risk", "final adversarial risk $R_\\varepsilon(t_{\\max})$", "log", failed),
        ("final_clean_risk", "final clean risk $R(t_{\\max})$", "log", failed),
        ("monotone_dist", "$|\\theta_t-\\theta^*_\\varepsilon|^2$ descends monotonically",
         "binary", failed),
        ("time_within", f"time until $R_\\varepsilon \\leq {factor:g}\\,R_\\varepsilon^*$",
         "linear", failed),
    ]
    def name(m: str) -> str:  # a data problem's: SGD on its rows, or on its surrogate
        if m == "data_sgd":
            return "SGD on the data rows"
        on = " on the Gaussian surrogate" if ds.attrs.get("surrogate") else ""
        return m.upper() + on

    for m in stochastic:  # a point is failed when the ODE or the simulator failed there
        either = failed | (np.asarray(ds[f"{m}_result"]) != 0)
        head = f"{name(m)},\n" if " " in name(m) else f"{m.upper()} "  # two lines: fits
        panels.append((f"{m}_gap", f"{head}mean $R_\\varepsilon(t_{{\\max}})$: relative "
                       "gap to the ODE", "log", either))
    # the heat maps' cell kinds, in one legend under the panels: a legend beside a panel
    # would widen its column's margin and push every colour bar of the column away
    key: dict[str, Patch] = {}
    for ax, (var, label, scale, bad) in zip(axes.flat, panels, strict=False):
        values = np.asarray(ds[var], dtype=np.float64)
        # time_within is NaN where the risk did not come within the factor by t_max
        unreached = (np.isnan(values) & ~bad) if var == "time_within" else None
        if len(fields) == 1:
            _line(ax, ds, fields[0], values, bad, label, scale, unreached)
        else:
            for patch in _heat(fig, ax, ds, fields, values, bad, label, scale, unreached):
                key.setdefault(str(patch.get_label()), patch)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    if key:
        key = {**{k: p for k, p in key.items() if k != "diverged / failed"},
               **{k: p for k, p in key.items() if k == "diverged / failed"}}  # grey last
        style.figure_legend(fig, list(key.values()), list(key), ncol=len(key))
    t_max = float(ds["time"][-1])
    what = ", ".join(["the ODE", *(name(m) for m in stochastic)])
    # the methods on one line, the key on the next: a long list of methods fits the width
    fig.suptitle(title or f"phase diagram of {what}\n(t_max = {t_max:.4g}; grey x: diverged "
                 "or solver failed)")
    return style.finish(fig, grid=False)


def _heat(fig, ax, ds, fields, values, failed, label, scale, unreached=None) -> list[Patch]:
    """Draw one heat-map panel; return the legend entries of its kinds of cells."""
    handles: list[Patch] = []
    x, y = (np.asarray(ds[f]) for f in fields)
    # values are (x, y): rows of the image are y
    z = np.ma.masked_invalid(np.where(failed, np.nan, values)).T
    if scale == "binary":
        cmap = ListedColormap(["#d95f02", "#1b9e77"])
        mesh = ax.pcolormesh(_edges(x), _edges(y), z, cmap=cmap, vmin=-0.5, vmax=1.5)
        handles += [Patch(color="#1b9e77", label="monotone"),
                    Patch(color="#d95f02", label="not monotone"),
                    Patch(color=_FAILED, label="diverged / failed")]
        if np.any(z == 1) and np.any(z == 0):
            ax.contour(x, y, np.ma.filled(z, 0.5), levels=[0.5], colors="white",
                       linewidths=1.0, linestyles="--")
    else:
        finite = z.compressed()
        norm = None
        if scale == "log" and finite.size and np.all(finite > 0):
            norm = LogNorm(vmin=finite.min(), vmax=finite.max())
        mesh = ax.pcolormesh(_edges(x), _edges(y), z, cmap="viridis", norm=norm)
        fig.colorbar(mesh, ax=ax, label=label)
    ax.set_facecolor(_FAILED)
    if unreached is not None and np.any(unreached):
        ax.pcolor(_edges(x), _edges(y), np.ma.masked_where(~unreached.T, unreached.T),
                  cmap=ListedColormap(["white"]), linewidth=0, hatch=_NOT_REACHED_HATCH,
                  edgecolor=_NOT_REACHED_EDGE)
        handles.append(Patch(facecolor="white", hatch=_NOT_REACHED_HATCH,
                             edgecolor=_NOT_REACHED_EDGE, label="not reached by $t_{\\max}$"))
    if np.any(failed):
        handles.append(Patch(color=_FAILED, label="diverged / failed"))
    if np.any(failed):
        fx, fy = np.nonzero(failed)
        ax.plot(x[fx], y[fy], "x", color="0.3", markersize=3, linestyle="none")
        if not np.all(failed):
            ax.contour(x, y, failed.T.astype(float), levels=[0.5], colors="black",
                       linewidths=1.2)
    for axis, f, v in ((ax.xaxis, fields[0], x), (ax.yaxis, fields[1], y)):
        axis.set_label_text(LABELS.get(f, f))
        if _is_log(v):
            (ax.set_xscale if axis is ax.xaxis else ax.set_yscale)("log")
    ax.set_title(label, fontsize=10)
    return handles


def _line(ax, ds, field_name, values, failed, label, scale, unreached=None) -> None:
    x = np.asarray(ds[field_name])
    ok = ~failed
    ax.plot(x[ok], values[ok], "o-", markersize=3, label="no divergence by t_max")
    if unreached is not None and np.any(unreached):  # drawn at t_max, hollow
        ax.plot(x[unreached], np.full(int(unreached.sum()), float(ds["time"][-1])), "^",
                markerfacecolor="white", color="C1", linestyle="none",
                label="not reached by t_max")
    if np.any(failed):  # drawn at the least value shown (0 when none is finite)
        shown = values[ok & np.isfinite(values)]
        ax.plot(x[failed], np.zeros(int(failed.sum())) if scale == "binary" else
                np.full(int(failed.sum()), shown.min() if shown.size else 0.0),
                "x", color="0.3", label="diverged / failed")
    if np.any(failed) or (unreached is not None and np.any(unreached)):
        style.legend(ax)
    if scale == "log" and np.all(values[ok] > 0):
        ax.set_yscale("log")
    if scale == "binary":
        ax.set_yticks([0, 1], ["no", "yes"])
    if _is_log(x):
        ax.set_xscale("log")
    ax.set_xlabel(LABELS.get(field_name, field_name))
    ax.set_ylabel(label)


def save_phase_figure(ds: xr.Dataset, path: str | Path, title: str | None = None) -> Path:
    """Draw `plot_phase` and write it atomically to ``path``; return the path."""
    return save_figure(plot_phase(ds, title), Path(path))
