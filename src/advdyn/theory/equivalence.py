"""Adversarial least squares as ridge least squares (THEORY section 7, equivalence).

For least squares with one centred class, ``y = <theta*, x> + sigma xi``, the adversarial
coefficients are ``h_2 = -h_1``, ``e = 0`` and ``N_i = lambda_i I``. The ODE of adversarial
SGD is then *identical* to the ODE of plain SGD on ridge least squares

    d err2_i/dt        = -2 g ( (lambda_i + l) err2_i + l err_teacher_i ) + g^2 k lambda_i s^2 / d
    d err_teacher_i/dt =   -g ( (lambda_i + l) err_teacher_i + l theta*_i^2 )

(``s^2 = <e, K e> + sigma^2``) driven by the time-varying

    g = eff_lr      = gamma h_1,
    l = eff_ridge   = rho / h_1,
    k = noise_factor = I / (h_1^2 s^2)      (always in [1, pi/2]).

`ls_equivalence` evaluates the three along any trajectory;
[`solve_ridge_ode`][advdyn.theory.equivalence.solve_ridge_ode]
integrates the ridge ODE driven by recorded values of them, which reproduces the
adversarial risk (a check of the equivalence that shares no code with the adversarial ODE
beyond the final risk formula).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike, Float

from advdyn.precision import float64
from advdyn.problem.instance import AbstractInstance, ProblemInstance
from advdyn.problem.losses import LeastSquares
from advdyn.solution import Solution
from advdyn.theory.drift import drift_terms
from advdyn.theory.statistics import (
    DirectionState,
    Statistics,
    direction_sum,
    observables,
    statistics,
)
from advdyn.typing import Array

EQUIVALENCE_QUANTITIES = ("eff_lr", "eff_ridge", "noise_factor")


def equivalence_applies(instance: AbstractInstance) -> bool:
    """Whether the ridge equivalence holds: least squares, regression, one centred class.

    Parameters
    ----------
    instance : AbstractInstance

    Returns
    -------
    bool
    """
    if not (isinstance(instance.loss, LeastSquares) and instance.task == "regression"
            and instance.n_components == 1):
        return False
    if isinstance(instance, ProblemInstance):  # in numpy (no eager JAX kernels): both
        return not np.any(np.asarray(instance.means))  # products vanish iff the means do
    return (not np.any(np.asarray(instance.teacher_mean))
            and not np.any(np.asarray(instance.mean_mean)))


def ls_equivalence(
    stats: Statistics, instance: AbstractInstance, gamma: Float[ArrayLike, ""]
) -> dict[str, Float[Array, ""]]:
    """``eff_lr``, ``eff_ridge`` and ``noise_factor`` at the given statistics.

    Parameters
    ----------
    stats : Statistics
        Statistics of the iterate or ODE state.
    instance : AbstractInstance
        A problem for which `equivalence_applies`.
    gamma : scalar
        The learning rate at this time.

    Returns
    -------
    dict of str to Array
        ``eff_lr = gamma h_1``, ``eff_ridge = rho / h_1``, ``noise_factor = I / (h_1^2 s^2)``.
    """
    terms = drift_terms(stats, instance)
    h1 = terms.expectations.h1[0]
    # h_1 s = s + eps n c0 (THEORY 5): dividing by it, not by h_1^2 s^2, keeps the factor
    # finite at s = 0 (noiseless, theta = theta*); at s = eps n = 0 there is no noise and the
    # factor is 1 by continuity (its value at x = eps n / s = 0)
    s = jnp.sqrt(stats.qe[0] + instance.noise**2)
    h1_s = s + instance.epsilon * jnp.sqrt(stats.norm2) * jnp.sqrt(2 / jnp.pi)
    safe = jnp.where(h1_s > 0, h1_s, 1.0)
    return {
        "eff_lr": jnp.asarray(gamma) * h1,
        "eff_ridge": terms.rho / h1,
        "noise_factor": jnp.where(h1_s > 0, terms.expectations.I[0] / safe**2, 1.0),
    }


def _ridge_field(t, y, args):
    err2, err_teacher = y
    instance, coeffs = args
    g, l, k = coeffs.evaluate(t)
    lam = instance.eigenvalues[0]
    s2 = direction_sum(lam * err2, instance) + instance.noise**2
    return (
        -2 * g * ((lam + l) * err2 + l * err_teacher) + g**2 * k * lam * s2 / instance.d,
        -g * ((lam + l) * err_teacher + l * instance.teacher2),
    )


@eqx.filter_jit
def _solve_ridge(instance, times, values, rtol, atol):
    import diffrax  # on tracing only (runs that do not solve it never import diffrax)

    coeffs = diffrax.CubicInterpolation(
        times, diffrax.backward_hermite_coefficients(times, values)
    )
    y0 = instance.initial_state()
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(_ridge_field),
        diffrax.Tsit5(),
        t0=times[0],
        t1=times[-1],
        dt0=None,
        y0=(y0.err2, y0.err_teacher),
        args=(instance, coeffs),
        saveat=diffrax.SaveAt(ts=times),
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol, jump_ts=times),
        max_steps=1_000_000,
    )

    def record(err2, err_teacher):
        state = DirectionState(err2, err_teacher, jnp.zeros((1, *err2.shape)))
        return observables(statistics(state, instance), instance)

    return jax.vmap(record)(*sol.ys)


@float64
def solve_ridge_ode(
    instance: AbstractInstance,
    times: Float[ArrayLike, " T"],
    eff_lr: Float[ArrayLike, " T"],
    eff_ridge: Float[ArrayLike, " T"],
    noise_factor: Float[ArrayLike, " T"],
    *,
    rtol: float = 1e-10,
    atol: float = 1e-20,
) -> Solution:
    """Integrate the ridge least-squares ODE driven by time-varying equivalence quantities.

    The coefficients are interpolated between the given times with cubic Hermite splines
    (diffrax), so a fine recording grid gives an accurate drive.

    Parameters
    ----------
    instance : AbstractInstance
        A problem for which `equivalence_applies` (its ``theta_0``, ``theta*``,
        spectrum and ``sigma`` define the ridge problem).
    times : array_like, shape (T,)
        Times at which the drive is given (and the result recorded).
    eff_lr, eff_ridge, noise_factor : array_like, shape (T,)
        The drive, e.g. the recorded ``eff_lr``, ``eff_ridge`` and ``noise_factor`` of an
        adversarial ODE run.
    rtol, atol : float
        Solver tolerances.

    Returns
    -------
    xarray.Dataset
        ``adv_risk`` (the adversarial risk ``R_eps`` of the ridge trajectory's statistics),
        ``clean_risk``, ``norm``, ``overlap`` on ``time``; ``method = "ridge_ode"``.

    Raises
    ------
    ValueError
        If the problem is not least squares with one centred class, or the arrays disagree
        in length.
    """
    if not equivalence_applies(instance):
        raise ValueError("the ridge equivalence needs least squares with one centred class")
    times = np.asarray(times, dtype=np.float64)
    values = np.stack([np.asarray(v, np.float64) for v in (eff_lr, eff_ridge, noise_factor)], -1)
    if values.shape[0] != times.shape[0]:
        raise ValueError(f"drive has {values.shape[0]} values for {times.shape[0]} times")
    out = _solve_ridge(instance, jnp.asarray(times), jnp.asarray(values), rtol, atol)
    return Solution(np.asarray(times), {k: np.asarray(v) for k, v in out.items()}, "ridge_ode")
