"""Phase diagrams of sweeps: a heatmap of a final value over two swept fields."""

from __future__ import annotations

import numpy as np
import xarray as xr
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from advdyn.plot import style


def final_values(ds: xr.Dataset, var: str, time: int | float | None = -1) -> xr.DataArray:
    """A variable of a merged sweep at one time, averaged over replicates.

    Parameters
    ----------
    ds : xarray.Dataset
        Merged sweep (`advdyn.workflows.sweep.merge.merge_points`).
    var : str
        Variable, e.g. ``"ode_adv_risk"``.
    time : int, float or None
        An int selects the time index (default ``-1``, the last record: the last finite
        value of each point is used, so points whose ``time`` axis is shorter still count);
        a float selects the nearest recorded time; ``None`` keeps the ``time`` dimension.

    Returns
    -------
    xarray.DataArray
        The values over the swept fields (and any other dimension left).
    """
    if var not in ds:
        names = ", ".join(map(str, ds.data_vars))
        raise KeyError(f"{var!r} is not in the dataset (variables: {names})")
    da = ds[var]
    if "replicate" in da.dims:
        da = da.mean("replicate")
    if "time" in da.dims and time is not None:
        if isinstance(time, float):
            da = da.sel(time=time, method="nearest")
        elif time == -1:
            # last finite value along time (NaN padding after a shorter grid)
            valid: xr.DataArray = np.isfinite(da)  # type: ignore[assignment]
            last = (valid * np.arange(da.sizes["time"])).max("time")
            da = da.isel(time=last.astype(int)).where(valid.any("time"))
        else:
            da = da.isel(time=time)
    return da


def plot_phase_diagram(
    ds: xr.Dataset,
    var: str,
    x: str,
    y: str,
    *,
    time: int | float | None = -1,
    log: bool = True,
    title: str | None = None,
    cmap: str = "viridis",
) -> Figure:
    """Heatmap of a final value over two swept fields (e.g. epsilon and learning rate).

    Failed or non-convergent points (NaN) are left blank, and a note under the figure says
    so (with their number). Grid values are placed at equal spacing and labelled
    with their values, so uneven and categorical grids display the same way.

    Parameters
    ----------
    ds : xarray.Dataset
        Merged sweep.
    var : str
        Variable to show, e.g. ``"ode_adv_risk"`` (or a limiting risk).
    x, y : str
        Swept fields (dimension names, e.g. ``"problem.epsilon"``, ``"lr.gamma"``).
    time : int, float or None
        Which time (see `final_values`); default the last record.
    log : bool
        Logarithmic colour scale (when every shown value is positive).
    title : str, optional
        Title (default: the variable name).
    cmap : str
        Matplotlib colour map.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ValueError
        If other dimensions of size > 1 remain (select them first with ``ds.sel``/``isel``).
    """
    da = final_values(ds, var, time)
    extra = [d for d in da.dims if d not in (x, y) and da.sizes[d] > 1]
    if extra:
        raise ValueError(f"dimensions {extra} remain: select one value with ds.sel/isel first")
    da = da.squeeze([d for d in da.dims if d not in (x, y)]).transpose(y, x)
    values = np.asarray(da.values, dtype=float)
    finite = values[np.isfinite(values)]
    norm = LogNorm() if log and finite.size and finite.min() > 0 else None
    fig, axes = style.new_figure(1, 1, width=2.6 + 0.7 * max(4, da.sizes[x]),
                                 height=2.0 + 0.5 * max(4, da.sizes[y]))
    ax = axes[0, 0]
    mesh = ax.pcolormesh(np.ma.masked_invalid(values), cmap=cmap, norm=norm)
    fig.colorbar(mesh, ax=ax, label=var + (" (log scale)" if norm is not None else ""))
    ax.set_xticks(np.arange(da.sizes[x]) + 0.5, [f"{v:.3g}" if isinstance(v, float) else str(v)
                                                 for v in da[x].values.tolist()])
    ax.set_yticks(np.arange(da.sizes[y]) + 0.5, [f"{v:.3g}" if isinstance(v, float) else str(v)
                                                 for v in da[y].values.tolist()])
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.set_title(title or var)
    blank = int(np.sum(~np.isfinite(values)))
    if blank:
        ax.set_facecolor("white")
        style.caption(fig, f"blank cells ({blank} of {values.size}): no value, the point "
                           "failed or did not converge (no finite limit)")
    return style.finish(fig, grid=False)
