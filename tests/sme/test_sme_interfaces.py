"""The SME room's interfaces declare their methods abstract (equinox style): a class that
misses one fails when it is built, naming the method, not deep inside a jitted solve."""

from __future__ import annotations

import jax.numpy as jnp
import pytest

from advdyn.sme import SME, AbstractGame, AbstractObjective, GameSME, GaussianLeastSquares
from advdyn.sme.equations import AbstractSME
from advdyn.sme.minimax import game_objective


class NoNoise(AbstractObjective):
    """An objective that forgets ``noise_factor`` and ``stochastic_gradient``."""

    @property
    def dim(self) -> int:
        return 1

    @property
    def noise_dim(self) -> int:
        return 1

    def loss(self, theta):
        return jnp.sum(theta**2)

    def observables(self, theta):
        return {}


class HalfGame(AbstractGame):
    rho: float = 1.0
    eps: float = 1.0


class DriftOnly(AbstractSME):
    eta: float = 0.1
    order: int = 1

    def drift(self, z):
        return -z


@pytest.mark.parametrize(("cls", "missing"), [
    (NoNoise, "noise_factor"), (HalfGame, "grad_theta"), (DriftOnly, "diffusion")])
def test_a_class_missing_an_abstract_method_cannot_be_built(cls, missing):
    with pytest.raises(TypeError, match=missing):
        cls()


def test_solvable_equations_share_one_interface():
    ob = GaussianLeastSquares(jnp.ones(3), jnp.ones(3), 0.5, eps=0.1)
    assert isinstance(SME(ob, 0.1), AbstractSME)
    assert issubclass(GameSME, AbstractSME)
    assert not issubclass(GameSME, SME)
    # the K-step game's objective is an interface implementation, not a subclass of a
    # concrete objective
    obj = game_objective(jnp.eye(3), jnp.ones(3), 1, 0.1, 0.5)
    assert isinstance(obj, AbstractObjective)
    assert type(obj).__mro__[1] is AbstractObjective
