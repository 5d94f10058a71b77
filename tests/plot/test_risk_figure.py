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
    ticks = [*ax.yaxis.get_major_ticks(), *ax.yaxis.get_minor_ticks()]
    return {round(float(t.get_loc()), 12): t.label1.get_text() for t in ticks
            if t.label1.get_text()}


@pytest.mark.parametrize(
    ("low", "high"),
    [(1e-3, 1.0), (0.15, 2.5), (1.5, 80.0), (0.42, 0.6), (1e-18, 1.0)],
    ids=["3 decades", "1.2 decades", "1.7 decades", "0.15 decades", "18 decades"],
)
def test_log_labels_are_plain_text_on_matplotlibs_ticks(low, high):
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
    ours, theirs = _labelled(ax), _labelled(ref)
    assert set(ours) == set(theirs)  # the same ticks carry a label
    assert all("$" in text for text in theirs.values())  # (the default is mathtext)
    for loc, text in ours.items():
        assert "$" not in text and float(text) == pytest.approx(loc, rel=1e-9)
