"""Learning-rate rules ``gamma_t`` (THEORY section 6).

A rule is a small immutable module called as ``rule(t, state, instance)`` where ``state``
is the current :class:`~advdyn.statistics.DirectionState` (the ODE's state, or for SGD the
state built from the iterate's own coordinates). Rules that ignore the state set
``needs_state = False`` so that simulators can skip building it; state-dependent rules
(Polyak, exact line search) plug into the same interface.
"""

from __future__ import annotations

from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp

from . import config as C

Array = jax.Array


class LearningRate(eqx.Module):
    """Base class: ``gamma_t = rule(t, state, instance)``.

    Attributes
    ----------
    needs_state : bool
        Class-level flag: whether the rule reads ``state`` and ``instance``.
    """

    needs_state: ClassVar[bool] = False

    def __call__(self, t, state=None, instance=None) -> Array:
        """Learning rate ``gamma_t`` at time ``t``.

        Parameters
        ----------
        t : scalar
            Time ``t = k/d``.
        state : DirectionState, optional
            Current state; only read when ``needs_state``.
        instance : ProblemInstance, optional
            The problem; only read when ``needs_state``.

        Returns
        -------
        Array
            A float64 scalar.
        """
        raise NotImplementedError


class Constant(LearningRate):
    """Constant rule ``gamma_t = gamma``.

    Parameters
    ----------
    gamma : float
        The learning rate.
    """

    gamma: float

    def __call__(self, t, state=None, instance=None):
        """Learning rate ``gamma_t = gamma``.

        Parameters
        ----------
        t : scalar
            Time ``t = k/d`` (only its shape and tracing matter).
        state, instance : optional
            Ignored.

        Returns
        -------
        Array
            ``gamma`` as a float64 scalar.
        """
        return jnp.asarray(self.gamma, jnp.float64) + 0.0 * jnp.asarray(t, jnp.float64)


class Decay(LearningRate):
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

    gamma0: float
    tau: float = 1.0
    beta: float = 1.0

    def __call__(self, t, state=None, instance=None):
        """Learning rate ``gamma_t = gamma0 (1 + t / tau)^(-beta)``.

        Parameters
        ----------
        t : scalar
            Time ``t = k/d``.
        state, instance : optional
            Ignored.

        Returns
        -------
        Array
            A float64 scalar.
        """
        t = jnp.asarray(t, jnp.float64)
        return self.gamma0 * (1.0 + t / self.tau) ** (-self.beta)


def make_learning_rate(config: C.LearningRateConfig) -> LearningRate:
    """Build the rule described by a validated learning-rate config.

    Parameters
    ----------
    config : advdyn.config.LearningRateConfig
        A validated learning-rate model (``constant`` or ``decay``).

    Returns
    -------
    LearningRate
        :class:`Constant` or :class:`Decay`.

    Raises
    ------
    TypeError
        For a config kind without a rule.
    """
    if isinstance(config, C.ConstantLR):
        return Constant(config.gamma)
    if isinstance(config, C.DecayLR):
        return Decay(config.gamma0, config.tau, config.beta)
    raise TypeError(f"unknown learning-rate config {config!r}")  # pragma: no cover
