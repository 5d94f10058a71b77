"""Losses, their l2-adversarial version, and their Gaussian expectations (THEORY 2 and 4).

A :class:`Loss` knows three things:

* ``loss(r, y)`` -- the clean pointwise loss ``l(r, y)`` of the prediction ``r``;
* ``loss.adversarial(r, a, y)`` -- the worst case over ``|s| <= a`` by the endpoint rule,
  returning ``(l_eps, L_r, L_a)``;
* ``loss.expectations(moments, a, task)`` -- the per-class expectations of THEORY section 4
  (risks, ``e_c``, the Stein coefficients ``h_c``, ``a_c``, ``I_c``) given the Gaussian
  moments of ``(r, r*)`` in each class.

Built-in losses use closed forms (least squares and squared hinge) or one-dimensional
Gauss-Hermite quadrature (logistic). :class:`CustomLoss` wraps any JAX function ``l(r, y)``
convex in ``r``: the endpoint rule and autodiff give its pointwise derivatives and
Gauss-Hermite quadrature (1-D for classification, 2-D over ``(r, y)`` for regression)
its expectations.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.stats import norm

Array = jax.Array
_TINY = 1e-300


class ClassMoments(NamedTuple):
    """Gaussian moments of ``(r, r*) = (<theta,x>, <theta*,x>)`` in each class (shape ``(C,)``).

    ``me`` and ``qe`` are the mean and variance of ``r - r*``, kept separately so that
    residuals are never formed by cancellation.
    """

    m: Array
    q: Array
    mstar: Array
    w: Array
    g: Array
    me: Array
    qe: Array
    label: Array
    noise: Array


class Expectations(NamedTuple):
    """Per-class expectations of THEORY section 4, each of shape ``(C,)``.

    Attributes
    ----------
    adv_risk, clean_risk : E_c[l_eps], E_c[l]
    e : E_c[L_r]
    h1, h2 : Stein coefficients (``B_c^{-1} E_c[L_r ((r, r*) - mean)]``)
    a : E_c[L_a]
    I : E_c[L_r^2]
    """

    adv_risk: Array
    clean_risk: Array
    e: Array
    h1: Array
    h2: Array
    a: Array
    I: Array


def gauss_hermite(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of ``n``-point Gauss-Hermite quadrature for ``E f(Z)``, ``Z ~ N(0,1)``."""
    z, w = np.polynomial.hermite_e.hermegauss(n)
    return z, w / w.sum()


def _safe_sqrt(x):
    return jnp.sqrt(jnp.maximum(x, _TINY))


