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
    """Base class: ``gamma_t = rule(t, state, instance)``."""

    needs_state: ClassVar[bool] = False

    def __call__(self, t, state=None, instance=None) -> Array:
        """Learning rate at time ``t`` (a float64 scalar)."""
        raise NotImplementedError


class Constant(LearningRate):
    """``gamma_t = gamma``."""

    gamma: float

    def __call__(self, t, state=None, instance=None):
        return jnp.asarray(self.gamma, jnp.float64) + 0.0 * jnp.asarray(t, jnp.float64)


class Decay(LearningRate):
    """``gamma_t = gamma0 (1 + t / tau)^(-beta)``."""

    gamma0: float
    tau: float = 1.0
    beta: float = 1.0

    def __call__(self, t, state=None, instance=None):
        t = jnp.asarray(t, jnp.float64)
        return self.gamma0 * (1.0 + t / self.tau) ** (-self.beta)


def make_learning_rate(config: C.LearningRateConfig) -> LearningRate:
    """Build the rule described by a validated learning-rate config."""
    if isinstance(config, C.ConstantLR):
        return Constant(config.gamma)
    if isinstance(config, C.DecayLR):
        return Decay(config.gamma0, config.tau, config.beta)
    raise TypeError(f"unknown learning-rate config {config!r}")  # pragma: no cover
