"""Training objectives whose SGD the stochastic modified equations approximate (SME 2).

An objective knows everything the SME needs about one learning problem:

* ``loss(theta)`` -- the training objective ``f`` (clean risk or adversarial risk);
* ``gradient(theta)`` -- ``grad f``;
* ``noise_factor(theta)`` -- a matrix ``F`` with ``F F^T = Sigma(theta)``, the covariance of
  one SGD step's gradient (the exact one, or the homogenized one of THEORY 8);
* ``stochastic_gradient(theta, key)`` -- one SGD gradient, for simulating SGD itself;
* ``observables(theta)`` -- clean and adversarial risk, norm and input-gradient norm.

Two final implementations:

[`GaussianLeastSquares`][advdyn.sme.objectives.GaussianLeastSquares]
    Adversarial least squares on one centred Gaussian class in the eigenbasis of ``K``
    (THEORY 5, worked example), ``l_eps`` exact by the endpoint rule. Risk, gradient and the
    exact per-sample gradient covariance (POSTERIOR 3) in closed form; the exact square
    root of the covariance costs ``O(d)`` because it is ``M0 K`` plus a rank-two term.
[`EmpiricalObjective`][advdyn.sme.objectives.EmpiricalObjective]
    Any JAX model ``predict(theta, x)`` on a finite data set, clean or adversarial: the
    exact endpoint rule for linear models under an l2 attack, otherwise FGM/PGD from
    `advdyn.adversarial.attacks` (the learner's gradient is taken at the perturbed
    inputs, Danskin's theorem). The covariance is the sample covariance of the per-sample
    gradients, factorised without a square root (``F = G_c^T / sqrt(n B)``).
"""

from __future__ import annotations

import abc
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from advdyn.adversarial.attacks import Attack, perturb
from advdyn.precision import as_float64, float64
from advdyn.typing import AnyArray

C0 = float(np.sqrt(2.0 / np.pi))
"""``c0 = E|Z| = sqrt(2/pi)``."""

NOISE_MODES = ("exact", "homogenized")


def _train_flag(value) -> np.ndarray:
    """``"adversarial"`` -> 1, ``"clean"`` -> 0 (a traced leaf: one compilation serves both)."""
    if isinstance(value, str):
        if value not in ("adversarial", "clean"):
            raise ValueError(f"train must be 'adversarial' or 'clean', got {value!r}")
        return np.asarray(1.0 if value == "adversarial" else 0.0)
    return np.asarray(value, dtype=np.float64)


def _safe_norm(theta: AnyArray) -> tuple[Array, Array]:
    """``(|theta|, theta/|theta|)`` with the subgradient convention ``e = 0`` at ``theta = 0``."""
    n2 = jnp.sum(theta**2)
    pos = n2 > 0
    n = jnp.sqrt(jnp.where(pos, n2, 1.0))
    return jnp.where(pos, n, 0.0), jnp.where(pos, theta / n, 0.0)


class AbstractObjective(eqx.Module):
    """Interface of a training objective for SGD and its SME (see the module docstring)."""

    @property
    @abc.abstractmethod
    def dim(self) -> int:
        """Number of parameters ``p``."""

    @property
    @abc.abstractmethod
    def noise_dim(self) -> int:
        """Number of columns of
        [`noise_factor`][advdyn.sme.objectives.AbstractObjective.noise_factor] (the Brownian
        dimension)."""

    @abc.abstractmethod
    def loss(self, theta: Float[AnyArray, " p"]) -> Float[Array, ""]:
        """Training objective ``f(theta)``."""

    def gradient(self, theta: Float[AnyArray, " p"]) -> Float[Array, " p"]:
        """``grad f(theta)`` (autodiff of [`loss`][advdyn.sme.objectives.AbstractObjective.loss]
        unless overridden)."""
        return jax.grad(self.loss)(theta)

    @abc.abstractmethod
    def noise_factor(self, theta: Float[AnyArray, " p"]) -> Float[Array, "p m"]:
        """``F`` with ``F F^T = Sigma(theta)``, the covariance of one SGD gradient."""

    def noise_apply(self, theta: Float[AnyArray, " p"], z: Float[AnyArray, " m"]
                    ) -> Float[Array, " p"]:
        """``F(theta) z`` (overridden where ``F`` has structure cheaper than a dense matrix)."""
        return self.noise_factor(theta) @ z

    @abc.abstractmethod
    def stochastic_gradient(self, theta: Float[AnyArray, " p"], key: Array) -> Float[Array, " p"]:
        """One SGD gradient at ``theta`` from the draw ``key``."""

    @abc.abstractmethod
    def observables(self, theta: Float[AnyArray, " p"]) -> dict[str, Array]:
        """Recorded scalars: ``clean_risk``, ``adv_risk``, ``norm``, ``input_grad_norm``."""