class Loss(eqx.Module):
    """Base class of losses ``l(r, y)`` convex in ``r``.

    Subclasses implement ``__call__``; they may override :meth:`adversarial` and
    :meth:`expectations` with closed forms.
    """

    quadrature_nodes: int = eqx.field(default=96, static=True, kw_only=True)

    def __check_init__(self):
        if not 2 <= self.quadrature_nodes <= 300:
            raise ValueError(
                f"quadrature_nodes must be in [2, 300] (numpy's Gauss-Hermite weights lose "
                f"accuracy beyond), got {self.quadrature_nodes}"
            )

    def __call__(self, r, y):
        """Clean pointwise loss ``l(r, y)``."""
        raise NotImplementedError

    def adversarial(self, r, a, y):
        """Adversarial loss by the endpoint rule and its partial derivatives.

        Parameters
        ----------
        r : array
            Clean prediction ``<theta, x>``.
        a : array
            Attack size ``eps * |theta|`` (>= 0).
        y : array
            Target.

        Returns
        -------
        value, L_r, L_a : arrays
            ``l_eps = max(l(r+a, y), l(r-a, y))`` and its derivatives in ``r`` and ``a`` at the
            winning endpoint.
        """
        lp, dp = _value_and_dr(self, r + a, y)
        lm, dm = _value_and_dr(self, r - a, y)
        plus = lp >= lm
        d_win = jnp.where(plus, dp, dm)
        # d l_eps/da is +l'(r+a) or -l'(r-a); convexity makes it >= 0, and at a = 0 the
        # one-sided derivative is |l'(r)|, so |l'(winner)| covers every case.
        return jnp.where(plus, lp, lm), d_win, jnp.abs(d_win)

    def expectations(self, mom: ClassMoments, a, task: str) -> Expectations:
        """Per-class expectations by Gauss-Hermite quadrature (see module docstring).

        Parameters
        ----------
        mom : ClassMoments
            Moments of ``(r, r*)`` per class.
        a : scalar
            Attack size ``eps * |theta|``.
        task : {"regression", "classification"}
        """
        z, wq = gauss_hermite(self.quadrature_nodes)
        z, wq = jnp.asarray(z), jnp.asarray(wq)
        if task == "classification":
            s = _safe_sqrt(mom.q)[:, None]
            r = mom.m[:, None] + s * z
            y = mom.label[:, None]
            val, lr, la = self.adversarial(r, a, y)
            E = lambda f: f @ wq  # noqa: E731
            h1 = self._stein_or_derivative(E(lr * z), s[:, 0], r, a, y, E)
            return Expectations(
                adv_risk=E(val),
                clean_risk=E(self(r, y)),
                e=E(lr),
                h1=h1,
                h2=jnp.zeros_like(mom.m),
                a=E(la),
                I=E(lr**2),
            )
        # regression: (y, r) = mean + L (z1, z2), L lower triangular; y = r* + noise * xi
        var_y = mom.w + mom.noise**2
        ly = _safe_sqrt(var_y)[:, None, None]
        c = mom.g[:, None, None] / ly
        # conditional variance of r given y, written without cancellation:
        # q - g^2/var_y = [qe var_y - ge^2 + noise^2 (2 ge + w)] / var_y,  ge = g - w
        ge = mom.g - mom.w
        cond = (mom.qe * var_y - ge**2 + mom.noise**2 * (2 * ge + mom.w)) / var_y
        sr = _safe_sqrt(cond)[:, None, None]
        z1, z2 = z[:, None], z[None, :]
        y = mom.mstar[:, None, None] + ly * z1
        r = mom.m[:, None, None] + c * z1 + sr * z2
        w2 = wq[:, None] * wq[None, :]
        E = lambda f: jnp.sum(f * w2, axis=(-2, -1))  # noqa: E731
        val, lr, la = self.adversarial(r, a, y)
        h1 = self._stein_or_derivative(E(lr * z2), sr[:, 0, 0], r, a, y, E)
        h2 = (E(lr * z1) - c[:, 0, 0] * h1) / ly[:, 0, 0]
        return Expectations(
            adv_risk=E(val),
            clean_risk=E(self(r, y)),
            e=E(lr),
            h1=h1,
            h2=h2,
            a=E(la),
            I=E(lr**2),
        )


    def _stein_or_derivative(self, stein_sum, s, r, a, y, E):
        """``h1 = E[L_r z] / s`` (Stein), or ``E[dL_r/dr]`` where ``s`` is degenerate.

        The two agree for losses differentiable in ``r``; the Stein form also captures the
        jumps of kinked losses but divides rounding noise by ``s`` when ``s -> 0``
        (e.g. ``theta = 0``), where the autodiff form is used instead.
        """
        dlr = jnp.vectorize(jax.grad(lambda rr, yy: self.adversarial(rr, a, yy)[1]))(r, y)
        degenerate = s < 1e-7
        return jnp.where(degenerate, E(dlr), stein_sum / jnp.where(degenerate, 1.0, s))


def _value_and_dr(loss: Loss, r, y):
    """Pointwise ``(l(r, y), dl/dr)`` for arrays of any broadcastable shapes."""
    return jnp.vectorize(jax.value_and_grad(loss.__call__))(r, y)


