"""Spectral bins of a config are the same numbers after their quadrature moved to
`advdyn.theory.spectral` and the spectrum laws to `advdyn.problem.spectra` (issue 29):
compared with values computed on main before the move (``data/binned_from_config_main.json``,
every leaf of the BinnedInstance, d = 50 000, 24 bins). The move reorders no floating
operation, so the values are bit-for-bit identical; the tolerance, 1e-12 relative, only
leaves room for another platform's libm (``pow`` in the power law)."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np
import pytest

from advdyn.config import ProblemConfig
from advdyn.config.build import binned_from_config

REFERENCE = json.loads((Path(__file__).with_name("data") /
                        "binned_from_config_main.json").read_text())
CASES = {
    "uniform": ({"kind": "uniform", "low": 0.2, "high": 1.8}, {}),
    "power_law": ({"kind": "power_law", "exponent": 1.2}, {}),
    "power_law_gauss": ({"kind": "power_law", "exponent": 1.2}, {"gauss": True}),
    "power_law_relaxed": ({"kind": "power_law", "exponent": 1.5}, {"relaxed_above": 2.0}),
    "mp": ({"kind": "marchenko_pastur", "aspect_ratio": 0.5}, {}),
    "mp_atom_gauss": ({"kind": "marchenko_pastur", "aspect_ratio": 2.0}, {"gauss": True}),
    "two_level": ({"kind": "two_level", "first": 3.0, "second": 0.2, "fraction": 0.25}, {}),
    "identity": ({"kind": "identity"}, {}),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bins_of_a_config_match_main_before_the_move(name):
    spectrum, kw = CASES[name]
    cfg = ProblemConfig(d=50_000, spectrum=spectrum, task={"kind": "regression", "noise": 0.3})
    leaves = jax.tree.leaves(binned_from_config(cfg, 24, **kw))
    want = REFERENCE[name]
    assert len(leaves) == len(want)
    for got, ref in zip(leaves, want, strict=True):
        got = np.asarray(got, np.float64).ravel()
        np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-300)
