"""Alternating two-player SGD with a persistent adversary and its modified equations [R].

SME section 2 says that alternating PGD "adds the adversary's state and order-2 cross
terms". Here the adversary keeps its perturbation ``delta`` between rounds ("free"
adversarial training, a universal perturbation): with ``alpha = rho eta``, round ``k`` is

    delta_{k+1} = P_eps(delta_k + alpha g_delta(theta_k, delta_k; xi_k)),
    theta_{k+1} = theta_k - eta g_theta(theta_k, delta_{k+1}; xi'_k),

the adversary ascending on one fresh sample, then the learner descending on another fresh
sample *at the updated perturbation* (alternation); ``P_eps`` projects on the l2 ball of
radius ``eps`` (``eps = inf``: none). ``g`` are one-sample gradients of the per-sample loss,
``E g = grad f`` for the population game ``f(theta, delta)``.

Modified equations (our derivation) [R]
---------------------------------------
In the time ``tau = k eta`` with the joint state ``z = (theta, delta)``:

* order 1: ``dZ = b dtau + sqrt(eta) S dW`` with ``b = (-grad_theta f, rho grad_delta f)``
  and ``S S^T = diag(Sigma_theta, rho^2 Sigma_delta)`` (the two samples are independent, so
  there is no cross covariance);
* order 2: drift ``b + eta (c - J b / 2)``, same diffusion, where ``J`` is the Jacobian of
  ``b`` and ``c = (-rho f_{theta delta} grad_delta f, 0)`` the alternation term.

Derivation: one round's mean is exactly ``E[delta' - delta] = alpha grad_delta f`` and
``E[theta' - theta] = -eta E grad_theta f(theta, delta') = -eta grad_theta f
- eta alpha f_{theta delta} grad_delta f + O(eta^3)``, i.e. ``eta b + eta^2 c + O(eta^3)``;
its second moment is ``eta^2 (b b^T + S S^T) + O(eta^3)``. The SDE with drift
``b + eta b2`` moves in time ``eta`` by ``eta b + eta^2 (b2 + J b / 2) + O(eta^3)`` on average
(Ito-Taylor; the diffusion's contribution to the mean is ``O(eta^3)``) with the same second
moment to ``O(eta^3)``. Matching the means gives ``b2 = c - J b / 2``; by Milstein's theorem
(as in Li, Tai & E) the weak error is then ``O(eta^2)`` on a finite horizon. With one player
(``b = -grad f``, ``J = -H``, ``c = 0``) this is the usual ``-(grad f + (eta/2) H grad f)``.
Without ``c`` (``alternation=False``) it is the order-2 SME of the *simultaneous* update
(both gradients at ``(theta_k, delta_k)``), which is only first order for the alternating
one. Written out, the learner's order-2 drift is ``-grad_theta f - (eta/2)(f_{theta theta}
grad_theta f + rho f_{theta delta} grad_delta f)`` (alternating) against ``... - rho f_{theta
delta} grad_delta f`` with the opposite sign (simultaneous).

The equations describe the interior of the ball: with an active projection the process is
reflected and neither SME applies (the weak-order tests use ``eps = inf``).

Games
-----
[`QuadraticGame`][advdyn.sme.game.QuadraticGame]
    ``f = Delta^T A Delta / 2 + Delta^T B delta - delta^T C delta / 2`` (``Delta = theta -
    theta*``) with additive Gaussian gradient noise: the local model of any smooth game at
    a saddle point. Its rounds and SMEs are linear, so means and covariances are exact
    ([`quadratic_game_moments`][advdyn.sme.game.quadratic_game_moments]): weak errors without Monte
    Carlo noise.
[`PerturbationGame`][advdyn.sme.game.PerturbationGame]
    Linear least squares against a universal perturbation of the inputs,
    ``l = (y - <theta, x + delta>)^2 / 2``, ``x ~ N(0, K)``, ``y = <theta*, x> + sigma xi``;
    gradients and gradient covariances in closed form.
"""


