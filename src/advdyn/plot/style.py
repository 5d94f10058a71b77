"""One look for every figure: sizes, fonts, colours, log axes, legends outside the data.

Every figure of advdyn is drawn in three steps:

1. ``fig, axes = new_figure(nrows, ncols)``: a constrained-layout
   `matplotlib.figure.Figure` (no pyplot state) whose axes cycle through `PALETTE`
   (Okabe and Ito's colour-blind-safe colours);
2. plot, label every axis with its quantity and unit, and put legends outside the data with
   `legend` (beside an axes) or `figure_legend` (under the figure);
3. ``finish(fig)``: fonts, grids, readable log-axis tick labels (``0.2, 0.5, 1, 2`` or
   decades, never mathtext clutter) and the words ``(log scale)`` appended to the label of
   every logarithmic axis.

`layout_problems` checks a drawn figure (every axis labelled, no legend over the
plotted data); the tests run it on every figure.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.ticker import Formatter, LogFormatter

from advdyn.plot import power_of_ten

__all__ = ["COLORS", "PALETTE", "caption", "figure_legend", "finish", "layout_problems",
           "legend", "new_figure", "power_of_ten"]

#: Okabe & Ito's palette: distinguishable with the common colour-vision deficiencies.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#E69F00", "#CC79A7", "#56B4E9", "#000000",
           "#F0E442")
#: Named palette entries (``COLORS["blue"]`` ...); ``grey`` for reference lines.
COLORS = {"blue": PALETTE[0], "vermillion": PALETTE[1], "green": PALETTE[2],
          "orange": PALETTE[3], "purple": PALETTE[4], "sky": PALETTE[5], "black": PALETTE[6],
          "yellow": PALETTE[7], "grey": "0.55"}
#: Font sizes in points: tick labels and legends, axis labels, titles.
FONT_SMALL, FONT, FONT_TITLE = 8, 9, 10
#: Width of one panel in inches (figures are ``ncols`` panels wide, plus legends).
PANEL_WIDTH, PANEL_HEIGHT = 4.6, 3.4
LOG_SUFFIX = " (log scale)"


def new_figure(nrows: int = 1, ncols: int = 1, *, width: float | None = None,
               height: float | None = None, **subplots) -> tuple[Figure, np.ndarray]:
    """A constrained-layout figure and its axes (always a 2-d array) in the house style.

    Parameters
    ----------
    nrows, ncols : int
        Grid of panels.
    width, height : float, optional
        Size in inches (default `PANEL_WIDTH` x `PANEL_HEIGHT` per panel).
    **subplots
        Passed to `matplotlib.figure.Figure.subplots` (``sharex``, ``gridspec_kw``...).

    Returns
    -------
    (Figure, numpy.ndarray of Axes)
        Axes of shape ``(nrows, ncols)``.
    """
    fig = Figure(figsize=(width or PANEL_WIDTH * ncols, height or PANEL_HEIGHT * nrows),
                 layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **subplots)
    for ax in axes.flat:
        ax.set_prop_cycle(color=PALETTE)
    return fig, axes


def legend(ax: Axes, *args, ncol: int = 1, title: str | None = None, **kwargs):
    """A legend to the right of ``ax``, outside its data (constrained layout makes room)."""
    kwargs.setdefault("fontsize", FONT_SMALL)
    return ax.legend(*args, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0,
                     frameon=False, ncol=ncol, title=title, title_fontsize=FONT_SMALL,
                     **kwargs)


def figure_legend(fig: Figure, handles: Sequence | None = None,
                  labels: Sequence[str] | None = None, *, ncol: int = 3, **kwargs):
    """One legend under all panels (for entries the panels share).

    Without ``handles``, the entries of every axes are collected (duplicates once).
    """
    if handles is None:
        seen: dict[str, object] = {}
        for ax in fig.axes:
            for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
                seen.setdefault(lab, h)
        labels, handles = list(seen), list(seen.values())
    kwargs.setdefault("fontsize", FONT_SMALL)
    return fig.legend(list(handles or []), list(labels or []), loc="outside lower center",
                      ncol=ncol, frameon=False, **kwargs)


def caption(fig: Figure, text: str) -> None:
    """A one-line note under the figure (what blank cells mean, a caveat on a fit).

    With a legend under the figure (`figure_legend`, called first) the note is that
    legend's title, so that the two never overlap.
    """
    if fig.legends:
        fig.legends[-1].set_title(text, prop=FontProperties(size=FONT_SMALL, style="italic"))
    else:
        fig.supxlabel(text, fontsize=FONT_SMALL, style="italic")


class ReadableLogFormatter(Formatter):
    """Plain-text log tick labels whose density follows the visible span.

    Decades are always labelled (``0.01``, ``1``, ``1e+06``); over less than two decades the
    ticks at 2 and 5 times a decade and the outermost ticks (unless next to a labelled one)
    too, and over less than half a decade every tick: no unlabelled top of a short axis, no
    clutter of mantissas.
    """

    def __call__(self, x, pos=None):
        if x <= 0 or not math.isfinite(x):
            return ""
        lo, hi = sorted(self.axis.get_view_interval()) if self.axis is not None else (x, x)
        span = math.log10(hi / lo) if lo > 0 and hi > 0 else 10.0
        exponent = math.floor(math.log10(x) + 1e-9)
        mantissa = round(x / 10 ** exponent, 6)
        if mantissa == 1 or span < 0.5 or (span < 2 and mantissa in (2, 5)):
            return f"{x:g}"
        step = 10.0**exponent
        # the outermost tick of a short axis is labelled too (a reader looks for the
        # top value), unless its neighbour already is
        top = x + step > hi * (1 + 1e-9) and mantissa - 1 not in (1, 2, 5)
        bottom = x - step < lo * (1 - 1e-9) and mantissa + 1 not in (2, 5, 10)
        if span < 2 and (top or bottom) and mantissa == int(mantissa):
            return f"{x:g}"
        return ""


def _readable_log(axis) -> None:
    if isinstance(axis.get_major_formatter(), LogFormatter):
        axis.set_major_formatter(ReadableLogFormatter())
    if isinstance(axis.get_minor_formatter(), LogFormatter):
        axis.set_minor_formatter(ReadableLogFormatter())


def finish(fig: Figure, grid: bool = True) -> Figure:
    """Apply fonts, grids and log-axis labels to every axes of ``fig``; returns ``fig``."""
    for ax in fig.axes:
        if hasattr(ax, "_colorbar"):
            ax.tick_params(which="both", labelsize=FONT_SMALL)
            for axis, scale in ((ax.xaxis, ax.get_xscale()), (ax.yaxis, ax.get_yscale())):
                axis.label.set_fontsize(FONT)
                if scale == "log":
                    _readable_log(axis)
            continue
        ax.tick_params(which="both", labelsize=FONT_SMALL)
        ax.title.set_fontsize(FONT_TITLE)
        for axis, scale in ((ax.xaxis, ax.get_xscale()), (ax.yaxis, ax.get_yscale())):
            axis.label.set_fontsize(FONT)
            if scale == "log":
                _readable_log(axis)
                text = axis.label.get_text()
                if text and "log" not in text:
                    axis.label.set_text(text + LOG_SUFFIX)
        if grid and not ax.images:
            ax.grid(True, which="major", alpha=0.3)
    return fig


#: the widest gap (inches) between a panel and its colour bar that `layout_problems` allows
COLORBAR_GAP = 0.3
#: the least room (inches) between a figure text and the figure's left or right edge
TEXT_MARGIN = 0.1


def _data_boxes(ax: Axes, renderer) -> list:
    box = ax.get_window_extent(renderer)
    out = []
    for artist in [*ax.lines, *ax.collections, *ax.images, *ax.patches]:
        if not artist.get_visible():
            continue
        try:
            ext = artist.get_window_extent(renderer)
        except (TypeError, ValueError, RuntimeError):
            continue
        if not (np.all(np.isfinite(ext.get_points())) and ext.width >= 0 and ext.height >= 0):
            continue
        if ext.width == 0 and ext.height == 0:
            continue
        clipped = ext.intersection(ext, box)
        if clipped is not None:
            out.append(clipped)
    return out


def layout_problems(fig: Figure) -> list[str]:
    """What a reader would trip over in a figure: unlabelled axes, legends over data,
    clipped titles, colour bars away from their panel.

    Draws the figure (Agg), then lists every visible axes (colour bars aside) without an x
    or y label (an x label on a shared-x sibling below counts), every legend whose box
    overlaps the box of plotted data (lines, collections, images, patches) of any axes, a
    figure text (the ``suptitle``, a caption) not inside the figure's width by
    `TEXT_MARGIN` inches, and every colour bar
    more than `COLORBAR_GAP` inches to the side of the axes it belongs to.

    Returns
    -------
    list of str
        Empty when the figure is clean.
    """
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    problems = []
    axes = [ax for ax in fig.axes if ax.get_visible() and not hasattr(ax, "_colorbar")]
    for i, ax in enumerate(axes):
        name = f"axes {i} ({ax.get_title() or 'untitled'})"
        if not ax.get_ylabel():
            problems.append(f"{name}: no y label")
        siblings = ax.get_shared_x_axes().get_siblings(ax)
        if not any(s.get_xlabel() for s in siblings):
            problems.append(f"{name}: no x label")
    legends = [*fig.legends, *(lg for ax in axes if (lg := ax.get_legend()) is not None)]
    for legend_ in legends:
        lb = legend_.get_window_extent(renderer)
        for i, ax in enumerate(axes):
            if any(lb.overlaps(b) for b in _data_boxes(ax, renderer)):
                texts = [t.get_text() for t in legend_.get_texts()][:2]
                problems.append(f"legend {texts} overlaps the data of axes {i}")
    margin = TEXT_MARGIN * fig.dpi
    for text in fig.texts:  # the suptitle, captions
        tb = text.get_window_extent(renderer)
        if text.get_text() and (tb.x0 < fig.bbox.x0 + margin or tb.x1 > fig.bbox.x1 - margin):
            problems.append(f"figure text {text.get_text()[:40]!r} does not fit the width")
    for cax in fig.axes:
        parent = getattr(getattr(cax, "_colorbar", None), "mappable", None)
        parent = getattr(parent, "axes", None)
        if parent is None or not cax.get_visible():
            continue
        a, c = parent.get_window_extent(renderer), cax.get_window_extent(renderer)
        gap = max(c.x0 - a.x1, a.x0 - c.x1, c.y0 - a.y1, a.y0 - c.y1)
        if gap > COLORBAR_GAP * fig.dpi:
            problems.append(f"colour bar of {parent.get_title()[:40]!r} is "
                            f"{gap / fig.dpi:.2f} in from its panel")
    return problems
