"""Curvature and gradient noise: closed forms for adversarial least squares, and the
Hessian / gradient covariance of a user's model (exact for small models, Hessian-vector
products with Hutchinson traces and Lanczos top-k eigenpairs for larger ones).

Adversarial least squares (POSTERIOR section 3, one centred class ``x ~ N(0, K)``,
``y = <theta*, x> + sigma z``, l2 radius ``eps``): the per-sample loss is
``(|r| + eps |theta|)^2 / 2`` with ``r = <theta, x> - y ~ N(0, s^2)``,
``s^2 = Delta^T K Delta + sigma^2``, so the population risk is
``R_eps = (s^2 + 2 a c0 s + a^2) / 2`` with ``a = eps |theta|``, ``c0 = sqrt(2 / pi)``.

For a model (an equinox module mapping a batch to logits), the *adversarial training loss*
at weights ``w`` is the mean cross-entropy at the adversarial inputs found by the project's
attacks (`advdyn.adversarial.attacks`) at ``w``. Its Hessian is taken with those inputs
held fixed (Danskin's theorem: the envelope's gradient is the gradient at the maximiser;
the second-order effect of the moving maximiser is left out, as in the usual practice of
measuring the adversarial loss landscape).
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, ArrayLike, Float

from advdyn.adversarial.attacks import Attack
from advdyn.adversarial.training import attacked, sample_loss
from advdyn.precision import float64

C0 = float(np.sqrt(2.0 / np.pi))

# --------------------------------------------------------------------------------------
# adversarial least squares: closed forms


def _ls_scalars(theta, K, theta_star, sigma, eps):
    delta = theta - theta_star
    Kd = K @ delta
    s = jnp.sqrt(delta @ Kd + sigma**2)
    n = jnp.sqrt(theta @ theta)
    e = theta / jnp.where(n > 0, n, 1.0)
    return delta, Kd, s, n, e, eps * n


@float64
def adversarial_ls_risk(
    theta: Float[ArrayLike, " p"], K: Float[ArrayLike, "p p"], theta_star: Float[ArrayLike, " p"],
    sigma: float, eps: float,
) -> Float[Array, ""]:
    """Population adversarial risk ``R_eps = (s^2 + 2 a c0 s + a^2) / 2``.

    Parameters
    ----------
    theta : array, shape (p,)
        Weights.
    K : array, shape (p, p)
        Input covariance.
    theta_star : array, shape (p,)
        Teacher.
    sigma : float
        Label-noise standard deviation.
    eps : float
        l2 attack radius.

    Returns
    -------
    scalar
    """
    _, _, s, _, _, a = _ls_scalars(theta, K, theta_star, sigma, eps)
    return 0.5 * (s**2 + 2 * a * C0 * s + a**2)


@float64
def adversarial_ls_hessian(
    theta: Float[ArrayLike, " p"], K: Float[ArrayLike, "p p"], theta_star: Float[ArrayLike, " p"],
    sigma: float, eps: float,
) -> Float[Array, "p p"]:
    """Closed-form population Hessian of ``R_eps`` (POSTERIOR section 3).

    ``H = K + eps c0 (K Delta e^T + e Delta^T K)/s + eps^2 e e^T
    + eps (c0 s + a)/n (I - e e^T) + (a c0 / s)(K - K Delta Delta^T K / s^2)``.

    Parameters
    ----------
    theta, K, theta_star, sigma, eps
        As in [`adversarial_ls_risk`][advdyn.posterior.curvature.adversarial_ls_risk] (``theta !=
        0``).

    Returns
    -------
    array, shape (p, p)
    """
    _, Kd, s, n, e, a = _ls_scalars(theta, K, theta_star, sigma, eps)
    p = jnp.shape(theta)[0]
    eye = jnp.eye(p)
    return (
        K
        + eps * C0 * (jnp.outer(Kd, e) + jnp.outer(e, Kd)) / s
        + eps**2 * jnp.outer(e, e)
        + eps * (C0 * s + a) / n * (eye - jnp.outer(e, e))
        + (a * C0 / s) * (K - jnp.outer(Kd, Kd) / s**2)
    )


@float64
def adversarial_ls_gradient_moment(
    theta: Float[ArrayLike, " p"], K: Float[ArrayLike, "p p"], theta_star: Float[ArrayLike, " p"],
    sigma: float, eps: float,
) -> Float[Array, "p p"]:
    """Closed-form second moment ``E[g g^T]`` of the per-sample adversarial gradient.

    With ``M0 = s^2 + 2 a c0 s + a^2``, ``M1 = 2 c0 s^3 + 2 a s^2 + a^2 c0 s``,
    ``M2 = 3 s^4 + 4 a c0 s^3 + a^2 s^2``:
    ``E[g g^T] = M2 K D D^T K / s^4 + eps M1 (K D e^T + e D^T K) / s^2 + eps^2 M0 e e^T
    + M0 (K - K D D^T K / s^2)`` (``D = Delta``). At the adversarial optimum the mean
    gradient vanishes and this is the gradient covariance ``C``.

    Parameters
    ----------
    theta, K, theta_star, sigma, eps
        As in [`adversarial_ls_risk`][advdyn.posterior.curvature.adversarial_ls_risk].

    Returns
    -------
    array, shape (p, p)
    """
    _, Kd, s, _, e, a = _ls_scalars(theta, K, theta_star, sigma, eps)
    M0 = s**2 + 2 * a * C0 * s + a**2
    M1 = 2 * C0 * s**3 + 2 * a * s**2 + a**2 * C0 * s
    M2 = 3 * s**4 + 4 * a * C0 * s**3 + a**2 * s**2
    KK = jnp.outer(Kd, Kd)
    return (
        M2 * KK / s**4
        + eps * M1 * (jnp.outer(Kd, e) + jnp.outer(e, Kd)) / s**2
        + eps**2 * M0 * jnp.outer(e, e)
        + M0 * (K - KK / s**2)
    )


@float64
def adversarial_ls_sample_gradient(theta, x, y, eps):
    """Per-sample gradient ``(|r| + a)(sign(r) x + eps theta/|theta|)`` (batch of samples).

    Parameters
    ----------
    theta : array, shape (p,) or (M, p)
        Weights (one per chain when 2-D).
    x : array, shape (M, p)
        Inputs.
    y : array, shape (M,)
        Labels.
    eps : float
        l2 radius.

    Returns
    -------
    array, shape (M, p)
    """
    theta = jnp.broadcast_to(theta, x.shape)
    r = jnp.sum(x * theta, axis=-1) - y
    n = jnp.sqrt(jnp.sum(theta * theta, axis=-1, keepdims=True))
    e = theta / jnp.where(n > 0, n, 1.0)
    scale = (jnp.abs(r) + eps * n[:, 0])[:, None]
    return scale * (jnp.sign(r)[:, None] * x + eps * e)


@float64
def adversarial_ls_optimum(
    K: Float[ArrayLike, "p p"], theta_star: Float[ArrayLike, " p"], sigma: float, eps: float,
    iterations: int = 60,
) -> Float[Array, " p"]:
    """Minimiser ``theta_eps^*`` of the population adversarial risk (Newton's method).

    ``R_eps`` is convex; Newton from ``theta*`` with the closed-form Hessian converges in a
    handful of steps (60 are run, jitted).

    Parameters
    ----------
    K, theta_star, sigma, eps
        As in [`adversarial_ls_risk`][advdyn.posterior.curvature.adversarial_ls_risk].
    iterations : int
        Newton steps.

    Returns
    -------
    array, shape (p,)
    """
    K = jnp.asarray(K, jnp.float64)
    ts = jnp.asarray(theta_star, jnp.float64)
    grad = jax.grad(lambda t: adversarial_ls_risk(t, K, ts, sigma, eps))

    def body(_, t):
        step = jnp.linalg.solve(adversarial_ls_hessian(t, K, ts, sigma, eps), grad(t))
        return t - step

    return jax.lax.fori_loop(0, iterations, body, ts)


# --------------------------------------------------------------------------------------
# a user's model


class FlatLoss(eqx.Module):
    """The adversarial training loss of a model as a function of its flattened weights.

    Attributes
    ----------
    w : array, shape (p,)
        Flattened trainable weights (the inexact arrays of the model).
    x_adv : array, shape (n, ...)
        Inputs at which the loss is taken (adversarial at ``w``, then held fixed).
    y : array, shape (n,)
        Labels.
    template : pytree
        The model's trainable part (gives the unflattening).
    static : pytree
        The model's non-trainable part.
    """

    w: Float[Array, " p"]
    x_adv: Array
    y: Array
    template: object
    static: object = eqx.field(static=True)

    def unravel(self, w: Float[Array, " p"]):
        """Flat weights to the model's trainable pytree."""
        return ravel_pytree(self.template)[1](w)

    def model(self, w: Float[Array, " p"]):
        """The model with flat weights ``w``."""
        return eqx.combine(self.unravel(w), self.static)

    def __call__(self, w: Float[Array, " p"]) -> Float[Array, ""]:
        """Mean cross-entropy at ``x_adv`` with weights ``w``."""
        return sample_loss(self.model(w), self.x_adv, self.y)[0].mean()

    def sample_losses(self, w: Float[Array, " p"]) -> Float[Array, " n"]:
        """Per-sample cross-entropies at ``x_adv`` with weights ``w``."""
        return sample_loss(self.model(w), self.x_adv, self.y)[0]


@eqx.filter_jit
def _sample_grads(loss: FlatLoss, x, y, V=None):
    def one(xi, yi):
        single = FlatLoss(loss.w, xi[None], yi[None], loss.template, loss.static)
        g = jax.grad(single)(loss.w)
        return g if V is None else g @ V

    return jax.vmap(one)(x, y)


@eqx.filter_jit
def _hvp(loss: FlatLoss, v):
    return jax.jvp(jax.grad(loss), (loss.w,), (v.astype(loss.w.dtype),))[1]


def flat_loss(model, x, y, attack: Attack | None = None, key=None, dtype=None) -> FlatLoss:
    """Build the adversarial training loss of ``model`` on ``(x, y)``.

    Parameters
    ----------
    model : equinox.Module
        Batch of inputs to logits.
    x : array, shape (n, ...)
        Inputs.
    y : int array, shape (n,)
        Labels.
    attack : Attack, optional
        Attack producing the inputs (``None``: clean loss).
    key : jax.Array, optional
        PRNG key of the attack's random start.
    dtype : dtype, optional
        Cast weights and inputs (e.g. ``jnp.float64`` for an exact Hessian; needs x64).

    Returns
    -------
    FlatLoss
    """
    if dtype is not None:
        model = jax.tree.map(lambda a: a.astype(dtype) if eqx.is_inexact_array(a) else a,
                             model)
        x = jnp.asarray(x, dtype)
    x = jnp.asarray(x)
    y = jnp.asarray(y)
    x_adv = attacked(model, attack, x, y, key)
    params, static = eqx.partition(model, eqx.is_inexact_array)
    w, _ = ravel_pytree(params)
    return FlatLoss(w, x_adv, y, params, static)


def exact_hessian(loss: FlatLoss) -> Float[Array, "p p"]:
    """The full Hessian ``d^2 L / dw^2`` (``p x p``; for small models).

    Parameters
    ----------
    loss : FlatLoss

    Returns
    -------
    array, shape (p, p)
    """
    return _hessian(loss)


@eqx.filter_jit
def _hessian(loss):
    return jax.hessian(loss)(loss.w)


def per_sample_gradients(loss: FlatLoss, chunk: int = 256) -> Float[Array, "n p"]:
    """Per-sample gradients of the loss at ``loss.w`` (``n x p``).

    Parameters
    ----------
    loss : FlatLoss
    chunk : int
        Samples per vectorised call.

    Returns
    -------
    array, shape (n, p)
    """
    n = loss.y.shape[0]
    parts = [_sample_grads(loss, loss.x_adv[i:i + chunk], loss.y[i:i + chunk])
             for i in range(0, n, chunk)]
    return jnp.concatenate(parts)


def gradient_covariance(loss: FlatLoss) -> Float[Array, "p p"]:
    """Per-sample gradient covariance ``C = E[(g - gbar)(g - gbar)^T]`` over the data.

    Parameters
    ----------
    loss : FlatLoss

    Returns
    -------
    array, shape (p, p)
    """
    G = per_sample_gradients(loss)
    Gc = G - G.mean(axis=0)
    return Gc.T @ Gc / G.shape[0]


class HessianOperator(eqx.Module):
    """``v -> H v`` at ``loss.w`` (forward-over-reverse), as a pytree so that jitted
    consumers (Hutchinson, Lanczos) compile once per model architecture.

    Attributes
    ----------
    loss : FlatLoss
    """

    loss: FlatLoss

    @property
    def size(self) -> int:
        """Number of parameters ``p``."""
        return int(self.loss.w.shape[0])

    def __call__(self, v: Float[ArrayLike, " p"]) -> Float[Array, " p"]:
        """The product ``H v``."""
        return _hvp(self.loss, v)


def hvp(loss: FlatLoss) -> HessianOperator:
    """Hessian-vector products ``v -> H v`` at ``loss.w``.

    Parameters
    ----------
    loss : FlatLoss

    Returns
    -------
    HessianOperator
        Callable ``(p,) -> (p,)``.
    """
    return HessianOperator(loss)


@eqx.filter_jit
def _quadratic_forms(product, z):
    return jax.vmap(lambda zi: jnp.vdot(zi, product(zi).astype(zi.dtype)))(z)


@eqx.filter_jit
def _lanczos(product, q0, m: int):
    p = q0.shape[0]
    Q = jnp.zeros((p, m + 1), q0.dtype).at[:, 0].set(q0)

    def body(j, carry):
        Q, alphas, betas = carry
        q = Q[:, j]
        w = product(q).astype(q0.dtype)
        alpha = jnp.vdot(q, w)
        # full reorthogonalisation against every basis vector so far (twice: Kahan)
        w = w - Q @ (Q.T @ w)
        w = w - Q @ (Q.T @ w)
        beta = jnp.linalg.norm(w)
        Q = Q.at[:, j + 1].set(w / jnp.where(beta > 0, beta, 1.0))
        return Q, alphas.at[j].set(alpha), betas.at[j].set(beta)

    zeros = jnp.zeros(m, q0.dtype)
    Q, alphas, betas = jax.lax.fori_loop(0, m, body, (Q, zeros, zeros))
    b = betas[:-1]
    T = jnp.diag(alphas) + jnp.diag(b, 1) + jnp.diag(b, -1)
    return Q[:, :m], T


class TraceEstimate(eqx.Module):
    """A Hutchinson trace estimate.

    Attributes
    ----------
    value : scalar
        Mean of ``z^T H z`` over Rademacher probes.
    stderr : scalar
        Its standard error (sample standard deviation over ``sqrt(probes)``).
    probes : int
        Number of probes.
    """

    value: Float[Array, ""]
    stderr: Float[Array, ""]
    probes: int = eqx.field(static=True)


def hutchinson_trace(
    product: Callable[[Array], Array], p: int, key, probes: int = 32
) -> TraceEstimate:
    """Hutchinson's estimate of ``tr(H)`` from Hessian-vector products.

    Parameters
    ----------
    product : callable
        ``v -> H v``.
    p : int
        Dimension.
    key : jax.Array
        PRNG key of the Rademacher probes.
    probes : int
        Number of probes.

    Returns
    -------
    TraceEstimate
    """
    dtype = jnp.result_type(float)
    z = jax.random.rademacher(key, (probes, p), dtype)
    values = _quadratic_forms(product, z)
    return TraceEstimate(values.mean(), values.std(ddof=1) / np.sqrt(probes), probes)


class Eigenpairs(eqx.Module):
    """Leading eigenpairs of a symmetric operator.

    Attributes
    ----------
    values : array, shape (k,)
        Eigenvalues, largest first.
    vectors : array, shape (p, k)
        Orthonormal eigenvectors (columns).
    """

    values: Float[Array, " k"]
    vectors: Float[Array, "p k"]


def lanczos_top_k(
    product: Callable[[Array], Array], p: int, k: int, key, iterations: int | None = None
) -> Eigenpairs:
    """Top-``k`` (algebraically largest) eigenpairs by Lanczos with full reorthogonalisation.

    Parameters
    ----------
    product : callable
        ``v -> H v`` (symmetric ``H``).
    p : int
        Dimension.
    k : int
        Number of eigenpairs.
    key : jax.Array
        PRNG key of the starting vector.
    iterations : int, optional
        Krylov dimension (default ``min(p, max(3 k, 30))``); no early stop, so it must not
        exceed the rank of ``H`` restricted to the Krylov space (``p`` at most).

    Returns
    -------
    Eigenpairs
    """
    m = min(p, iterations if iterations is not None else max(3 * k, 30))
    dtype = jnp.result_type(float)
    q = jax.random.normal(key, (p,), dtype)
    Qm, T = _lanczos(product, q / jnp.linalg.norm(q), m)
    vals, vecs = jnp.linalg.eigh(T)
    order = jnp.argsort(vals)[::-1][:k]
    return Eigenpairs(vals[order], Qm @ vecs[:, order])


def subspace_gradient_covariance(
    loss: FlatLoss, vectors: Float[ArrayLike, "p k"], chunk: int = 256
) -> Float[Array, "k k"]:
    """Per-sample gradient covariance restricted to a subspace: ``V^T C V``.

    Parameters
    ----------
    loss : FlatLoss
    vectors : array, shape (p, k)
        Orthonormal basis of the subspace (e.g. Lanczos eigenvectors).
    chunk : int
        Samples per vectorised call (only ``n x k`` projections are kept).

    Returns
    -------
    array, shape (k, k)
    """
    V = jnp.asarray(vectors, loss.w.dtype)
    n = loss.y.shape[0]
    P = jnp.concatenate([_sample_grads(loss, loss.x_adv[i:i + chunk], loss.y[i:i + chunk], V)
                         for i in range(0, n, chunk)])
    Pc = P - P.mean(axis=0)
    return Pc.T @ Pc / n


def gradient_noise_trace(loss: FlatLoss, chunk: int = 256) -> Float[Array, ""]:
    """``tr(C)``: total per-sample gradient variance (never forms ``C``).

    Parameters
    ----------
    loss : FlatLoss
    chunk : int
        Samples per vectorised call.

    Returns
    -------
    scalar
    """
    G = per_sample_gradients(loss, chunk)
    return jnp.sum((G - G.mean(axis=0)) ** 2) / G.shape[0]