import abc
from typing import TYPE_CHECKING

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
from equinox import AbstractVar
from jaxtyping import Array, Float

from advdyn import checks
from advdyn.adversarial import attacks
from advdyn.deprecation import renamed, renamed_keyword
from advdyn.precision import as_float64, float64
from advdyn.sme.equations import AbstractSME, recorded_replicates, step_grid
from advdyn.solution import Solution
from advdyn.typing import AnyArray


def _radius(x):
    return as_float64(np.inf if x is None else x)


class AbstractGame(eqx.Module):
    """Interface of a two-player game ``min_theta max_delta f(theta, delta)`` played by SGD.

    Subclasses give the population loss, one-sample gradients and factors of the gradient
    covariances; gradients default to autodiff of [`loss`][advdyn.sme.game.AbstractGame.loss].

    Attributes
    ----------
    rho : float
        Ratio of the adversary's step to the learner's, ``alpha = rho eta``.
    eps : float
        Radius of the adversary's l2 ball (``inf``: no projection).
    """

    if TYPE_CHECKING:  # mypy reads AbstractVar as a dataclass field; a property it is not
        @property
        def rho(self) -> Array:
            """The adversary's step relative to the learner's."""
            ...

        @property
        def eps(self) -> Array:
            """The adversary's radius."""
            ...

    else:
        rho: AbstractVar[Array]
        eps: AbstractVar[Array]

    @property
    @abc.abstractmethod
    def dim_theta(self) -> int:
        """Number of learner parameters."""

    @property
    @abc.abstractmethod
    def dim_delta(self) -> int:
        """Number of adversary parameters."""

    @property
    @abc.abstractmethod
    def noise_dims(self) -> tuple[int, int]:
        """Columns of [`noise_theta`][advdyn.sme.game.AbstractGame.noise_theta] and
        [`noise_delta`][advdyn.sme.game.AbstractGame.noise_delta]."""

    @abc.abstractmethod
    def loss(self, theta: Float[AnyArray, " p"], delta: Float[AnyArray, " q"]) -> Float[Array, ""]:
        """Population loss ``f(theta, delta)``."""

    def grad_theta(self, theta: Float[AnyArray, " p"], delta: Float[AnyArray, " q"]
                   ) -> Float[Array, " p"]:
        """``grad_theta f``."""
        return jax.grad(self.loss, 0)(theta, delta)

    def grad_delta(self, theta: Float[AnyArray, " p"], delta: Float[AnyArray, " q"]
                   ) -> Float[Array, " q"]:
        """``grad_delta f``."""
        return jax.grad(self.loss, 1)(theta, delta)

    @abc.abstractmethod
    def sample_grad_theta(self, theta: Float[AnyArray, " p"], delta: Float[AnyArray, " q"],
                          key: Array) -> Float[Array, " p"]:
        """Learner's one-sample gradient from the draw ``key``."""

    @abc.abstractmethod
    def sample_grad_delta(self, theta: Float[AnyArray, " p"], delta: Float[AnyArray, " q"],
                          key: Array) -> Float[Array, " q"]:
        """Adversary's one-sample gradient from the draw ``key``."""

    @abc.abstractmethod
    def noise_theta(self, theta: Float[AnyArray, " p"], delta: Float[AnyArray, " q"]
                    ) -> Float[Array, "p m"]:
        """``F`` with ``F F^T = Cov(g_theta)``."""

    @abc.abstractmethod
    def noise_delta(self, theta: Float[AnyArray, " p"], delta: Float[AnyArray, " q"]
                    ) -> Float[Array, "q n"]:
        """``F`` with ``F F^T = Cov(g_delta)``."""

    @abc.abstractmethod
    def observables(self, theta: Float[AnyArray, " p"], delta: Float[AnyArray, " q"]
                    ) -> dict[str, Array]:
        """Recorded scalars: ``loss``, ``dist2 = |theta - theta*|^2``, ``delta2 = |delta|^2``."""

    def split(self, z: Float[AnyArray, " p+q"]) -> tuple[Array, Array]:
        """``z -> (theta, delta)``."""
        z = jnp.asarray(z)
        return z[: self.dim_theta], z[self.dim_theta:]


