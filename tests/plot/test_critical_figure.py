"""``critical_exact.png`` (`plot_exact_critical`): what its legends and labels say."""

from __future__ import annotations

import numpy as np
import xarray as xr

from advdyn.plot.critical import plot_exact_critical
from advdyn.solution import RESULTS


def _dataset(floor: float, margin_star, diverged_from: int | None = None) -> xr.Dataset:
    t = np.linspace(0.0, 2.0, 5)
    eps = np.array([0.0, 0.5, 1.0])
    clean = 1.0 + 1.0 / (1.0 + t)
    adv = clean[None, :] * (1.0 + eps[:, None])
    result = np.zeros(3, np.int32)
    if diverged_from is not None:
        adv[2, diverged_from:] = np.inf
        result[2] = RESULTS.diverged
    return xr.Dataset(
        {"adv_risk": (("eps", "t"), adv), "clean_risk": ("t", clean),
         "result": ("eps", result), "eps_star": ("t", np.zeros(5)),
         "eps_star_margin": ("t", np.asarray(margin_star, np.float64))},
        coords={"eps": eps, "t": t}, attrs={"floor": floor, "margin": 1.0})


def _labels(ax) -> list[str]:
    return ax.get_legend_handles_labels()[1]


def test_an_undefined_gap_matched_eps_star_says_so():
    """A floor that is not finite makes the gap-matched eps* NaN everywhere: its legend
    entry says it is undefined and why (it said nothing while nothing was drawn)."""
    fig = plot_exact_critical(_dataset(float("nan"), [np.nan] * 5))
    (label,) = [s for s in _labels(fig.axes[0]) if s.startswith("gap-matched")]
    assert "undefined: the clean optimum's risk is not finite" in label
    fig = plot_exact_critical(_dataset(0.5, [np.inf, 0.4, 0.3, 0.2, 0.1]))
    assert not any("undefined" in s for s in _labels(fig.axes[0]))


def test_risk_panel_draws_positive_radii_and_names_a_diverged_one():
    """The eps = 0 adversarial risk is the clean risk of the clean iterate (drawn dashed
    once, said in its label); a diverged radius is named with the n/d it stopped at."""
    fig = plot_exact_critical(_dataset(0.5, [np.inf] * 5, diverged_from=3))
    labels = _labels(fig.axes[1])
    assert not any("eps = 0 " in s or s.endswith("eps = 0") for s in labels)
    assert "clean risk of the clean iterate (= adv. risk at eps = 0)" in labels
    assert "adv. risk, trained at eps = 0.5" in labels
    assert "adv. risk, trained at eps = 1 (ODE diverged: none from n/d = 1.5)" in labels


def test_radius_units_follow_standardisation():
    """Radii of a data problem are in standardised units only when the columns are scaled."""
    from types import SimpleNamespace

    from advdyn.workflows.critical_exact import _radius_units

    def units(standardize):
        data = None if standardize is None else SimpleNamespace(standardize=standardize)
        return _radius_units(SimpleNamespace(problem=SimpleNamespace(data=data)))

    assert units(None) == "l2"
    assert units("scale") == "l2, standardised feature units"
    assert units("center") == units("none") == "l2, feature units"