class GaussianLeastSquares(AbstractObjective):
    """Adversarial least squares, ``x ~ N(0, K)``, ``y = <theta*, x> + sigma xi`` (eigenbasis).

    Per-sample loss ``l_eps = (|r - y| + eps |theta|)^2 / 2`` with ``r = <theta, x>`` (the
    exact l2 inner maximum). With ``Delta = theta - theta*``, ``s^2 = Delta^T K Delta +
    sigma^2``, ``a = eps |theta|``, ``e = theta/|theta|``, ``c0 = sqrt(2/pi)``:

        R_eps = (s + c0 a)^2 / 2 + a^2 (1 - c0^2) / 2,     R_0 = s^2 / 2,
        grad R_eps = h1 K Delta + eps abar e,   h1 = 1 + c0 a / s,   abar = c0 s + a,

    and the per-sample gradient covariance (POSTERIOR 3 minus the outer product of the mean)
    ``Sigma = M0 K + U C U^T`` with ``U = [K Delta, e]``, ``M0 = s^2 + 2 c0 a s + a^2`` and

        C = [[1 - c0^2 a^2 / s^2,          eps (c0 s + a (1 - c0^2))],
             [eps (c0 s + a (1 - c0^2)),   eps^2 s^2 (1 - c0^2)      ]]

    (``C`` is indefinite, so the square root is taken on the span of ``U``).

    Attributes
    ----------
    eigenvalues : Array, shape (d,)
        Spectrum ``lambda_i`` of ``K``.
    theta_star : Array, shape (d,)
        Teacher.
    sigma : float
        Label noise.
    eps : float
        Attack radius used by ``adv_risk`` (and by training when ``train = "adversarial"``).
    train : {"adversarial", "clean"}
        Which risk SGD minimises (stored as a 1/0 array leaf, so clean and adversarial
        training share compiled solvers).
    noise : {"exact", "homogenized"}
        ``exact``: ``Sigma`` above; ``homogenized``: THEORY 8's ``I K`` with ``I = M0``.
    batch : int
        Mini-batch size ``B`` (``Sigma / B``).
    """

    eigenvalues: Array = eqx.field(converter=as_float64)
    theta_star: Array = eqx.field(converter=as_float64)
    sigma: Array | float = eqx.field(converter=as_float64)
    eps: Array | float = eqx.field(converter=as_float64)
    train: Array | str = eqx.field(converter=_train_flag, default="adversarial")
    noise: str = eqx.field(static=True, default="exact")
    batch: int = eqx.field(static=True, default=1)

    def __check_init__(self):
        if self.noise not in NOISE_MODES:
            raise ValueError(f"noise must be one of {NOISE_MODES}, got {self.noise!r}")
        if self.batch < 1:
            raise ValueError(f"batch must be >= 1, got {self.batch}")

    @classmethod
    @float64
    def from_instance(cls, instance, train: str = "adversarial", noise: str = "exact",
                      batch: int = 1) -> GaussianLeastSquares:
        """The same problem as a core [`ProblemInstance`][advdyn.problem.ProblemInstance].

        Parameters
        ----------
        instance : ProblemInstance
            One centred class, least squares, regression, no ridge (THEORY 5's worked
            example).
        train, noise, batch
            As the attributes.

        Returns
        -------
        GaussianLeastSquares

        Raises
        ------
        ValueError
            If the instance is not of that kind.
        """
        if (instance.task != "regression" or instance.n_components != 1
                or type(instance.loss).__name__ != "LeastSquares"
                or float(np.abs(np.asarray(instance.means)).max()) > 0
                or float(instance.ridge) != 0.0):
            raise ValueError("needs one centred class, least squares, regression, no ridge")
        return cls(jnp.asarray(instance.eigenvalues[0]), jnp.asarray(instance.theta_star),
                   jnp.asarray(instance.noise), jnp.asarray(instance.epsilon), train=train,
                   noise=noise, batch=batch)

    @property
    def dim(self) -> int:
        """Dimension ``d``."""
        return int(self.theta_star.shape[-1])

    @property
    def noise_dim(self) -> int:
        """``d`` (one Brownian motion per coordinate)."""
        return self.dim

    @property
    @float64
    def train_eps(self) -> Array:
        """Radius of the training loss: ``eps``, or 0 for clean training."""
        return jnp.asarray(self.eps) * jnp.asarray(self.train)

    def _scalars(self, theta, eps):
        delta = theta - self.theta_star
        s = jnp.sqrt(jnp.sum(self.eigenvalues * delta**2) + self.sigma**2)
        n, e = _safe_norm(theta)
        return delta, s, n, e, eps * n

    @float64
    def risk(self, theta: Float[AnyArray, " d"], eps) -> Float[Array, ""]:
        """Adversarial risk ``R_eps(theta)`` at radius ``eps`` (``R_0`` at ``eps = 0``)."""
        _, s, _, _, a = self._scalars(theta, eps)
        return 0.5 * (s + C0 * a) ** 2 + 0.5 * a**2 * (1 - C0**2)

    @float64
    def loss(self, theta: Float[AnyArray, " d"]) -> Float[Array, ""]:
        """``R_eps`` (adversarial training) or ``R_0`` (clean training)."""
        return self.risk(theta, self.train_eps)

    @float64
    def gradient(self, theta: Float[AnyArray, " d"]) -> Float[Array, " d"]:
        """Closed form ``h1 K Delta + eps abar e`` (subgradient with ``e = 0`` at 0)."""
        eps = self.train_eps
        delta, s, _, e, a = self._scalars(theta, eps)
        return (1 + C0 * a / s) * self.eigenvalues * delta + eps * (C0 * s + a) * e

    def _moments(self, theta):
        eps = self.train_eps
        delta, s, _, e, a = self._scalars(theta, eps)
        m0 = s**2 + 2 * C0 * a * s + a**2
        c11 = 1 - C0**2 * a**2 / s**2
        c12 = eps * (C0 * s + a * (1 - C0**2))
        c22 = eps**2 * s**2 * (1 - C0**2)
        c = jnp.array([[c11, c12], [c12, c22]])
        u = jnp.stack([self.eigenvalues * delta, e], axis=1)
        return m0, u, c

    @float64
    def gradient_covariance(self, theta: Float[AnyArray, " d"]) -> Float[Array, "d d"]:
        """Exact ``Sigma(theta) = Cov(grad l_eps)`` of one sample, divided by ``batch``."""
        m0, u, c = self._moments(theta)
        return (m0 * jnp.diag(self.eigenvalues) + u @ c @ u.T) / self.batch

    def _root_parts(self, theta):
        # Sigma = K^{1/2} (M0 I + V C V^T) K^{1/2}, V = K^{-1/2} U = Q R; the square root of
        # M0 I + Q (R C R^T) Q^T is sqrt(M0) (I - Q Q^T) + Q sqrtm(M0 I_2 + R C R^T) Q^T.
        m0, u, c = self._moments(theta)
        root = jnp.sqrt(self.eigenvalues)
        v = u / root[:, None]
        # Gram-Schmidt by hand (batched LAPACK on 2 columns is slow on CPU); a vanishing
        # column gives a zero column of Q and a zero row of R, which the formula tolerates
        r11 = jnp.sqrt(jnp.sum(v[:, 0] ** 2))
        q1 = jnp.where(r11 > 0, v[:, 0] / jnp.where(r11 > 0, r11, 1.0), 0.0)
        r12 = q1 @ v[:, 1]
        w = v[:, 1] - r12 * q1
        r22 = jnp.sqrt(jnp.sum(w**2))
        tiny = 1e-12 * (1.0 + jnp.sqrt(jnp.sum(v[:, 1] ** 2)))
        q2 = jnp.where(r22 > tiny, w / jnp.where(r22 > tiny, r22, 1.0), 0.0)
        r22 = jnp.where(r22 > tiny, r22, 0.0)
        q = jnp.stack([q1, q2], axis=1)
        r = jnp.array([[r11, r12], [0.0, r22]])
        mat = m0 * jnp.eye(2) + r @ c @ r.T
        # square root of a 2x2 positive semi-definite matrix:
        # (M + sqrt(det) I) / sqrt(tr + 2 sqrt(det))
        sdet = jnp.sqrt(jnp.maximum(mat[0, 0] * mat[1, 1] - mat[0, 1] * mat[1, 0], 0.0))
        b = (mat + sdet * jnp.eye(2)) / jnp.sqrt(jnp.trace(mat) + 2 * sdet)
        return m0, root, q, b

    @float64
    def noise_factor(self, theta: Float[AnyArray, " d"]) -> Float[Array, "d d"]:
        """``F`` with ``F F^T = Sigma`` (exact) or ``sqrt(I K / B)`` (homogenized), dense."""
        return jax.vmap(lambda z: self.noise_apply(theta, z), out_axes=1)(jnp.eye(self.dim))

    @float64
    def noise_apply(self, theta: Float[AnyArray, " d"], z: Float[AnyArray, " d"]
                    ) -> Float[Array, " d"]:
        """``F z`` in ``O(d)``: the exact factor is ``K^{1/2}`` times a rank-two update of
        ``sqrt(M0) I`` (see `_root_parts`); the homogenized one ``sqrt(M0 K / B) z``."""
        if self.noise == "homogenized":
            m0, _, _ = self._moments(theta)
            return jnp.sqrt(m0 * self.eigenvalues / self.batch) * z
        m0, root, q, b = self._root_parts(theta)
        qz = q.T @ z
        inner = jnp.sqrt(m0) * (z - q @ qz) + q @ (b @ qz)
        return root * inner / np.sqrt(self.batch)

    @float64
    def stochastic_gradient(self, theta: Float[AnyArray, " d"], key: Array) -> Float[Array, " d"]:
        """Mean of ``batch`` per-sample gradients ``(|u| + a)(sign(u) x + eps e)``."""
        kx, kn = jax.random.split(key)
        z = jax.random.normal(kx, (self.batch, self.dim), theta.dtype)
        x = z * jnp.sqrt(self.eigenvalues)
        u = x @ (theta - self.theta_star) - self.sigma * jax.random.normal(
            kn, (self.batch,), theta.dtype)
        eps = self.train_eps
        n, e = _safe_norm(theta)
        amp = jnp.abs(u) + eps * n
        g = amp[:, None] * (jnp.sign(u)[:, None] * x + eps * e)
        return jnp.mean(g, axis=0)

    @float64
    def observables(self, theta: Float[AnyArray, " d"]) -> dict[str, Array]:
        """``clean_risk``, ``adv_risk`` (radius ``eps``), ``norm``, ``input_grad_norm``
        (``E |grad_x l_0| = c0 s |theta|``) and ``dist2 = |theta - theta*|^2``."""
        delta, s, n, _, _ = self._scalars(theta, self.eps)
        return {
            "clean_risk": 0.5 * s**2,
            "adv_risk": self.risk(theta, self.eps),
            "norm": n,
            "input_grad_norm": C0 * s * n,
            "dist2": jnp.sum(delta**2),
        }