def _project_l2(delta: Float[Array, " q"], eps) -> Float[Array, " q"]:
    """``delta`` projected on the l2 ball of radius ``eps`` (identity for ``eps = inf``)."""
    return attacks.project(delta[None], eps, "l2")[0]


@float64
def game_step(game: AbstractGame, eta, theta: Float[AnyArray, " p"], delta: Float[AnyArray, " q"],
              key: Array, alternating: bool = True) -> tuple[Array, Array]:
    """One round: the adversary's projected ascent step, then the learner's descent step.

    Parameters
    ----------
    game : AbstractGame
        The game.
    eta : float
        Learner's step (the adversary's is ``rho eta``).
    theta, delta : Array
        Current state.
    key : jax.random key
        The round's draw: the adversary's sample from ``fold_in(key, 0)``, the learner's from
        ``fold_in(key, 1)``.
    alternating : bool
        ``True``: the learner's gradient at the updated ``delta``; ``False``: at the old one
        (simultaneous play).

    Returns
    -------
    theta, delta : Array
        The next state.
    """
    k_adv, k_learn = jax.random.fold_in(key, 0), jax.random.fold_in(key, 1)
    new_delta = _project_l2(delta + game.rho * eta * game.sample_grad_delta(theta, delta, k_adv),
                        game.eps)
    at = new_delta if alternating else delta
    return theta - eta * game.sample_grad_theta(theta, at, k_learn), new_delta


class GameSME(AbstractSME):
    """Order-1 or order-2 SME of the alternating (or simultaneous) game in ``tau = k eta``.

    The state is ``z = (theta, delta)`` concatenated; see the module docstring for the
    formulas. Usable with [`advdyn.sme.solve_sme`][advdyn.sme.solve_sme] (``theta0`` is the joint
    ``z0``).

    Attributes
    ----------
    game : AbstractGame
        The game.
    eta : float
        Learner's step.
    order : {1, 2}
        Order of the modified drift.
    alternation : bool
        Include the alternation term ``c`` in the order-2 drift (``False``: the order-2 SME
        of simultaneous play).
    """

    game: AbstractGame
    eta: Array | float = eqx.field(converter=as_float64)
    order: int = eqx.field(static=True, default=1)
    alternation: bool = eqx.field(static=True, default=True)

    @property
    def noise_dim(self) -> int:
        """Brownian dimension: the learner's plus the adversary's noise columns."""
        return sum(self.game.noise_dims)

    def first_order_drift(self, z: Float[AnyArray, " p+q"]) -> Float[Array, " p+q"]:
        """``b = (-grad_theta f, rho grad_delta f)``."""
        theta, delta = self.game.split(z)
        return jnp.concatenate([-self.game.grad_theta(theta, delta),
                                self.game.rho * self.game.grad_delta(theta, delta)])

    def alternation_term(self, z: Float[AnyArray, " p+q"]) -> Float[Array, " p+q"]:
        """``c = (-rho f_{theta delta} grad_delta f, 0)`` (forward-mode derivative of
        ``grad_theta f`` in ``delta`` along ``grad_delta f``)."""
        theta, delta = self.game.split(z)
        gd = self.game.grad_delta(theta, delta)
        _, cross = jax.jvp(lambda d: self.game.grad_theta(theta, d), (delta,), (gd,))
        return jnp.concatenate([-self.game.rho * cross, jnp.zeros_like(delta)])

    def drift(self, z: Float[AnyArray, " p+q"]) -> Float[Array, " p+q"]:
        """``b`` (order 1) or ``b + eta (c - J b / 2)`` (order 2; ``c`` if ``alternation``)."""
        b = self.first_order_drift(z)
        if self.order == 1:
            return b
        _, jb = jax.jvp(self.first_order_drift, (z,), (b,))
        corr = -0.5 * jb
        if self.alternation:
            corr = corr + self.alternation_term(z)
        return b + self.eta * corr

    def diffusion(self, z: Float[AnyArray, " p+q"]) -> Float[Array, "p+q m"]:
        """``sqrt(eta) diag(F_theta, rho F_delta)`` as a dense matrix."""
        theta, delta = self.game.split(z)
        ft = self.game.noise_theta(theta, delta)
        fd = self.game.rho * self.game.noise_delta(theta, delta)
        top = jnp.concatenate([ft, jnp.zeros((ft.shape[0], fd.shape[1]))], axis=1)
        bottom = jnp.concatenate([jnp.zeros((fd.shape[0], ft.shape[1])), fd], axis=1)
        return jnp.sqrt(self.eta) * jnp.concatenate([top, bottom], axis=0)

    def diffusion_operator(self, z: Float[AnyArray, " p+q"]) -> lx.MatrixLinearOperator:
        """[`diffusion`][advdyn.sme.game.GameSME.diffusion] as a lineax operator (for diffrax's
        ``ControlTerm``)."""
        return lx.MatrixLinearOperator(self.diffusion(z))

    def observables(self, z: Float[AnyArray, " p+q"]) -> dict[str, Array]:
        """The game's observables at ``z``."""
        return self.game.observables(*self.game.split(z))


