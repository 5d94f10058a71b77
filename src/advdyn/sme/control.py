"""Learning-rate control through the SME (SME 2): the optimal feedback rate.

Toy problem of the paper's earlier version [R]: ``f = a x^2 / 2`` with constant gradient
noise ``Sigma`` and a rate multiplier ``u in [0, 1]`` (step ``u eta``). Its order-1 SME gives
for ``m = E x^2``

    dm/dt = -2 a u m + eta Sigma u^2.

The right-hand side is minimised by ``u*(m) = min(1, a m / (eta Sigma))``. In one dimension
the pointwise minimiser of ``dm/dt`` is also the optimal feedback for any horizon (the flows
of two controls cannot cross without the greedy one being lower: comparison principle).
With ``m_inf = eta Sigma / (2a)`` the full rate is used until ``m`` falls to
``2 m_inf`` at

    t* = ln((m0 - m_inf) / m_inf) / (2a)      (0 if m0 <= 2 m_inf),

and afterwards ``dm/dt = -a^2 m^2 / (eta Sigma)`` gives ``u*(t) = 1 / (1 + a (t - t*))``.

General objective ([`line_search_rate`][advdyn.sme.control.line_search_rate]): the SME generator
with multiplier ``u`` is
``L f = -u |grad f|^2 + u^2 (eta/2) tr(Sigma H)``, minimised by
``u* = |grad f|^2 / (eta tr(Sigma H))``. In advdyn's scaling (``eta = gamma_max / d``) the
rate ``gamma_max u*`` is THEORY 6's exact line search ``-A / (2C)``
([`advdyn.theory.LineSearch`][advdyn.theory.LineSearch]): identical when the risk is linear in the
state
``(theta_i^2, theta_i theta*_i)`` (clean least squares, homogenized noise), equal up to
``O(1/d)`` otherwise (the state's risk is the mean-field version of ``tr(Sigma H)/2``).
"""

from __future__ import annotations

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from advdyn.precision import float64
from advdyn.sme.objectives import AbstractObjective
from advdyn.typing import AnyArray


@float64
def switch_time(a: float, noise: float, eta: float, m0: float) -> float:
    """Time ``t*`` at which the optimal multiplier leaves 1 (toy problem).

    Parameters
    ----------
    a : float
        Curvature.
    noise : float
        Gradient-noise variance ``Sigma``.
    eta : float
        Base learning rate.
    m0 : float
        ``E x_0^2``.

    Returns
    -------
    float
        ``ln((m0 - m_inf) / m_inf) / (2a)``, or 0 when ``m0 <= 2 m_inf``.
    """
    m_inf = eta * noise / (2 * a)
    if m0 <= 2 * m_inf:
        return 0.0
    return float(np.log((m0 - m_inf) / m_inf) / (2 * a))


@float64
def optimal_policy(t, a: float, noise: float, eta: float, m0: float):
    """Closed form ``u*(t) = 1`` before ``t*``, ``1 / (1 + a (t - t*))`` after.

    Parameters
    ----------
    t : array_like
        Times.
    a, noise, eta, m0 : float
        As in [`switch_time`][advdyn.sme.control.switch_time].

    Returns
    -------
    ndarray
        ``u*(t)``.
    """
    t = np.asarray(t, float)
    ts = switch_time(a, noise, eta, m0)
    return np.where(t <= ts, 1.0, 1.0 / (1.0 + a * (t - ts)))


@float64
def solve_control(
    a: float, noise: float, eta: float, m0: float, times, policy: str | float = "optimal",
    *, rtol: float = 1e-12, atol: float = 1e-14,
) -> dict[str, np.ndarray]:
    """Integrate ``dm/dt = -2 a u m + eta Sigma u^2`` under a feedback or fixed multiplier.

    Parameters
    ----------
    a, noise, eta, m0 : float
        As in [`switch_time`][advdyn.sme.control.switch_time].
    times : array_like
        Recording times (from 0).
    policy : "optimal" or float
        ``u*(m) = min(1, a m / (eta Sigma))`` or a constant multiplier.
    rtol, atol : float
        Tolerances (tight: check 5 compares ``u`` to 1e-8).

    Returns
    -------
    dict
        ``time``, ``m`` (second moment, the expected loss is ``a m / 2``) and ``u``.
    """
    times = jnp.asarray(np.asarray(times, np.float64))
    optimal = isinstance(policy, str)
    if optimal and policy != "optimal":
        raise ValueError(f"policy must be 'optimal' or a number, got {policy!r}")
    params = jnp.asarray([a, noise, eta, m0, 0.0 if optimal else float(policy)], jnp.float64)
    m, u = _control_ode(params, times, optimal, rtol, atol)
    return {"time": np.asarray(times), "m": np.asarray(m), "u": np.asarray(u)}


@eqx.filter_jit
def _control_ode(params, times, optimal: bool, rtol: float, atol: float):
    a, noise, eta, m0, fixed = params

    def u_of(m):
        if optimal:
            return jnp.minimum(1.0, a * m / (eta * noise))
        return fixed + 0.0 * m

    def rhs(t, m, args):
        u = u_of(m)
        return -2 * a * u * m + eta * noise * u**2

    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(rhs), diffrax.Tsit5(), times[0], times[-1], None, m0,
        saveat=diffrax.SaveAt(ts=times),
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol), max_steps=100_000,
    )
    return sol.ys, u_of(sol.ys)


@float64
def line_search_rate(
    objective: AbstractObjective, theta: Float[AnyArray, " d"], gamma_max: float, d: int
) -> Float[Array, ""]:
    """Optimal SME multiplier at ``theta`` as a rate in advdyn's scaling, capped at ``gamma_max``.

    ``gamma* = gamma_max u*`` with ``u* = |grad f|^2 / (eta tr(Sigma H))``,
    ``eta = gamma_max / d``: i.e. ``gamma* = d |grad f|^2 / tr(Sigma H)`` clipped to
    ``[0, gamma_max]`` (``gamma_max`` when ``tr(Sigma H) <= 0``).

    Parameters
    ----------
    objective : AbstractObjective
        Supplies the gradient, the Hessian (forward-over-reverse) and ``Sigma = F F^T``.
    theta : array, shape (d,)
        Current iterate.
    gamma_max : float
        Cap (the base rate ``eta d`` of the control problem).
    d : int
        Dimension (the core's ``1/d`` step scaling).

    Returns
    -------
    Array
        float64 scalar.
    """
    return _line_search_rate(objective, jnp.asarray(theta, jnp.float64),
                             jnp.asarray(gamma_max, jnp.float64), jnp.asarray(d, jnp.float64))


@eqx.filter_jit
def _line_search_rate(objective, theta, gamma_max, d):
    g = objective.gradient(theta)
    f = objective.noise_factor(theta)
    hf = jax.vmap(lambda v: jax.jvp(objective.gradient, (theta,), (v,))[1], in_axes=1,
                  out_axes=1)(f)
    tr = jnp.sum(f * hf)
    safe = jnp.where(tr > 0, tr, 1.0)
    gamma = jnp.where(tr > 0, d * (g @ g) / safe, gamma_max)
    return jnp.clip(gamma, 0.0, gamma_max)