@float64
def linear_predict(theta: Float[AnyArray, " p"], x: Float[AnyArray, "n p"]) -> Float[Array, " n"]:
    """The linear model ``r = <theta, x>`` (default model of
    [`EmpiricalObjective`][advdyn.sme.objectives.EmpiricalObjective])."""
    return jnp.asarray(x @ theta)


@float64
def squared_loss(pred: AnyArray, y: AnyArray) -> AnyArray:
    """``(pred - y)^2 / 2`` per sample."""
    return 0.5 * (pred - y) ** 2


class EmpiricalObjective(AbstractObjective):
    """A JAX model trained by SGD on a finite data set, clean or adversarially.

    ``f(theta) = mean_j l(predict(theta, x_j + delta_j), y_j)`` with

    * ``delta = 0`` (clean, ``attack = None`` and ``linear_eps = None``);
    * the exact l2 worst case of a linear model ``predict = <theta, x>`` when ``linear_eps``
      is set (endpoint rule ``max(l(r + a), l(r - a))``, ``a = eps |theta|``, exact for
      losses convex in ``r``);
    * the FGM/PGD perturbation of ``attack`` otherwise (computed with the current
      ``theta`` and held fixed when differentiating in ``theta``: Danskin's theorem for the
      first derivative; the order-2 drift's Hessian then ignores ``d delta / d theta``).

    One SGD step draws ``batch`` indices uniformly with replacement, so the gradient
    covariance is ``Sigma = G_c^T G_c / (n B)`` with ``G_c`` the centred per-sample
    gradients, and ``F = G_c^T / sqrt(n B)`` needs no matrix square root.

    Attributes
    ----------
    x : array, shape (n, ...)
        Inputs.
    y : array, shape (n, ...)
        Targets or labels.
    predict : callable
        ``predict(theta, x_batch) -> predictions`` (flat parameter vector ``theta``).
    sample_loss : callable
        ``sample_loss(predictions, y_batch) -> per-sample losses``.
    attack : Attack, optional
        FGM/PGD attack (ignored when ``linear_eps`` is set).
    linear_eps : float, optional
        Radius of the exact l2 attack on a linear model.
    eval_attack : Attack, optional
        Attack used by ``adv_risk`` in
        [`observables`][advdyn.sme.objectives.EmpiricalObjective.observables] (default: the training
        attack).
    train : {"adversarial", "clean"}
        Whether SGD sees perturbed inputs (a 1/0 array leaf).
    batch : int
        Mini-batch size ``B``.
    """

    x: AnyArray
    y: AnyArray
    predict: Callable = eqx.field(static=True, default=linear_predict)
    sample_loss: Callable = eqx.field(static=True, default=squared_loss)
    attack: Attack | None = None
    linear_eps: Array | float | None = None
    eval_attack: Attack | None = None
    train: Array | str = eqx.field(converter=_train_flag, default="adversarial")
    batch: int = eqx.field(static=True, default=1)
    n_params: int = eqx.field(static=True, default=0)

    def __check_init__(self):
        if self.n_params < 1:
            raise ValueError("n_params (the length of the flat parameter vector) must be >= 1")

    @property
    def dim(self) -> int:
        """Number of parameters."""
        return self.n_params

    @property
    def noise_dim(self) -> int:
        """Number of samples ``n``."""
        return int(self.x.shape[0])

    def _losses(self, theta, x, y, adversarial: bool, attack: Attack | None):
        """Per-sample losses at ``theta`` (perturbation held fixed in ``theta``)."""
        if not adversarial:
            return self.sample_loss(self.predict(theta, x), y)
        if self.linear_eps is not None:
            r = self.predict(theta, x)
            n, _ = _safe_norm(theta)
            a = self.linear_eps * n
            return jnp.maximum(self.sample_loss(r + a, y), self.sample_loss(r - a, y))
        if attack is None:
            raise ValueError("adversarial training needs an attack or linear_eps")
        th = jax.lax.stop_gradient(theta)
        xa = perturb(attack, lambda xb, yb: self.sample_loss(self.predict(th, xb), yb), x, y)
        return self.sample_loss(self.predict(theta, jax.lax.stop_gradient(xa)), y)

    def _train_losses(self, theta, x, y):
        clean = self._losses(theta, x, y, False, None)
        if self.attack is None and self.linear_eps is None:
            return clean
        # 1/0 flag as a traced leaf: clean and adversarial training share compilations
        adv = self._losses(theta, x, y, True, self.attack)
        flag = jnp.asarray(self.train)
        return flag * adv + (1 - flag) * clean

    @float64
    def loss(self, theta: Float[AnyArray, " p"]) -> Float[Array, ""]:
        """Mean training loss over the data set."""
        return jnp.mean(self._train_losses(theta, self.x, self.y))

    @float64
    def per_sample_gradients(self, theta: Float[AnyArray, " p"]) -> Float[Array, "n p"]:
        """Gradients of every sample's training loss, shape ``(n, p)``."""
        def one(xj, yj):
            return jax.grad(lambda th: self._train_losses(th, xj[None], yj[None])[0])(theta)

        return jax.vmap(one)(self.x, self.y)

    @float64
    def noise_factor(self, theta: Float[AnyArray, " p"]) -> Float[Array, "p n"]:
        """``G_c^T / sqrt(n B)`` (``F F^T`` is the covariance of one mini-batch gradient)."""
        g = self.per_sample_gradients(theta)
        gc = g - jnp.mean(g, axis=0)
        return gc.T / np.sqrt(self.noise_dim * self.batch)

    @float64
    def stochastic_gradient(self, theta: Float[AnyArray, " p"], key: Array) -> Float[Array, " p"]:
        """Gradient on ``batch`` indices drawn uniformly with replacement."""
        idx = jax.random.randint(key, (self.batch,), 0, self.noise_dim)
        return jax.grad(lambda th: jnp.mean(self._train_losses(th, self.x[idx], self.y[idx])))(
            theta)

    @float64
    def observables(self, theta: Float[AnyArray, " p"]) -> dict[str, Array]:
        """``clean_risk``, ``adv_risk`` (evaluation attack), ``norm`` and the mean l2 norm
        of the clean loss's input gradient ``input_grad_norm``."""
        attack = self.eval_attack if self.eval_attack is not None else self.attack
        clean = self._losses(theta, self.x, self.y, False, None)
        adv = self._losses(theta, self.x, self.y, True, attack) if (
            attack is not None or self.linear_eps is not None) else clean
        gx = jax.vmap(jax.grad(lambda xj, yj: self.sample_loss(
            self.predict(theta, xj[None]), yj[None])[0]))(self.x, self.y)
        gnorm = jnp.sqrt(jnp.sum(gx.reshape(gx.shape[0], -1) ** 2, axis=1))
        n, _ = _safe_norm(theta)
        return {"clean_risk": jnp.mean(clean), "adv_risk": jnp.mean(adv), "norm": n,
                "input_grad_norm": jnp.mean(gnorm)}
