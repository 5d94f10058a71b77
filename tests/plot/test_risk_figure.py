"""The command line's risk figure: plain-text log labels (no mathtext parser to build)."""

from __future__ import annotations

import numpy as np
import pytest

from advdyn.io import make_dataset
from advdyn.plot.risk import plot_quantities


def _labels(axis, which):
    ticks = axis.get_minor_ticks() if which == "minor" else axis.get_major_ticks()
    return [t.label1.get_text() for t in ticks if t.label1.get_text()]


@pytest.mark.parametrize(
    ("low", "high", "majors", "minors"),
    [
        # three decades: majors at the powers of ten only, minor ticks unlabelled
        (1e-3, 1.0, {"0.001", "0.01", "0.1", "1"}, set()),
        # 0.4 to 2 (0.7 decades): the power of ten and minor ticks at mantissas 2, 3, 5
        (0.4, 2.0, {"1"}, {"0.5", "2"}),
        # 0.42 to 0.6 (0.15 decades): every minor tick in range
        (0.42, 0.6, set(), {"0.5", "0.6"}),
    ],
)
def test_log_labels_are_plain_text(low, high, majors, minors):
    times = np.linspace(0.0, 1.0, 11)
    ds = make_dataset(times, {"adv_risk": np.geomspace(high, low, 11)}, "ode")
    fig = plot_quantities({"ode": ds}, ("adv_risk",))
    ax = fig.axes[0]
    ax.set_ylim(low, high)
    fig.canvas.draw()  # the labels are set when the figure is drawn
    major, minor = _labels(ax.yaxis, "major"), _labels(ax.yaxis, "minor")
    assert not any("$" in text for text in major + minor)  # no mathtext
    assert majors <= set(major)
    assert minors <= set(minor)
    if not minors:
        assert minor == []