def _game_step(model, state, key):
    game, eta, alternating = model
    return game_step(game, eta, *state, key, alternating)


def _game_observe(model, state):
    return model[0].observables(*state)


@float64
def simulate_game(
    game: AbstractGame,
    eta: float,
    theta0: Float[AnyArray, " p"],
    delta0: Float[AnyArray, " q"],
    key: Array,
    *,
    t_max: float,
    n_times: int = 21,
    replicates: int | None = None,
    alternating: bool = True,
    chunk: int | None = None,
    paths: int | None = None,  # rename29: keep (deprecated: replicates)
) -> Solution:
    """Many independent runs of the game (vmapped), recorded in ``tau = k eta``.

    Parameters
    ----------
    game : AbstractGame
        The game.
    eta : float
        Learner's step.
    theta0, delta0 : Array
        Initial state.
    key : jax.random key
        Run ``r`` uses ``fold_in(key, r)``, its round ``k`` ``fold_in(fold_in(key, r), k)``.
    t_max : float
        Horizon.
    n_times : int
        Requested number of records (step-aligned).
    replicates : int, optional
        Number of runs (default 100).
    alternating : bool
        Alternating (default) or simultaneous play ([`game_step`][advdyn.sme.game.game_step]).
    chunk : int, optional
        Runs per vmapped batch.
    paths : int, optional
        Deprecated name of ``replicates`` (until advdyn 0.2); passing both is a
        ``TypeError``.

    Returns
    -------
    Solution
        ``ys[name]`` of shape ``(replicates, T)``, ``method = "game"``.
    """
    replicates = renamed_keyword("advdyn.sme.simulate_game", "paths", paths,  # rename29: keep
                                 "replicates", replicates, 100)
    ts, stride, _ = step_grid(t_max, eta, n_times)
    model = (game, jnp.asarray(eta, jnp.float64), bool(alternating))
    state0 = (jnp.asarray(theta0, jnp.float64), jnp.asarray(delta0, jnp.float64))
    ys = recorded_replicates(_game_step, _game_observe, model, state0, key,
                             jnp.arange(replicates), jnp.asarray(stride), len(ts) - 1,
                             int(chunk or replicates))
    ys = {k: np.asarray(v) for k, v in ys.items()}
    stats = {"eta": float(eta), "rho": float(game.rho), "replicates": int(replicates),
             "alternating": bool(alternating), "stream": "fold_in(key, r), fold_in(., k)"}
    return Solution(np.asarray(ts), ys, "game", replicated=True, stats=stats)


def _check_game(rho, eps, shapes: dict[str, tuple[tuple, tuple]]) -> None:
    """Refuse a non-positive ``rho``/``eps`` and arrays of the wrong shape (a clear error now,
    not a shape error inside a solver)."""
    checks.positive(rho, "rho")
    if not float(eps) > 0:  # eps = inf (no projection) is allowed: not checks.positive
        raise ValueError(f"eps must be positive, got {eps}")
    for name, (got, want) in shapes.items():
        if tuple(got) != tuple(want):
            raise ValueError(f"{name} must have shape {tuple(want)}, got {tuple(got)}")


