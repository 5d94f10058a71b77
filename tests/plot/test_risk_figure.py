"""The command line's risk figure: plain-text log labels (no mathtext parser to build) on
the ticks matplotlib itself would label."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from advdyn.io import make_dataset
from advdyn.plot.risk import plot_quantities


def _labelled(ax) -> dict[float, str]:
    lo, hi = ax.get_ylim()
    ticks = [*ax.yaxis.get_major_ticks(), *ax.yaxis.get_minor_ticks()]
    return {float(f"{t.get_loc():.12g}"): t.label1.get_text() for t in ticks
            if t.label1.get_text() and lo * (1 - 1e-9) <= t.get_loc() <= hi * (1 + 1e-9)}


@pytest.mark.parametrize(
    ("low", "high"),
    [(1e-3, 1.0), (0.15, 2.5), (1.5, 80.0), (0.42, 0.6), (1e-18, 1.0)],
    ids=["3 decades", "1.2 decades", "1.7 decades", "0.15 decades", "18 decades"],
)
def test_log_labels_are_plain_text_and_their_density_follows_the_span(low, high):
    ds = make_dataset(np.linspace(0.0, 1.0, 11), {"adv_risk": np.geomspace(high, low, 11)},
                      "ode")
    ax = plot_quantities({"ode": ds}, ("adv_risk",)).axes[0]
    ax.set_ylim(low, high)
    FigureCanvasAgg(ax.figure).draw()
    # reference: matplotlib's default log axis over the same range (mathtext labels)
    ref_fig = Figure()
    ref = ref_fig.subplots()
    ref.plot([0.0, 1.0], [high, low])
    ref.set_yscale("log")
    ref.set_ylim(low, high)
    FigureCanvasAgg(ref_fig).draw()
    theirs = {float(f"{t.get_loc():.12g}") for t in
              [*ref.yaxis.get_major_ticks(), *ref.yaxis.get_minor_ticks()]
              if low * (1 - 1e-9) <= t.get_loc() <= high * (1 + 1e-9)}
    ours = _labelled(ax)
    assert set(ours) <= theirs  # labels sit on matplotlib's ticks
    span = np.log10(high / low)
    for loc in theirs:  # which ticks carry a label (advdyn.plot.style.ReadableLogFormatter)
        mantissa = round(loc / 10 ** np.floor(np.log10(loc) + 1e-9), 6)
        labelled = mantissa == 1 or span < 0.5 or (span < 2 and mantissa in (2, 5))
        outermost = span < 2 and loc in (min(theirs), max(theirs))
        assert (loc in ours) == labelled or outermost, (loc, ours)
    if span < 2:  # a short axis shows its top value
        assert max(theirs) in ours or any(
            max(theirs) * 0.8 < loc < max(theirs) for loc in ours), ours
    for loc, text in ours.items():
        assert "$" not in text and float(text) == pytest.approx(loc, rel=1e-9)
    assert ax.get_ylabel().endswith("(log scale)")
