"""Gradient flows of clean and adversarial training, side by side (SME 2).

The zero-noise limit of both SMEs is the gradient flow ``dtheta/dt = -grad f`` of the
training objective. Along the *adversarial* flow (``f = R_eps``)
``dR_eps/dt = -|grad R_eps|^2 <= 0``: the adversarial risk never increases. Along the
*clean* flow (``f = R_0``) ``dR_eps/dt = -<grad R_eps, grad R_0>``, which can be positive:
for ``K = I``, ``|theta*| = 1``, ``sigma = 0.1``, ``eps = 1`` and ``theta_0 = 0`` the clean
flow carries ``R_eps`` from ``0.505`` to ``R_eps(theta*) = 0.585`` (SME 2 and 3, check 3).
"""

from __future__ import annotations

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Float

from advdyn.precision import float64
from advdyn.sme.objectives import AbstractObjective
from advdyn.solution import Solution
from advdyn.typing import AnyArray


@float64
def gradient_flow(
    objective: AbstractObjective,
    theta0: Float[AnyArray, " p"],
    times,
    *,
    rtol: float = 1e-10,
    atol: float = 1e-12,
    max_steps: int = 100_000,
) -> Solution:
    """Integrate ``dtheta/dt = -grad f(theta)`` (diffrax Tsit5) and record observables.

    Parameters
    ----------
    objective : AbstractObjective
        Its [`gradient`][advdyn.sme.AbstractObjective.gradient] is the flow's velocity (with minus
        sign).
    theta0 : array, shape (p,)
        Initial point.
    times : array_like, shape (T,)
        Increasing recording times starting at the initial time.
    rtol, atol : float
        Tolerances of the adaptive solver.
    max_steps : int
        Step budget.

    Returns
    -------
    Solution
        ``ys``: the objective's observables plus ``adv_rate = dR_eps/dt =
        -<grad R_eps, grad f>`` (the quantity whose sign SME 2 discusses); ``method =
        "flow"``.
    """
    times = jnp.asarray(np.asarray(times, np.float64))
    theta0 = jnp.asarray(theta0, jnp.float64)
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(lambda t, y, args: -objective.gradient(y)), diffrax.Tsit5(),
        times[0], times[-1], None, theta0, saveat=diffrax.SaveAt(ts=times),
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol, dtmin=None),
        max_steps=max_steps,
    )
    adv = jax.grad(lambda th: objective.observables(th)["adv_risk"])

    def record(theta):
        out = objective.observables(theta)
        out["adv_rate"] = -adv(theta) @ objective.gradient(theta)
        return out

    ys = {k: np.asarray(v) for k, v in jax.vmap(record)(sol.ys).items()}
    return Solution(np.asarray(times), ys, "flow", stats={"solver": "tsit5", "rtol": rtol})