class QuadraticGame(AbstractGame):
    """Quadratic game with additive Gaussian gradient noise [R].

    ``f = Delta^T A Delta / 2 + Delta^T B delta - delta^T C delta / 2`` with ``Delta = theta -
    theta*``: ``grad_theta f = A Delta + B delta``, ``grad_delta f = B^T Delta - C delta``,
    saddle point ``(theta*, 0)`` when ``A`` and ``C`` are positive definite. One-sample
    gradients add ``L_theta N(0, I)`` and ``L_delta N(0, I)``.

    Attributes
    ----------
    a : Array, shape (p, p)
        Learner's curvature (symmetric).
    b : Array, shape (p, q)
        Coupling ``f_{theta delta}``.
    c : Array, shape (q, q)
        Adversary's concavity (symmetric).
    theta_star : Array, shape (p,)
        Saddle point's ``theta``.
    noise_theta_factor : Array, shape (p, m)
        ``L_theta``.
    noise_delta_factor : Array, shape (q, n)
        ``L_delta``.
    rho : float
        ``alpha / eta``.
    eps : float
        Ball radius (``inf``: no projection; needed for
        [`quadratic_game_moments`][advdyn.sme.game.quadratic_game_moments]).
    """

    a: Array = eqx.field(converter=as_float64)
    b: Array = eqx.field(converter=as_float64)
    c: Array = eqx.field(converter=as_float64)
    theta_star: Array = eqx.field(converter=as_float64)
    noise_theta_factor: Array = eqx.field(converter=as_float64)
    noise_delta_factor: Array = eqx.field(converter=as_float64)
    rho: Array = eqx.field(converter=as_float64, default=1.0, kw_only=True)
    eps: Array = eqx.field(converter=_radius, default=float("inf"), kw_only=True)

    def __check_init__(self):
        p, q = self.a.shape[0], self.c.shape[0]
        m, n = self.noise_theta_factor.shape[-1], self.noise_delta_factor.shape[-1]
        _check_game(self.rho, self.eps, {
            "a": (self.a.shape, (p, p)), "b": (self.b.shape, (p, q)),
            "c": (self.c.shape, (q, q)), "theta_star": (self.theta_star.shape, (p,)),
            "noise_theta_factor": (self.noise_theta_factor.shape, (p, m)),
            "noise_delta_factor": (self.noise_delta_factor.shape, (q, n)),
        })

    @property
    def dim_theta(self) -> int:
        """``p``."""
        return int(self.a.shape[0])

    @property
    def dim_delta(self) -> int:
        """``q``."""
        return int(self.c.shape[0])

    @property
    def noise_dims(self) -> tuple[int, int]:
        """``(m, n)``."""
        return int(self.noise_theta_factor.shape[1]), int(self.noise_delta_factor.shape[1])

    def loss(self, theta, delta):
        """``f(theta, delta)``."""
        dt = theta - self.theta_star
        return 0.5 * dt @ self.a @ dt + dt @ self.b @ delta - 0.5 * delta @ self.c @ delta

    def sample_grad_theta(self, theta, delta, key):
        """``A Delta + B delta + L_theta N(0, I)``."""
        z = jax.random.normal(key, (self.noise_dims[0],), theta.dtype)
        return self.grad_theta(theta, delta) + self.noise_theta_factor @ z

    def sample_grad_delta(self, theta, delta, key):
        """``B^T Delta - C delta + L_delta N(0, I)``."""
        z = jax.random.normal(key, (self.noise_dims[1],), theta.dtype)
        return self.grad_delta(theta, delta) + self.noise_delta_factor @ z

    def noise_theta(self, theta, delta):
        """``L_theta`` (constant)."""
        return jnp.asarray(self.noise_theta_factor)

    def noise_delta(self, theta, delta):
        """``L_delta`` (constant)."""
        return jnp.asarray(self.noise_delta_factor)

    def observables(self, theta, delta):
        """``loss``, ``dist2 = |theta - theta*|^2`` and ``delta2 = |delta|^2``."""
        return {"loss": self.loss(theta, delta),
                "dist2": jnp.sum((theta - self.theta_star) ** 2),
                "delta2": jnp.sum(delta**2)}


