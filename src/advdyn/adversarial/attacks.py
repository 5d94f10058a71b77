"""Adversarial attacks: the fast gradient method (FGM) and projected gradient descent (PGD).

An attack maximises a per-sample loss over a norm ball ``|delta| <= eps`` (l-infinity or l2,
the norm taken over all non-batch axes of one sample), optionally from a random start in the
ball and with the perturbed input clipped to the data domain ``[lo, hi]``. Attacks only need
``loss(x, y) -> per-sample losses``, so they work for any differentiable model; samples must
not interact (no batch statistics), so that the gradient of the summed loss with respect to
one input is that sample's own gradient.

For a linear model ``f(x) = <theta, x>`` with a loss that is monotone in ``|f(x) - y|`` the
worst case is known in closed form: ``delta = eps s theta/|theta|_2`` (l2) or
``delta = eps s sign(theta)`` (l-infinity), ``s = sign(f(x) - y)``. FGM from a zero start
hits it exactly; see [`linear_worst_case`][advdyn.adversarial.attacks.linear_worst_case].
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp

from advdyn import checks

NORMS = ("linf", "l2")
METHODS = ("fgm", "pgd")

LossFn = Callable[[jax.Array, jax.Array], jax.Array]


class Attack(eqx.Module):
    """An attack specification (immutable; ``eps`` is a traced leaf, so changing it never
    recompiles a jitted caller).

    Parameters
    ----------
    eps : float
        Radius of the ball.
    norm : {"linf", "l2"}
        Norm of the ball.
    method : {"pgd", "fgm"}
        ``"fgm"``: one step of length ``eps`` along the normalised gradient (the sign for
        l-infinity: FGSM), then projection. ``"pgd"``: ``steps`` steps of length
        ``rel_step * eps / steps``, each followed by projection onto the ball and the domain.
    steps : int
        Number of PGD steps (ignored by FGM).
    rel_step : float
        PGD step size as a multiple of ``eps / steps`` (2.5 is the usual choice).
    random_start : bool
        Start from a uniform point of the ball instead of ``delta = 0``.
    clip : tuple of float, optional
        Data domain ``(lo, hi)``; the perturbed input is clipped to it.
    """

    eps: float | jax.Array
    norm: str = eqx.field(static=True, default="linf")
    method: str = eqx.field(static=True, default="pgd")
    steps: int = eqx.field(static=True, default=10)
    rel_step: float = eqx.field(static=True, default=2.5)
    random_start: bool = eqx.field(static=True, default=False)
    clip: tuple[float, float] | None = eqx.field(static=True, default=None)

    def __check_init__(self):
        # a concrete scalar radius (a traced one, or one per sample, is the caller's)
        if not isinstance(self.eps, jax.core.Tracer) and getattr(self.eps, "ndim", 0) == 0:
            checks.nonnegative(self.eps, "eps")  # ("8/255": advdyn.critical.parse_eps)
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {self.norm!r}")
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")

    @property
    def gradient_evaluations(self) -> int:
        """Input-gradient evaluations per sample (1 for FGM, ``steps`` for PGD)."""
        return 1 if self.method == "fgm" else self.steps


def sample_norm(v: jax.Array, norm: str) -> jax.Array:
    """The ``norm`` of each sample of ``v`` (batch axis first), shape ``(B, 1, ..., 1)``."""
    axes = tuple(range(1, v.ndim))
    if norm == "l2":
        return jnp.sqrt(jnp.sum(v * v, axis=axes, keepdims=True))
    return jnp.max(jnp.abs(v), axis=axes, keepdims=True)


def ascent_direction(g: jax.Array, norm: str) -> jax.Array:
    """Unit-norm steepest-ascent direction of a linear function with gradient ``g``."""
    if norm == "linf":
        return jnp.sign(g)
    n = sample_norm(g, "l2")
    return jnp.where(n > 0, g / jnp.where(n > 0, n, 1.0), 0.0)


def project(delta: jax.Array, eps, norm: str) -> jax.Array:
    """Project perturbations (batch axis first) onto the ``norm`` ball of radius ``eps``.

    Parameters
    ----------
    delta : array, shape (B, ...)
        Perturbations.
    eps : float
        Radius.
    norm : {"linf", "l2"}
        Norm, over all non-batch axes.

    Returns
    -------
    array
        The projected perturbations.
    """
    if norm == "linf":
        return jnp.clip(delta, -eps, eps)
    n = sample_norm(delta, "l2")
    scale = jnp.where(n > eps, eps / jnp.where(n > 0, n, 1.0), 1.0)
    return delta * scale


def random_in_ball(key: jax.Array, shape, eps, norm: str, dtype=jnp.float32) -> jax.Array:
    """Uniform draws from the ``norm`` ball of radius ``eps`` (one per leading index).

    Parameters
    ----------
    key : jax.Array
        PRNG key.
    shape : tuple of int
        ``(B, ...)``.
    eps : float
        Radius.
    norm : {"linf", "l2"}
        Norm.
    dtype : dtype
        Output dtype.

    Returns
    -------
    array of shape ``shape``
    """
    if norm == "linf":
        return jax.random.uniform(key, shape, dtype, -1.0, 1.0) * eps
    k1, k2 = jax.random.split(key)
    g = jax.random.normal(k1, shape, dtype)
    dim = 1
    for s in shape[1:]:
        dim *= s
    u = jax.random.uniform(k2, (shape[0],) + (1,) * (len(shape) - 1), dtype)
    return eps * u ** (1.0 / dim) * ascent_direction(g, "l2")


def constrain(x: jax.Array, delta: jax.Array, attack: Attack) -> jax.Array:
    """``delta`` projected on the attack's ball, then so that ``x + delta`` is within
    ``attack.clip`` (when set); shapes as ``x``."""
    delta = project(delta, attack.eps, attack.norm)
    if attack.clip is not None:
        delta = jnp.clip(x + delta, attack.clip[0], attack.clip[1]) - x
    return delta


def perturb(attack: Attack, loss: LossFn, x: jax.Array, y: jax.Array, key=None) -> jax.Array:
    """Return the adversarial inputs ``x + delta`` found by ``attack``.

    Parameters
    ----------
    attack : Attack
        The attack.
    loss : callable
        ``loss(x, y)`` returning per-sample losses of shape ``(B,)``.
    x : array, shape (B, ...)
        Clean inputs.
    y : array, shape (B, ...)
        Targets (passed through to ``loss``).
    key : jax.Array, optional
        PRNG key; required when ``attack.random_start``.

    Returns
    -------
    array, same shape as ``x``
        Perturbed inputs, inside the ball around ``x`` and inside the domain.
    """
    if attack.random_start and key is None:
        raise ValueError("a random start needs a PRNG key")
    grad = jax.grad(lambda xa: jnp.sum(loss(xa, y)))
    eps = jnp.asarray(attack.eps, x.dtype)
    if attack.random_start:
        delta = constrain(x, random_in_ball(key, x.shape, eps, attack.norm, x.dtype), attack)
    else:
        delta = jnp.zeros_like(x)
    if attack.method == "fgm":
        g = grad(x + delta)
        return x + constrain(x, delta + eps * ascent_direction(g, attack.norm), attack)
    alpha = attack.rel_step * eps / attack.steps

    def step(d, _):
        g = grad(x + d)
        return constrain(x, d + alpha * ascent_direction(g, attack.norm), attack), None

    delta, _ = jax.lax.scan(step, delta, None, length=attack.steps)
    return x + delta


def linear_worst_case(theta: jax.Array, x: jax.Array, y: jax.Array, eps, norm: str):
    """Exact worst-case inputs for ``f(x) = <theta, x>`` and a loss increasing in ``|f - y|``.

    Parameters
    ----------
    theta : array, shape (d,)
        Weights.
    x : array, shape (B, d)
        Inputs.
    y : array, shape (B,)
        Targets.
    eps : float
        Radius.
    norm : {"linf", "l2"}
        Norm of the ball.

    Returns
    -------
    array, shape (B, d)
        ``x + eps s u`` with ``s = sign(<theta, x> - y)`` and ``u = theta/|theta|_2`` (l2)
        or ``sign(theta)`` (l-infinity). The worst residual is ``|r| + eps |theta|_*``,
        with the dual norm ``|theta|_2`` or ``|theta|_1``.
    """
    s = jnp.sign(x @ theta - y)[:, None]
    u = theta / jnp.linalg.norm(theta) if norm == "l2" else jnp.sign(theta)
    return x + eps * s * u[None, :]
