"""Learning-rate rules ``gamma_t`` (THEORY section 6).

A rule is a small immutable module called as ``rule(t, state, instance)`` where ``state``
is the current [`DirectionState`][advdyn.problem.DirectionState] (the ODE's state, or for SGD the
state built from the iterate's own coordinates). Rules that ignore the state set
``needs_state = False`` so that simulators can skip building it; state-dependent rules
(Polyak, exact line search) plug into the same interface.
"""

import abc
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from equinox import AbstractClassVar
from jax.typing import ArrayLike

from advdyn import checks
from advdyn.deprecation import renamed
from advdyn.precision import as_float64, float64, widen
from advdyn.problem.instance import AbstractInstance
from advdyn.theory.drift import flow
from advdyn.theory.statistics import (
    DirectionState,
    direction_sum,
    expectations,
    statistics,
    training_objective,
)
from advdyn.typing import Array


def _parameter(x: ArrayLike) -> ArrayLike:
    # a rule parameter as a float64 array (a traced leaf: one compiled solver serves every
    # rate); anything that is not a number is kept as given, for the rule's __check_init__
    # to refuse by name (None would become NaN, "0.8" a number)
    if x is None or isinstance(x, str | bytes | bool | complex):
        return x
    return as_float64(x)


class AbstractLearningRate(eqx.Module):
    """A learning-rate rule ``gamma_t = rule(t, state, instance)``.

    Concrete rules are small final classes: [`Constant`][advdyn.theory.rates.Constant],
    [`Decay`][advdyn.theory.rates.Decay] (time only)
    and [`Polyak`][advdyn.theory.rates.Polyak], [`LineSearch`][advdyn.theory.rates.LineSearch]
    (state-dependent).

    Attributes
    ----------
    needs_state : bool
        Class-level flag: whether the rule reads ``state`` and ``instance``.
    """

    needs_state: AbstractClassVar[bool]

    @abc.abstractmethod
    def __call__(self, t: ArrayLike, state: DirectionState | None = None,
                 instance: AbstractInstance | None = None) -> Array:
        """Learning rate ``gamma_t`` at time ``t``.

        Parameters
        ----------
        t : scalar
            Time ``t = k/d``.
        state : DirectionState, optional
            Current state; only read when ``needs_state``.
        instance : AbstractInstance, optional
            The problem; only read when ``needs_state``.

        Returns
        -------
        Array
            A float64 scalar.
        """


class Constant(AbstractLearningRate):
    """Constant rule ``gamma_t = gamma``.

    Parameters
    ----------
    gamma : float
        The learning rate.
    """

    gamma: ArrayLike = eqx.field(converter=_parameter)
    needs_state: ClassVar[bool] = False

    def __check_init__(self):
        checks.positive(self.gamma, "gamma")

    def __call__(self, t, state=None, instance=None):
        """``gamma`` as a float64 scalar, whatever ``t`` (only its shape and tracing matter);
        ``state`` and ``instance`` are ignored (the contract of
        [`AbstractLearningRate`][advdyn.theory.rates.AbstractLearningRate])."""
        return jnp.asarray(self.gamma, jnp.float64) + 0.0 * jnp.asarray(t, jnp.float64)


class Decay(AbstractLearningRate):
    """Decaying rule ``gamma_t = gamma0 (1 + t / tau)^(-beta)``.

    Parameters
    ----------
    gamma0 : float
        Initial learning rate.
    tau : float
        Time scale of the decay.
    beta : float
        Decay exponent.
    """

    gamma0: ArrayLike = eqx.field(converter=_parameter)
    tau: ArrayLike = eqx.field(converter=_parameter, default=1.0)
    beta: ArrayLike = eqx.field(converter=_parameter, default=1.0)
    needs_state: ClassVar[bool] = False

    def __check_init__(self):
        checks.positive(self.gamma0, "gamma0")
        checks.positive(self.tau, "tau")
        checks.nonnegative(self.beta, "beta")

    def __call__(self, t, state=None, instance=None):
        """``gamma_t = gamma0 (1 + t / tau)^(-beta)`` as a float64 scalar; ``state`` and
        ``instance`` are ignored (the contract of
        [`AbstractLearningRate`][advdyn.theory.rates.AbstractLearningRate])."""
        t = jnp.asarray(t, jnp.float64)
        return self.gamma0 * (1.0 + t / self.tau) ** (-self.beta)


class StepDrop(AbstractLearningRate):
    """Piecewise-constant rate: ``gamma1`` for ``t < t_drop``, then ``gamma2``.

    Parameters
    ----------
    gamma1, gamma2 : float
        Rates before and after the drop.
    t_drop : float
        Time ``t = k/d`` of the drop.
    """

    gamma1: ArrayLike = eqx.field(converter=_parameter)
    gamma2: ArrayLike = eqx.field(converter=_parameter)
    t_drop: ArrayLike = eqx.field(converter=_parameter)
    needs_state: ClassVar[bool] = False

    def __check_init__(self):
        checks.positive(self.gamma1, "gamma1")
        checks.positive(self.gamma2, "gamma2")
        checks.real(self.t_drop, "t_drop")

    def __call__(self, t, state=None, instance=None):
        """``gamma1`` before ``t_drop``, ``gamma2`` from it on, as a float64 scalar; ``state``
        and ``instance`` are ignored (the contract of
        [`AbstractLearningRate`][advdyn.theory.rates.AbstractLearningRate])."""
        t = jnp.asarray(t, jnp.float64)
        return jnp.where(t < self.t_drop, self.gamma1, self.gamma2)