class GameMoments(eqx.Module):
    """Exact means and covariances of ``w = (theta - theta*, delta)`` on ``tau_k = k eta``.

    Attributes
    ----------
    ts : ndarray, shape (T,)
        Times ``k eta``.
    means, covs : dict of str to ndarray
        ``"game"`` (the discrete rounds), ``"sme1"``, ``"sme2"`` and ``"sme2_nocross"``
        (order 2 without the alternation term): shapes ``(T, p+q)`` and ``(T, p+q, p+q)``.
    dim_theta : int
        ``p``.
    """

    ts: np.ndarray
    means: dict
    covs: dict
    dim_theta: int = eqx.field(static=True)

    def observable(self, method: str, name: str = "dist2") -> np.ndarray:
        """``E |theta - theta*|^2`` (``"dist2"``) or ``E |delta|^2`` (``"delta2"``)."""
        sl = slice(None, self.dim_theta) if name == "dist2" else slice(self.dim_theta, None)
        if name not in ("dist2", "delta2"):
            raise ValueError(f"unknown observable {name!r}")
        m, c = self.means[method][:, sl], self.covs[method][:, sl, sl]
        return np.sum(m**2, axis=1) + np.trace(c, axis1=1, axis2=2)

    def weak_error(self, method: str, name: str = "dist2") -> float:
        """``|E g(z_n) - E g(Z_T)|`` at the last step for the SME ``method``."""
        return float(abs(self.observable("game", name)[-1] - self.observable(method, name)[-1]))