class LeastSquares(Loss):
    """``l(r, y) = (r - y)^2 / 2``; adversarial ``(|r - y| + a)^2 / 2``. Closed forms throughout."""

    def __call__(self, r, y):
        return 0.5 * (r - y) ** 2

    def adversarial(self, r, a, y):
        u = r - y
        au = jnp.abs(u)
        return 0.5 * (au + a) ** 2, u + a * jnp.sign(u), au + a

    def expectations(self, mom: ClassMoments, a, task: str) -> Expectations:
        # residual u = r - y is Gaussian N(mu, s^2) in each class
        if task == "regression":
            mu, s2 = mom.me, mom.qe + mom.noise**2
        else:
            mu, s2 = mom.m - mom.label, mom.q
        s = _safe_sqrt(s2)
        k = mu / s
        pdf, cdf = norm.pdf(k), norm.cdf(k)
        e_abs = 2 * s * pdf + mu * (2 * cdf - 1)  # folded-normal mean E|u|
        second = mu**2 + s2
        I = second + 2 * a * e_abs + a**2
        h1 = 1 + 2 * a * pdf / s  # 1 + 2a * density of u at 0 (Stein through the kink)
        return Expectations(
            adv_risk=I / 2,
            clean_risk=second / 2,
            e=mu + a * (2 * cdf - 1),
            h1=h1,
            h2=-h1 if task == "regression" else jnp.zeros_like(h1),
            a=e_abs + a,
            I=I,
        )


class Logistic(Loss):
    """``l(r, y) = log(1 + exp(-y r))``, ``y = +/-1``; adversarial ``log(1 + exp(a - y r))``."""

    def __call__(self, r, y):
        return jax.nn.softplus(-y * r)

    def adversarial(self, r, a, y):
        t = a - y * r
        p = jax.nn.sigmoid(t)
        return jax.nn.softplus(t), -y * p, p


class SquaredHinge(Loss):
    """``l(r, y) = max(0, 1 - y r)^2``, ``y = +/-1``; adversarial ``max(0, 1 + a - y r)^2``.

    Expectations in closed form (moments of a truncated Gaussian).
    """

    def __call__(self, r, y):
        return jax.nn.relu(1 - y * r) ** 2

    def adversarial(self, r, a, y):
        v = jax.nn.relu(1 + a - y * r)
        return v**2, -2 * y * v, 2 * v

    def expectations(self, mom: ClassMoments, a, task: str) -> Expectations:
        y = mom.label
        s = _safe_sqrt(mom.q)

        def positive_part_moments(mu):
            k = mu / s
            pdf, cdf = norm.pdf(k), norm.cdf(k)
            first = mu * cdf + s * pdf
            second = (mu**2 + mom.q) * cdf + mu * s * pdf
            return first, second, cdf

        v1, v2, p = positive_part_moments(1 + a - y * mom.m)
        _, c2, _ = positive_part_moments(1 - y * mom.m)
        return Expectations(
            adv_risk=v2,
            clean_risk=c2,
            e=-2 * y * v1,
            h1=2 * p,
            h2=jnp.zeros_like(p),
            a=2 * v1,
            I=4 * v2,
        )


class CustomLoss(Loss):
    """Any JAX function ``fn(r, y)`` convex in ``r``, handled by autodiff and quadrature.

    Parameters
    ----------
    fn : callable
        Scalar loss ``fn(r, y)``; it must be differentiable almost everywhere in ``r``.
    quadrature_nodes : int
        Gauss-Hermite nodes per dimension. Kinks in ``fn`` slow its convergence.
    """

    fn: Callable = eqx.field(static=True)

    def __call__(self, r, y):
        return self.fn(r, y)


BUILTIN = {"least_squares": LeastSquares, "logistic": Logistic, "squared_hinge": SquaredHinge}


def make_loss(spec: str | Callable | Loss) -> Loss:
    """Return a :class:`Loss` from a built-in name, a callable ``l(r, y)`` or a Loss."""
    if isinstance(spec, Loss):
        return spec
    if isinstance(spec, str):
        return BUILTIN[spec]()
    return CustomLoss(fn=spec)
