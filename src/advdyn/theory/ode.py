"""The deterministic-equivalent ODE (THEORY section 5), solved with diffrax in float64.

In the error variables of :mod:`advdyn.statistics` (``e = theta - theta*``) and with the
drift coefficients ``D, H, N, f`` of :mod:`advdyn.drift`, the per-direction system is

    d err2_i/dt        = -2 gamma ( D_i err2_i + (D_i+H_i) err_teacher_i
                                    + sum_c pi_c e_c err_mean_ci ) + gamma^2 N_i / d
    d err_teacher_i/dt =   -gamma ( D_i err_teacher_i + (D_i+H_i) theta*_i^2 + theta*_i f_i )
    d err_mean_ci/dt   =   -gamma ( D_i err_mean_ci + (D_i+H_i) theta*_i mu_ci + mu_ci f_i )

which is THEORY's ``(P, Q, M)`` system after the substitution ``theta = e + theta*``.
"""

from __future__ import annotations

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from advdyn import checks
from advdyn.errors import DivergenceError
from advdyn.precision import float64
from advdyn.problem.instance import AbstractInstance
from advdyn.solution import Solution
from advdyn.theory.drift import flow
from advdyn.theory.rates import LearningRate
from advdyn.theory.recording import make_recorder
from advdyn.theory.stationary import StationaryPoint
from advdyn.theory.statistics import DirectionState, direction_sum

Array = jax.Array


def initial_state(instance: AbstractInstance) -> DirectionState:
    """State of the initial iterate ``theta_0`` (float64).

    Parameters
    ----------
    instance : AbstractInstance
        Supplies ``theta_0``, ``theta*`` and ``mu_c``.

    Returns
    -------
    DirectionState
        Products of the coordinates of ``e_0 = theta_0 - theta*``.
    """
    return instance.initial_state()


def vector_field(t, state: DirectionState, args) -> DirectionState:
    """Right-hand side of the deterministic-equivalent ODE (the system in the module docstring).

    Parameters
    ----------
    t : scalar
        Time ``t = k/d``.
    state : DirectionState
        Current ``(err2, err_teacher, err_mean)``.
    args : tuple
        ``(instance, lr)``: the :class:`ProblemInstance` and the
        :class:`~advdyn.schedules.LearningRate` giving ``gamma(t)``.

    Returns
    -------
    DirectionState
        The time derivatives of the three state fields.
    """
    instance, lr = args
    drift, noise = flow(state, instance)
    gamma = lr(t, state, instance)
    return jax.tree.map(lambda u, v: gamma * u + gamma**2 * v, drift, noise)


@eqx.filter_jit
def _solve(instance, lr, recorder, times, rtol, atol, max_steps, blowup):
    y0 = initial_state(instance)
    # |theta - theta*|^2 is the direction sum of err2
    bound = blowup * (
        direction_sum(y0.err2, instance) + direction_sum(instance.teacher2, instance) + 1.0
    )

    def blown_up(t, y, args, **kw):
        return direction_sum(y.err2, instance) > bound

    event = diffrax.Event(blown_up)
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(vector_field),
        diffrax.Tsit5(),
        t0=times[0],
        t1=times[-1],
        dt0=None,
        y0=y0,
        args=(instance, lr),
        saveat=diffrax.SaveAt(ts=times),
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
        max_steps=max_steps,
        event=event,
        throw=False,
    )
    states = sol.ys

    def record(t, s):
        return recorder(t, s, instance, lr)

    return jax.vmap(record)(sol.ts, states), sol.result == diffrax.RESULTS.successful


@float64
def solve_ode(
    instance: AbstractInstance,
    lr: LearningRate,
    times,
    *,
    rtol: float = 1e-8,
    atol: float = 1e-20,
    max_steps: int = 1_000_000,
    divergence_factor: float = 1e6,
    optimum: StationaryPoint | None = None,
    attrs: dict | None = None,
) -> Solution:
    """Integrate the deterministic-equivalent ODE and record THEORY section 11 quantities.

    Parameters
    ----------
    instance : AbstractInstance
        The problem; the initial state is built from ``instance.theta0``.
    lr : LearningRate
        Learning-rate rule ``gamma_t``.
    times : array_like, shape (T,)
        Increasing recording times starting at 0 (the initial state is placed at
        ``times[0]``). To compare with
        :func:`~advdyn.sgd.simulate_sgd`, pass ``time_grid(d, t_max, n_times).times``: the
        SGD grid is aligned to whole steps and can end slightly off ``t_max``.
    rtol, atol : float
        Tolerances of the adaptive Tsit5 solver (``atol`` tiny, so that exponentially
        decaying quantities keep their relative accuracy; THEORY 10).
    max_steps : int
        Step budget of the solver.
    divergence_factor : float
        The solve stops when ``|theta - theta*|^2`` exceeds this factor times
        ``|theta_0 - theta*|^2 + |theta*|^2 + 1``.
    optimum : StationaryPoint, optional
        The adversarial optimum for ``dist_to_opt`` (computed when omitted).
    attrs : dict, optional
        Extra entries for ``Solution.stats``.

    Returns
    -------
    Solution
        ``ys`` on the time grid: those of :class:`~advdyn.theory.recording.Recorder`
        (observables, ``lr``, ``dist_to_opt``, and the least-squares equivalence
        quantities where they apply); ``method = "ode"``.

    Raises
    ------
    DivergenceError
        If the trajectory blows up (``adv_risk`` not finite or the bound above is
        crossed) or the solver fails (e.g. runs out of ``max_steps``); it names the time
        and the learning rate.
    """
    checks.recording_times(times, "times")
    times = jnp.asarray(np.asarray(times, dtype=np.float64))
    recorder = make_recorder(instance, optimum)
    out, ok = _solve(instance, lr, recorder, times, rtol, atol, max_steps, divergence_factor)
    out = {k: np.asarray(v) for k, v in out.items()}
    finite = np.isfinite(out["adv_risk"])
    if not bool(ok) or not finite.all():
        i = int(np.argmin(finite)) if not finite.all() else len(finite) - 1
        # the rate at the last finite record (state-dependent rules need a finite state)
        lr_at = float(out["lr"][max(i - 1, 0)]) if lr.needs_state else float(lr(times[i]))
        raise DivergenceError(
            "ode", float(times[i]), lr_at, "|theta|^2 grew without bound or the solver failed"
        )
    return Solution(np.asarray(times), out, "ode", stats=dict(attrs or {}))
