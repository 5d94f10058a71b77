"""What every solver returns: recorded quantities on a time grid, as a small pytree.

:func:`~advdyn.theory.solve_ode`, :func:`~advdyn.simulate.simulate_sgd`,
:func:`~advdyn.simulate.simulate_hsgd` and :func:`~advdyn.theory.solve_ridge_ode` return a
:class:`Solution` (the way diffrax returns its own ``Solution``); :func:`advdyn.io.to_dataset`
labels it as an :class:`xarray.Dataset`. The mathematics never builds a dataset itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import equinox as eqx
import numpy as np
from jaxtyping import Float


class Solution(eqx.Module):
    """Quantities recorded by one solver on a time grid.

    Attributes
    ----------
    ts : ndarray, shape (T,)
        Recording times ``t = k/d`` (float64).
    ys : dict of str to ndarray
        THEORY section 11 names; shape ``(T,)``, or ``(R, T)`` when ``replicated``.
    method : str
        ``"ode"``, ``"sgd"``, ``"hsgd"`` or ``"ridge_ode"``.
    replicated : bool
        Whether every array carries a leading replicate axis.
    stats : mapping
        Scalars describing the solve (steps, dtype, block, stride, integrator, ...).
    """

    ts: Float[np.ndarray, " time"]
    ys: dict[str, np.ndarray]
    method: str = eqx.field(static=True)
    replicated: bool = eqx.field(static=True, default=False)
    stats: Mapping[str, Any] = eqx.field(static=True, default_factory=dict)

    def __getitem__(self, name: str) -> np.ndarray:
        """The recorded array ``name`` (e.g. ``sol["adv_risk"]``)."""
        return self.ys[name]

    def __contains__(self, name: object) -> bool:
        return name in self.ys

    @property
    def replicates(self) -> int:
        """Number of replicates (1 for a deterministic solver)."""
        return int(next(iter(self.ys.values())).shape[0]) if self.replicated else 1