@float64
def quadratic_game_moments(game: QuadraticGame, theta0, delta0, eta: float, t_max: float,
                           alternating: bool = True) -> GameMoments:
    """Exact first and second moments of the game's rounds and of its SMEs (NumPy float64).

    The rounds are affine with additive noise, ``w' = M w + noise``: with ``D_alpha =
    [[I, 0], [alpha B^T, I - alpha C]]`` (the adversary's step) and ``L_eta = [[I - eta A,
    -eta B], [0, I]]`` (the learner's), ``M = L_eta D_alpha`` and the noise covariance
    ``L_eta diag(0, alpha^2 Sigma_delta) L_eta^T + diag(eta^2 Sigma_theta, 0)`` (alternating),
    or ``M = I + eta G_1`` and ``eta^2 diag(Sigma_theta, rho^2 Sigma_delta)`` (simultaneous).
    The SMEs are linear, ``dW = G W dtau + sqrt(eta) S dB``: the mean is ``exp(G tau) w0`` and
    the covariance solves ``P' = G P + P G^T + eta S S^T``, both through one matrix
    exponential per step.

    Parameters
    ----------
    game : QuadraticGame
        With ``eps = inf``.
    theta0, delta0 : array
        Deterministic start.
    eta : float
        Learner's step; rounds ``k = 0 .. floor(t_max / eta)``.
    t_max : float
        Horizon.
    alternating : bool
        Moments of alternating (default) or simultaneous rounds (the SMEs are the same).

    Returns
    -------
    GameMoments
    """
    from scipy.linalg import expm

    if np.isfinite(float(game.eps)):
        raise ValueError("exact moments need eps = inf (no projection)")
    a, b, c = (np.asarray(v, np.float64) for v in (game.a, game.b, game.c))
    p, q = a.shape[0], c.shape[0]
    n = p + q
    rho, alpha = float(game.rho), float(game.rho) * eta
    lt, ld = np.asarray(game.noise_theta_factor), np.asarray(game.noise_delta_factor)
    st, sd = lt @ lt.T, ld @ ld.T
    g1 = np.block([[-a, -b], [rho * b.T, -rho * c]])
    cross = np.block([[-rho * b @ b.T, rho * b @ c], [np.zeros((q, p)), np.zeros((q, q))]])
    diff = np.block([[st, np.zeros((p, q))], [np.zeros((q, p)), rho**2 * sd]])
    if alternating:
        adv = np.block([[np.eye(p), np.zeros((p, q))], [alpha * b.T, np.eye(q) - alpha * c]])
        learn = np.block([[np.eye(p) - eta * a, -eta * b], [np.zeros((q, p)), np.eye(q)]])
        step = learn @ adv
        noise = (learn @ np.block([[np.zeros((p, p)), np.zeros((p, q))],
                                   [np.zeros((q, p)), alpha**2 * sd]]) @ learn.T
                 + np.block([[eta**2 * st, np.zeros((p, q))], [np.zeros((q, p)),
                                                                np.zeros((q, q))]]))
    else:
        step = np.eye(n) + eta * g1
        noise = eta**2 * diff
    w0 = np.concatenate([np.asarray(theta0, np.float64) - np.asarray(game.theta_star),
                         np.asarray(delta0, np.float64)])
    k = int(np.floor(t_max / eta + 1e-9))
    game_m, game_c = [w0], [np.zeros((n, n))]
    for _ in range(k):
        game_m.append(step @ game_m[-1])
        game_c.append(step @ game_c[-1] @ step.T + noise)
    means: dict[str, np.ndarray] = {"game": np.stack(game_m)}
    covs: dict[str, np.ndarray] = {"game": np.stack(game_c)}

    def sme(gen):
        # Van Loan: expm([[G, eta D], [0, -G^T]] h) gives the covariance increment
        vl = np.block([[gen, eta * diff], [np.zeros((n, n)), -gen.T]])
        e = expm(vl * eta)
        phi = e[:n, :n]
        qd = e[:n, n:] @ phi.T
        ms, cs = [w0], [np.zeros((n, n))]
        for _ in range(k):
            ms.append(phi @ ms[-1])
            cs.append(phi @ cs[-1] @ phi.T + qd)
        return np.stack(ms), np.stack(cs)

    gens = {"sme1": g1, "sme2": g1 + eta * (cross - 0.5 * g1 @ g1),
            "sme2_nocross": g1 - 0.5 * eta * g1 @ g1}
    for name, gen in gens.items():
        means[name], covs[name] = sme(gen)
    return GameMoments(np.arange(k + 1) * eta, means, covs, p)


