"""What every solver returns: recorded quantities on a time grid, as a small pytree.

[`solve_ode`][advdyn.theory.solve_ode], [`simulate_sgd`][advdyn.simulate.simulate_sgd],
[`simulate_hsgd`][advdyn.simulate.simulate_hsgd] and
[`solve_ridge_ode`][advdyn.theory.solve_ridge_ode] return a
[`Solution`][advdyn.solution.Solution] (the way diffrax returns its own ``Solution``);
[`advdyn.io.to_dataset`][advdyn.io.to_dataset]
labels it as an `xarray.Dataset`. The mathematics never builds a dataset itself.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

import equinox as eqx
import jax
import numpy as np
from jaxtyping import Float


class RESULTS(enum.IntEnum):
    """How a solve ended: the integer code a [`Solution`][advdyn.solution.Solution] carries in
    ``result``.

    Inside ``jit``/``vmap`` a failure is data (the code, and NaN records from the failure
    on); solvers called with ``throw=True`` turn a nonzero code into an exception.
    """

    #: every record was reached with a finite state
    successful = 0
    #: ``|theta - theta*|^2`` crossed the divergence bound, or a record was not finite
    diverged = 1
    #: the step budget (``max_steps`` per recording interval) ran out
    max_steps_reached = 2
    #: the integrator failed otherwise (e.g. its nonlinear solve did not converge)
    solver_failed = 3


def diffrax_code(result) -> jax.Array:
    """The [`RESULTS`][advdyn.solution.RESULTS] code of a diffrax result (``diffrax.RESULTS``):
    an event (the divergence bound) is ``diverged``, an exhausted step budget
    ``max_steps_reached``, any other failure ``solver_failed``; an int32 array."""
    import diffrax  # on tracing only (a run that loads a stored program does not need it)
    import jax.numpy as jnp

    R = diffrax.RESULTS
    return jnp.where(
        result == R.successful, RESULTS.successful,
        jnp.where(result == R.event_occurred, RESULTS.diverged,
                  jnp.where(result == R.max_steps_reached, RESULTS.max_steps_reached,
                            RESULTS.solver_failed)),
    ).astype(jnp.int32)


class Solution(eqx.Module):
    """Quantities recorded by one solver on a time grid.

    Attributes
    ----------
    ts : ndarray or Array, shape (T,)
        Recording times ``t = k/d`` (float64).
    ys : dict of str to ndarray or Array
        THEORY section 11 names; shape ``(T,)``, or ``(R, T)`` when ``replicated``.
    method : str
        ``"ode"``, ``"sgd"``, ``"hsgd"`` or ``"ridge_ode"``.
    replicated : bool
        Whether every array carries a leading replicate axis.
    stats : mapping
        Scalars describing the solve (steps, dtype, block, stride, integrator, ...).
    result : Array of int, optional
        A [`RESULTS`][advdyn.solution.RESULTS] code (solvers that report one; ``None`` otherwise).
        Under
        ``vmap`` one code per batch element.
    steps : Array of int, optional
        Accepted and rejected integrator steps, where the solver counts them.
    """

    ts: Float[np.ndarray, " time"] | Float[jax.Array, " time"]
    ys: dict[str, Any]
    method: str = eqx.field(static=True)
    replicated: bool = eqx.field(static=True, default=False)
    stats: Mapping[str, Any] = eqx.field(static=True, default_factory=dict)
    result: Any = None
    steps: Any = None

    def __getitem__(self, name: str) -> np.ndarray:
        """The recorded array ``name`` (e.g. ``sol["adv_risk"]``)."""
        return self.ys[name]

    def __contains__(self, name: object) -> bool:
        return name in self.ys

    @property
    def replicates(self) -> int:
        """Number of replicates (1 for a deterministic solver)."""
        return int(next(iter(self.ys.values())).shape[0]) if self.replicated else 1
