"""Alternating mini-max: the adversary takes ``K`` PGD steps of size ``alpha`` per learner step.

The paper's adversarial training is a game: each round the adversary perturbs the data
against the current model, then the learner takes an SGD step on the perturbed data. Here
the adversary restarts from ``delta = 0`` every round (standard PGD adversarial training)
and ascends with ``K`` normalised l2 steps of length ``alpha`` projected on the ball of
radius ``eps`` ([`advdyn.adversarial.attacks.perturb`][advdyn.adversarial.attacks.perturb]); the
learner's gradient is
taken at the perturbed point (Danskin). The alternating process is then SGD on
``l_K(theta; x, y) = l(theta; x + delta_K(theta, x, y), y)`` and its SME is that of
[`EmpiricalObjective`][advdyn.sme.objectives.EmpiricalObjective] with the PGD attack.

For a linear model and a loss increasing in ``|<theta, x> - y|`` every PGD step moves
``delta`` along ``sign(r - y) theta/|theta|`` (the residual's sign never flips, since the
step increases ``|r - y|``), so ``K`` steps reach exactly ``min(K alpha, eps)``: the game
is exact adversarial training at the *effective radius* ``eps_K = min(K alpha, eps)``,
and it coincides with the exact inner maximum once ``K alpha >= eps`` [R: our derivation,
checked in ``tests/sme/test_sme_minimax.py``]. A warm-started adversary (keeping
``delta`` between rounds, "free" adversarial training) adds the adversary's state to the
SDE and an order-2 alternation cross term: `advdyn.sme.game`.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from advdyn.adversarial.attacks import Attack
from advdyn.precision import as_float64
from advdyn.sme.objectives import (
    AbstractObjective,
    EmpiricalObjective,
    linear_predict,
    squared_loss,
)
from advdyn.typing import AnyArray


def effective_radius(steps: int, alpha: float, eps: float) -> float:
    """``eps_K = min(K alpha, eps)``: the radius ``K`` l2 PGD steps reach on a linear model.

    Parameters
    ----------
    steps : int
        ``K``.
    alpha : float
        Step length.
    eps : float
        Ball radius.

    Returns
    -------
    float
    """
    return float(min(steps * alpha, eps))


def pgd_attack(steps: int, alpha: float, eps: float) -> Attack:
    """The adversary: ``K`` normalised l2 PGD steps of length ``alpha`` in the ``eps`` ball.

    Parameters
    ----------
    steps : int
        ``K >= 1``.
    alpha : float
        Step length (``rel_step = K alpha / eps`` in [`Attack`][advdyn.adversarial.attacks.Attack]).
    eps : float
        Radius.

    Returns
    -------
    Attack
    """
    if steps < 1 or alpha <= 0 or eps <= 0:
        raise ValueError("need steps >= 1, alpha > 0 and eps > 0")
    return Attack(eps, norm="l2", method="pgd", steps=int(steps), rel_step=steps * alpha / eps)


def game_objective(
    x: Float[AnyArray, "n p"], y: Float[AnyArray, " n"], steps: int, alpha: float, eps: float,
    batch: int = 1,
) -> AbstractObjective:
    """Linear least squares trained against the ``K``-step adversary, evaluated at the exact
    inner maximum (``adv_risk`` uses the endpoint rule at radius ``eps``).

    Parameters
    ----------
    x, y : arrays
        Data set.
    steps, alpha, eps
        The adversary (`pgd_attack`).
    batch : int
        Learner's mini-batch.

    Returns
    -------
    AbstractObjective
        The trained objective's loss, gradients and noise, with ``adv_risk`` at the exact
        inner maximum.
    """
    trained = EmpiricalObjective(x, y, linear_predict, squared_loss,
                                 pgd_attack(steps, alpha, eps), None, None, "adversarial",
                                 batch, int(x.shape[1]))
    exact = EmpiricalObjective(x, y, linear_eps=as_float64(eps), n_params=int(x.shape[1]))
    return GameObjective(trained, exact)


class GameObjective(AbstractObjective):
    """An objective trained as ``trained`` whose ``adv_risk`` is the loss of ``exact``.

    Attributes
    ----------
    trained : AbstractObjective
        What SGD descends (loss, gradients, noise, the other observables).
    exact : AbstractObjective
        Whose loss is recorded as ``adv_risk`` (the exact inner maximum).
    """

    trained: AbstractObjective
    exact: AbstractObjective

    @property
    def dim(self) -> int:
        """Number of parameters ``p`` (the trained objective's)."""
        return self.trained.dim

    @property
    def noise_dim(self) -> int:
        """Brownian dimension (the trained objective's)."""
        return self.trained.noise_dim

    def loss(self, theta: Float[AnyArray, " p"]) -> Float[Array, ""]:
        """The trained objective's loss."""
        return self.trained.loss(theta)

    def gradient(self, theta: Float[AnyArray, " p"]) -> Float[Array, " p"]:
        """The trained objective's gradient."""
        return self.trained.gradient(theta)

    def noise_factor(self, theta: Float[AnyArray, " p"]) -> Float[Array, "p m"]:
        """The trained objective's noise factor."""
        return self.trained.noise_factor(theta)

    def noise_apply(self, theta: Float[AnyArray, " p"], z: Float[AnyArray, " m"]
                    ) -> Float[Array, " p"]:
        """The trained objective's ``F(theta) z``."""
        return self.trained.noise_apply(theta, z)

    def stochastic_gradient(self, theta: Float[AnyArray, " p"], key: Array) -> Float[Array, " p"]:
        """The trained objective's SGD gradient."""
        return self.trained.stochastic_gradient(theta, key)

    def observables(self, theta: Float[AnyArray, " p"]) -> dict[str, Array]:
        """The trained objective's observables, ``adv_risk`` the loss of ``exact``."""
        return {**self.trained.observables(theta), "adv_risk": self.exact.loss(theta)}


@eqx.filter_jit
def _descend(objective, theta0, lr, steps_per_record, n_records: int):
    def record(theta, _):
        theta = jax.lax.fori_loop(0, steps_per_record,
                                  lambda i, th: th - lr * objective.gradient(th), theta)
        return theta, objective.observables(theta)["adv_risk"]

    _, risks = jax.lax.scan(record, theta0, None, length=n_records)
    return jnp.concatenate([objective.observables(theta0)["adv_risk"][None], risks])


def alternating_descent(objective: AbstractObjective, theta0: Float[AnyArray, " p"], lr: float,
                        t_max: float, n_times: int = 41) -> tuple[np.ndarray, np.ndarray]:
    """Full-batch alternating game: adversary's ``K`` PGD steps, then one learner step.

    The deterministic skeleton of the alternating process (no sampling noise); as
    ``lr -> 0`` it follows the drift of the SME, the gradient flow of ``f_K``.

    Parameters
    ----------
    objective : AbstractObjective
        E.g. `game_objective` (its ``adv_risk`` observable is recorded).
    theta0 : array
        Start.
    lr : float
        Learner's step.
    t_max : float
        Horizon in ``t = k lr``.
    n_times : int
        Records (including 0).

    Returns
    -------
    times, adv_risk : ndarray
    """
    per = max(1, round(t_max / lr / (n_times - 1)))
    risks = _descend(objective, jnp.asarray(theta0, jnp.float64), jnp.asarray(lr, jnp.float64),
                     jnp.asarray(per), n_times - 1)
    return np.arange(n_times) * per * lr, np.asarray(risks)


def exact_game_loss_gap(x, y, theta, steps: int, alpha: float, eps: float) -> float:
    """``|f_K(theta) - R_{eps_K}(theta)|`` on the data: 0 up to round-off (linear model).

    Parameters
    ----------
    x, y : arrays
        Data set.
    theta : array
        Parameters.
    steps, alpha, eps
        The adversary.

    Returns
    -------
    float
    """
    game = game_objective(x, y, steps, alpha, eps)
    exact = EmpiricalObjective(x, y, linear_eps=effective_radius(steps, alpha, eps),
                               n_params=int(x.shape[1]))
    return float(np.abs(jax.device_get(game.loss(theta) - exact.loss(theta))))