class PerturbationGame(AbstractGame):
    """Linear least squares against a universal input perturbation (eigenbasis of ``K``) [R].

    Per-sample loss ``l = (y - <theta, x + delta>)^2 / 2``, ``x ~ N(0, K)``, ``y = <theta*,
    x> + sigma xi``. With ``Delta = theta - theta*``, ``m = <theta, delta>``, ``s^2 = Delta^T
    K Delta + sigma^2`` and the residual ``u = <theta, x + delta> - y ~ N(m, s^2)``:

        f = (s^2 + m^2) / 2,   grad_theta f = K Delta + m delta,   grad_delta f = m theta,
        Cov(g_theta) = (m^2 + s^2) K + K Delta Delta^T K + m (K Delta delta^T
                       + delta Delta^T K) + s^2 delta delta^T,
        Cov(g_delta) = s^2 theta theta^T

    (``g_theta = u (x + delta)``, ``g_delta = u theta``; Gaussian fourth moments). The
    adversary's best response is on the sphere of radius ``eps`` along ``+-theta``, so the
    projection is active at equilibrium; [`game_step`][advdyn.sme.game.game_step] and the SMEs
    (interior only)
    apply to both regimes, the SMEs' order only while the projection is inactive.

    Attributes
    ----------
    eigenvalues : Array, shape (d,)
        Spectrum of ``K``.
    theta_star : Array, shape (d,)
        Teacher.
    sigma : float
        Label noise.
    rho : float
        ``alpha / eta``.
    eps : float
        Ball radius (``inf``: none).
    """

    eigenvalues: Array = eqx.field(converter=as_float64)
    theta_star: Array = eqx.field(converter=as_float64)
    sigma: Array = eqx.field(converter=as_float64)
    rho: Array = eqx.field(converter=as_float64, default=1.0, kw_only=True)
    eps: Array = eqx.field(converter=_radius, default=float("inf"), kw_only=True)

    def __check_init__(self):
        d = self.theta_star.shape[0]
        _check_game(self.rho, self.eps, {"eigenvalues": (self.eigenvalues.shape, (d,))})

    @property
    def dim_theta(self) -> int:
        """``d``."""
        return int(self.theta_star.shape[0])

    @property
    def dim_delta(self) -> int:
        """``d``."""
        return self.dim_theta

    @property
    def noise_dims(self) -> tuple[int, int]:
        """``(d, 1)``: ``Cov(g_delta)`` has rank one."""
        return self.dim_theta, 1

    def _parts(self, theta, delta):
        dt = theta - self.theta_star
        return dt, theta @ delta, jnp.sum(self.eigenvalues * dt**2) + self.sigma**2

    def loss(self, theta, delta):
        """``(s^2 + m^2) / 2``."""
        _, m, s2 = self._parts(theta, delta)
        return 0.5 * (s2 + m**2)

    def grad_theta(self, theta, delta):
        """``K Delta + m delta``."""
        dt, m, _ = self._parts(theta, delta)
        return self.eigenvalues * dt + m * delta

    def grad_delta(self, theta, delta):
        """``m theta``."""
        _, m, _ = self._parts(theta, delta)
        return m * theta

    def _residual(self, theta, delta, key):
        kx, kn = jax.random.split(key)
        x = jnp.sqrt(self.eigenvalues) * jax.random.normal(kx, theta.shape, theta.dtype)
        y = x @ self.theta_star + self.sigma * jax.random.normal(kn, (), theta.dtype)
        return theta @ (x + delta) - y, x

    def sample_grad_theta(self, theta, delta, key):
        """``u (x + delta)``."""
        u, x = self._residual(theta, delta, key)
        return u * (x + delta)

    def sample_grad_delta(self, theta, delta, key):
        """``u theta``."""
        u, _ = self._residual(theta, delta, key)
        return u * theta

    def gradient_covariance_theta(self, theta, delta) -> Float[Array, "d d"]:
        """``Cov(g_theta)`` in closed form (class docstring)."""
        dt, m, s2 = self._parts(theta, delta)
        kd = self.eigenvalues * dt
        return ((m**2 + s2) * jnp.diag(self.eigenvalues) + jnp.outer(kd, kd)
                + m * (jnp.outer(kd, delta) + jnp.outer(delta, kd)) + s2 * jnp.outer(delta, delta))

    def noise_theta(self, theta, delta):
        """Symmetric square root of
        [`gradient_covariance_theta`][advdyn.sme.game.PerturbationGame.gradient_covariance_theta]
        (``eigh``, small ``d``)."""
        w, v = jnp.linalg.eigh(self.gradient_covariance_theta(theta, delta))
        return (v * jnp.sqrt(jnp.maximum(w, 0.0))) @ v.T

    def noise_delta(self, theta, delta):
        """``s theta`` as a ``d x 1`` matrix."""
        _, _, s2 = self._parts(theta, delta)
        return (jnp.sqrt(s2) * theta)[:, None]

    def observables(self, theta, delta):
        """``loss``, ``dist2 = |theta - theta*|^2``, ``delta2 = |delta|^2``."""
        return {"loss": self.loss(theta, delta),
                "dist2": jnp.sum((theta - self.theta_star) ** 2),
                "delta2": jnp.sum(delta**2)}


#: old names (advdyn 0.1), served with a DeprecationWarning until 0.2
__getattr__ = renamed(__name__, {
    "project": ("advdyn.adversarial.attacks.project(delta[None], eps, 'l2')[0]",
                lambda: _project_l2),
})