@float64
def objective(state: DirectionState, instance) -> Array:
    """Training objective ``R_eps + delta/2 |theta|^2`` at a per-direction state.

    Parameters
    ----------
    state : DirectionState
        ODE state or the state of an iterate.
    instance : AbstractInstance
        The problem the state belongs to.

    Returns
    -------
    Array, scalar
        The regularised adversarial risk (float64).
    """
    stats = statistics(state, instance)
    ex = expectations(stats, instance)
    return training_objective(instance.weights @ ex.adv_risk, stats.norm2, instance.ridge)


@float64
def mean_eigenvalue(instance) -> Array:
    """``tr K / d`` with ``K = sum_c pi_c K_c`` (the Polyak normalisation of THEORY 6).

    Parameters
    ----------
    instance : AbstractInstance
        The problem (per-direction or binned: sums use its multiplicity).

    Returns
    -------
    Array, scalar
        ``sum_i sum_c pi_c lambda_{c,i} / d``.
    """
    return direction_sum(instance.weights @ instance.eigenvalues, instance) / instance.d


class Polyak(AbstractLearningRate):
    """Idealised Polyak rate (THEORY 6), capped at ``gamma_max``:

        gamma_t = (Rtilde(t) - Rtilde^*) / ( (tr K / (2d)) * I(t) ),   I = sum_c pi_c I_c,

    with ``Rtilde = R_eps + delta/2 |theta|^2`` the training objective and ``Rtilde^*`` its
    minimum
    ([`advdyn.theory.stationary.adversarial_optimum`][advdyn.theory.adversarial_optimum]);
    without ridge this is THEORY's
    ``R_eps - R_eps^*``. With ``eps = 0``, noiseless least squares and ``K = lambda I`` it
    equals ``1 / lambda = d / tr K``. Negative values (a state below the optimum, possible
    for SGD by fluctuation) are clipped to 0.

    Parameters
    ----------
    min_objective : float
        ``Rtilde^*``.
    gamma_max : float
        Cap.
    """

    min_objective: ArrayLike = eqx.field(converter=_parameter)
    gamma_max: ArrayLike = eqx.field(converter=_parameter, default=10.0)
    needs_state: ClassVar[bool] = True

    def __check_init__(self):
        checks.real(self.min_objective, "min_objective")
        checks.positive(self.gamma_max, "gamma_max")

    def __call__(self, t, state=None, instance=None):
        # docstring: _STATE_RULE_DOC (shared with LineSearch)
        state = widen(state)
        stats = statistics(state, instance)
        ex = expectations(stats, instance)
        obj = training_objective(instance.weights @ ex.adv_risk, stats.norm2, instance.ridge)
        noise = instance.weights @ ex.I
        denom = 0.5 * mean_eigenvalue(instance) * noise
        # I = 0 only at an exact interpolating optimum (no noise, no attack): nothing to do
        gamma = jnp.where(denom > 0, (obj - self.min_objective) / jnp.where(denom > 0, denom, 1.0),
                          0.0)
        return jnp.clip(gamma, 0.0, self.gamma_max)


class LineSearch(AbstractLearningRate):
    """Idealised exact line search along the ODE (THEORY 6), capped at ``gamma_max``.

    Along the ODE ``dRtilde/dt = gamma A + gamma^2 C`` with ``A`` the derivative of the
    objective along the drift part of the velocity and ``C`` along the noise part
    (`advdyn.theory.drift.flow`), both by forward-mode autodiff. The rate minimising this
    instantaneous change is ``-A / (2C)``, clipped to ``[0, gamma_max]``. For SGD and the
    SDE it is evaluated at the iterate's own state, ``O(d)`` per step.

    With an attack (``eps > 0``) the noise part ``C`` contains ``eps / (2|theta|)`` times
    the noise's push on ``|theta|^2``, unbounded as ``|theta| -> 0``: from ``theta_0 = 0``
    the rule gives rates proportional to ``|theta|`` and the dynamics barely move. Start
    from a non-zero ``theta_0`` (THEORY section 2 prefers one anyway).

    Parameters
    ----------
    gamma_max : float
        Cap (also used when ``C <= 0``).
    """

    gamma_max: ArrayLike = eqx.field(converter=_parameter, default=10.0)
    needs_state: ClassVar[bool] = True

    def __check_init__(self):
        checks.positive(self.gamma_max, "gamma_max")

    def __call__(self, t, state=None, instance=None):
        # docstring: _STATE_RULE_DOC (shared with Polyak)
        state = widen(state)
        drift, noise = flow(state, instance)
        f = lambda s: objective(s, instance)  # noqa: E731
        _, A = jax.jvp(f, (state,), (drift,))
        _, Cn = jax.jvp(f, (state,), (noise,))
        safe = jnp.where(Cn > 0, Cn, 1.0)
        gamma = jnp.where(Cn > 0, -A / (2 * safe), self.gamma_max)
        return jnp.clip(gamma, 0.0, self.gamma_max)


_STATE_RULE_DOC = """{name} rate at ``state``, in ``[0, gamma_max]`` (see the class docstring).

Parameters
----------
t : scalar
    Time (unused: the rule depends on the state only).
state : DirectionState
    ODE state, or the iterate's own state for SGD and the SDE.
instance : AbstractInstance
    The problem the state belongs to.

Returns
-------
Array
    float64 scalar in ``[0, gamma_max]``.
"""
Polyak.__call__.__doc__ = _STATE_RULE_DOC.format(name="Polyak")
LineSearch.__call__.__doc__ = _STATE_RULE_DOC.format(name="Line-search")

#: old names (advdyn 0.1), served with a DeprecationWarning until 0.2
__getattr__ = renamed(__name__, {"LearningRate": "AbstractLearningRate"})  # rename29: keep
