"""Losses, their l2-adversarial version, and their Gaussian expectations (THEORY 2 and 4).

An `AbstractLoss` knows three things:

* ``loss(r, y)`` -- the clean pointwise loss ``l(r, y)`` of the prediction ``r``;
* ``loss.adversarial(r, a, y)`` -- the worst case over ``|s| <= a`` by the endpoint rule,
  returning ``(l_eps, L_r, L_a)``;
* ``loss.expectations(moments, a, task)`` -- the per-class expectations of THEORY section 4
  (risks, ``e_c``, the Stein coefficients ``h_c``, ``a_c``, ``I_c``) given the Gaussian
  moments of ``(r, r*)`` in each class.

Built-in losses use closed forms (least squares and squared hinge) or one-dimensional
quadrature (logistic). [`CustomLoss`][advdyn.problem.losses.CustomLoss] wraps any JAX function
``l(r, y)`` convex in
``r``: the endpoint rule and autodiff give its pointwise derivatives, and quadrature its
expectations -- for classification a composite Gauss-Legendre rule refined around the
margin transition (`margin_rule`, accurate for any ``<theta, K theta>``), for
regression a 2-D Gauss-Hermite rule over ``(y, r)``.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.stats import norm

from advdyn import checks
from advdyn.deprecation import renamed
from advdyn.typing import Array

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
    """Nodes and weights of ``n``-point Gauss-Hermite quadrature for ``E f(Z)``, ``Z ~ N(0,1)``.

    Parameters
    ----------
    n : int
        Number of nodes.

    Returns
    -------
    z, w : ndarray, shape (n,)
        Nodes and weights; ``sum(w) = 1``.
    """
    z, w = np.polynomial.hermite_e.hermegauss(n)
    return z, w / w.sum()


# 1-D rule for margin losses: a fine region where y r - a lies in [-W, 1 + W] (the logistic
# transition and a hinge-type kink at y r = 1 + a; the logistic tail beyond W is < e^-W),
# cut into _MID_PANELS panels, plus the Gaussian body on [-_Z_MAX, _Z_MAX] left and right of
# it; Gauss-Legendre with _PANEL_NODES nodes on every panel.
_W, _Z_MAX, _MID_PANELS, _PANEL_NODES = 24.0, 12.0, 8, 32


def margin_rule(m, s, y, a):
    """Quadrature nodes and weights for ``E f(m + s Z)``, ``Z ~ N(0, 1)``, per class.

    Gauss-Hermite needs ever more nodes when the loss varies on a scale ``1/s`` much finer
    than the Gaussian (``s = sqrt(<theta, K theta>)`` large). This composite Gauss-Legendre
    rule puts panels of width at most ``(2W + 1) / (8 s)`` around the transition of a margin
    loss (``y r`` near ``a`` to ``1 + a``), so the relative error stays below about 1e-10
    for any ``s``.

    Parameters
    ----------
    m, s, y : Array, shape (C,)
        Mean and standard deviation of ``r`` and the label of each class.
    a : scalar
        Attack size ``eps |theta|``.

    Returns
    -------
    z, w : Array, shape (C, N)
        Standard-normal nodes and weights (including the Gaussian density); ``sum(w) = 1``
        up to ~1e-30.
    """
    lo = jnp.where(y > 0, a - _W, -(a + 1 + _W))
    hi = jnp.where(y > 0, a + 1 + _W, -(a - _W))
    z_lo = jnp.clip((lo - m) / s, -_Z_MAX, _Z_MAX)
    z_hi = jnp.clip((hi - m) / s, -_Z_MAX, _Z_MAX)
    mid = z_lo[:, None] + (z_hi - z_lo)[:, None] * jnp.linspace(0.0, 1.0, _MID_PANELS + 1)
    zmax = jnp.full_like(z_lo, _Z_MAX)[:, None]
    edges = jnp.concatenate([-zmax, mid, zmax], axis=1)  # (C, panels + 1)
    return _panel_rule(edges, _PANEL_NODES)


def _panel_rule(edges, nodes: int):
    """Composite Gauss-Legendre rule for ``E f(Z)``, ``Z ~ N(0, 1)``, on given panels.

    The rule of [`margin_rule`][advdyn.problem.losses.margin_rule] and
    [`residual_rule`][advdyn.problem.losses.residual_rule] once their panels are chosen.

    Parameters
    ----------
    edges : Array, shape (C, P + 1)
        Non-decreasing panel edges in standard-normal units, one row per class.
    nodes : int
        Gauss-Legendre nodes per panel (static).

    Returns
    -------
    z, w : Array, shape (C, P * nodes)
        Nodes and weights (the Gaussian density included); a panel of zero width adds
        weight zero.
    """
    x_gl, w_gl = np.polynomial.legendre.leggauss(nodes)
    half = (edges[:, 1:] - edges[:, :-1]) / 2
    centre = (edges[:, 1:] + edges[:, :-1]) / 2
    z = centre[..., None] + half[..., None] * x_gl
    w = half[..., None] * w_gl * norm.pdf(z)
    return z.reshape(edges.shape[0], -1), w.reshape(edges.shape[0], -1)


def _safe_sqrt(x):
    return jnp.sqrt(jnp.maximum(x, _TINY))


class AbstractLoss(eqx.Module):
    """A loss ``l(r, y)`` convex in ``r``: the interface the theory and the simulators read.

    Every concrete loss is a small final class that implements the three methods, with
    closed forms where they exist and otherwise the generic rules
    `endpoint_adversarial` (autodiff of ``l``) and `quadrature_expectations`.
    """

    @abc.abstractmethod
    def __call__(self, r: Array, y: Array) -> Array:
        """Clean pointwise loss ``l(r, y)``, broadcast over ``r`` (prediction) and ``y``."""

    @abc.abstractmethod
    def adversarial(self, r: Array, a: Array, y: Array) -> tuple[Array, Array, Array]:
        """Worst-case loss at attack size ``a = eps |theta|`` and its derivatives.

        Parameters
        ----------
        r : Array
            Clean prediction ``<theta, x>``.
        a : Array
            Attack size ``eps * |theta|`` (>= 0).
        y : Array
            Target.

        Returns
        -------
        value, L_r, L_a : Array
            ``l_eps(r, y) = max_{|delta| <= a} l(r + delta, y)`` and its derivatives in ``r``
            and ``a``.
        """

    @abc.abstractmethod
    def expectations(self, mom: ClassMoments, a: Array, task: str) -> Expectations:
        """Per-class Gaussian expectations of the adversarial loss (THEORY section 4).

        Parameters
        ----------
        mom : ClassMoments
            Moments of ``(r, r*)`` per class.
        a : Array
            Attack size ``eps * |theta|``.
        task : {"regression", "classification"}

        Returns
        -------
        Expectations
            Arrays of shape ``(C,)``.
        """


def _check_nodes(nodes: int) -> None:
    if not 2 <= nodes <= 300:
        raise ValueError(
            f"quadrature_nodes must be in [2, 300] (numpy's Gauss-Hermite weights lose "
            f"accuracy beyond), got {nodes}"
        )


def endpoint_adversarial(loss: AbstractLoss, r, a, y) -> tuple[Array, Array, Array]:
    """Adversarial loss by the endpoint rule and its partial derivatives.

    Parameters
    ----------
    loss : AbstractLoss
        Supplies the clean loss ``l(r, y)`` (differentiated by autodiff).
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
    lp, dp = _value_and_dr(loss, r + a, y)
    lm, dm = _value_and_dr(loss, r - a, y)
    plus = lp >= lm
    d_win = jnp.where(plus, dp, dm)
    # d l_eps/da is +l'(r+a) or -l'(r-a); convexity makes it >= 0, and at a = 0 the
    # one-sided derivative is |l'(r)|, so |l'(winner)| covers every case.
    return jnp.where(plus, lp, lm), d_win, jnp.abs(d_win)


def quadrature_expectations(
    loss: AbstractLoss, mom: ClassMoments, a, task: str, nodes: int = 96
) -> Expectations:
    """Per-class expectations by quadrature (see module docstring).

    Parameters
    ----------
    loss : AbstractLoss
        Supplies ``l`` and its adversarial form.
    mom : ClassMoments
        Moments of ``(r, r*)`` per class.
    a : scalar
        Attack size ``eps * |theta|``.
    task : {"regression", "classification"}
    nodes : int
        Gauss-Hermite nodes per dimension of the 2-D regression rule.

    Returns
    -------
    Expectations
        Arrays of shape ``(C,)``.
    """
    if task == "classification":
        s = _safe_sqrt(mom.q)[:, None]
        z, wq = margin_rule(mom.m, s[:, 0], mom.label, a)
        r = mom.m[:, None] + s * z
        y = mom.label[:, None]
        val, lr, la = loss.adversarial(r, a, y)
        E = lambda f: jnp.sum(f * wq, axis=-1)  # noqa: E731
        h1 = _stein_or_derivative(loss, E(lr * z), s[:, 0], r, a, y, E)
        return Expectations(
            adv_risk=E(val),
            clean_risk=E(loss(r, y)),
            e=E(lr),
            h1=h1,
            h2=jnp.zeros_like(mom.m),
            a=E(la),
            I=E(lr**2),
        )
    # regression: (y, r) = mean + L (z1, z2), L lower triangular; y = r* + noise * xi
    z, wq = gauss_hermite(nodes)
    z, wq = jnp.asarray(z), jnp.asarray(wq)
    var_y = jnp.maximum(mom.w + mom.noise**2, _TINY)
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
    val, lr, la = loss.adversarial(r, a, y)
    h1 = _stein_or_derivative(loss, E(lr * z2), sr[:, 0, 0], r, a, y, E)
    h2 = (E(lr * z1) - c[:, 0, 0] * h1) / ly[:, 0, 0]
    return Expectations(
        adv_risk=E(val),
        clean_risk=E(loss(r, y)),
        e=E(lr),
        h1=h1,
        h2=h2,
        a=E(la),
        I=E(lr**2),
    )


def _stein_or_derivative(loss: AbstractLoss, stein_sum, s, r, a, y, E):
    """``h1 = E[L_r z] / s`` (Stein), or ``E[dL_r/dr]`` where ``s`` is degenerate.

    The two agree for losses differentiable in ``r``; the Stein form also captures the
    jumps of kinked losses but divides rounding noise by ``s`` when ``s -> 0``
    (e.g. ``theta = 0``), where the autodiff form is used instead.
    """
    degenerate = s < 1e-7

    def derivative_form():
        dlr = jnp.vectorize(jax.grad(lambda rr, yy: loss.adversarial(rr, a, yy)[1]))
        return E(dlr(r, y))

    # autodiff over every node only when some class needs it (a real branch in the ODE)
    fallback = jax.lax.cond(jnp.any(degenerate), derivative_form, lambda: stein_sum)
    return jnp.where(degenerate, fallback, stein_sum / jnp.where(degenerate, 1.0, s))


def _value_and_dr(loss: AbstractLoss, r, y):
    """Pointwise ``(l(r, y), dl/dr)`` for arrays of any broadcastable shapes."""
    return jnp.vectorize(jax.value_and_grad(loss.__call__))(r, y)


class LeastSquares(AbstractLoss):
    """``l(r, y) = (r - y)^2 / 2``; adversarial ``(|r - y| + a)^2 / 2``. Closed forms throughout."""

    def __call__(self, r, y):
        """Clean loss ``(r - y)^2 / 2``."""
        return 0.5 * (r - y) ** 2

    def adversarial(self, r, a, y):
        """``((|u| + a)^2 / 2, u + a sign(u), |u| + a)`` with ``u = r - y``."""
        u = r - y
        au = jnp.abs(u)
        return 0.5 * (au + a) ** 2, u + a * jnp.sign(u), au + a

    def expectations(self, mom: ClassMoments, a, task: str) -> Expectations:
        """Closed forms over the Gaussian residual ``u = r - y`` (THEORY section 4)."""
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


class Logistic(AbstractLoss):
    """``l(r, y) = log(1 + exp(-y r))``, ``y = +/-1``; adversarial ``log(1 + exp(a - y r))``.

    Parameters
    ----------
    quadrature_nodes : int
        Nodes of the regression rule (classification uses `margin_rule`).
    """

    quadrature_nodes: int = eqx.field(default=96, static=True, kw_only=True)

    def __check_init__(self) -> None:
        _check_nodes(self.quadrature_nodes)

    def __call__(self, r, y):
        """Clean loss ``log(1 + exp(-y r))``."""
        return jax.nn.softplus(-y * r)

    def adversarial(self, r, a, y):
        """``(softplus(t), -y sigmoid(t), sigmoid(t))`` with ``t = a - y r``."""
        t = a - y * r
        p = jax.nn.sigmoid(t)
        return jax.nn.softplus(t), -y * p, p

    def expectations(self, mom: ClassMoments, a, task: str) -> Expectations:
        """By quadrature (`quadrature_expectations`)."""
        return quadrature_expectations(self, mom, a, task, self.quadrature_nodes)


class SquaredHinge(AbstractLoss):
    """``l(r, y) = max(0, 1 - y r)^2``, ``y = +/-1``; adversarial ``max(0, 1 + a - y r)^2``.

    Expectations in closed form (moments of a truncated Gaussian).
    """

    def __call__(self, r, y):
        """Clean loss ``max(0, 1 - y r)^2``."""
        return jax.nn.relu(1 - y * r) ** 2

    def adversarial(self, r, a, y):
        """``(v^2, -2 y v, 2 v)``, ``v = max(0, 1 + a - y r)``; see `endpoint_adversarial`."""
        v = jax.nn.relu(1 + a - y * r)
        return v**2, -2 * y * v, 2 * v

    def expectations(self, mom: ClassMoments, a, task: str) -> Expectations:
        """Truncated-Gaussian moments of ``v = 1 + a - y r`` (THEORY section 4)."""
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


# residual rule for regression custom losses (`residual_rule`): the Gaussian body of
# u = r - y on [-_Z_MAX, _Z_MAX] cut into _BODY_PANELS equal panels, further cut at every
# kink; _RES_NODES Gauss-Legendre nodes per panel; _Y_NODES Gauss-Hermite nodes for y | u
_BODY_PANELS, _RES_NODES, _Y_NODES = 8, 12, 8


def residual_rule(mu, s, kinks):
    """Composite Gauss-Legendre rule for ``E f(mu + s Z)``, ``Z ~ N(0, 1)``, cut at kinks.

    A fixed Gauss-Hermite rule converges slowly for an integrand with kinks, and its error
    jumps as a kink moves between nodes -- noise that an adaptive ODE solver at tight
    tolerance answers with ever smaller steps. Cutting the panels at the kinks makes the
    integrand smooth on every panel: the rule is then accurate to about 1e-12 and smooth in
    ``(mu, s)``.

    Parameters
    ----------
    mu, s : Array, shape (C,)
        Mean and standard deviation of the residual ``u`` per class.
    kinks : Array, shape (K,)
        Values of ``u`` where the integrand is not smooth (static count).

    Returns
    -------
    z, w : Array, shape (C, N)
        Standard-normal nodes and weights (Gaussian density included); ``sum(w) = 1`` up to
        ~1e-14.
    """
    body = jnp.linspace(-_Z_MAX, _Z_MAX, _BODY_PANELS + 1)
    body = jnp.broadcast_to(body, (len(mu), _BODY_PANELS + 1))
    zk = jnp.clip((kinks[None, :] - mu[:, None]) / s[:, None], -_Z_MAX, _Z_MAX)
    edges = jnp.sort(jnp.concatenate([body, zk], axis=1), axis=1)
    return _panel_rule(edges, _RES_NODES)


class CustomLoss(AbstractLoss):
    """Any JAX function ``fn(r, y)`` convex in ``r``, handled by autodiff and quadrature.

    Parameters
    ----------
    fn : callable
        Scalar loss ``fn(r, y)``; it must be differentiable almost everywhere in ``r``.
    kinks : tuple of float
        Regression: values of the residual ``u = r - y`` where ``fn`` is not smooth, e.g.
        ``(-1.0, 1.0)`` for the Huber loss of width 1. The expectations are then computed
        with a rule cut at these points and at the kinks the attack adds (``u = 0`` and
        ``u = k +/- a``), accurate to about 1e-12 (`residual_rule`); without them a
        kink of ``fn`` costs accuracy (algebraic convergence, about 1e-6 relative).
        Classification uses `margin_rule` and ignores ``kinks``.
    quadrature_nodes : int
        Gauss-Hermite nodes of the legacy 2-D rule (kept for compatibility; the regression
        expectations use `residual_rule`).
    """

    fn: Callable = eqx.field(static=True)
    quadrature_nodes: int = eqx.field(default=96, static=True, kw_only=True)
    kinks: tuple[float, ...] = eqx.field(default=(), static=True, kw_only=True)

    def __check_init__(self) -> None:
        checks.loss_function(self.fn, "fn")
        for k in self.kinks:
            checks.real(k, "kinks")
        _check_nodes(self.quadrature_nodes)

    def __call__(self, r, y):
        """Clean loss ``fn(r, y)``."""
        return self.fn(r, y)

    def adversarial(self, r, a, y):
        """By the endpoint rule (`endpoint_adversarial`)."""
        return endpoint_adversarial(self, r, a, y)

    def expectations(self, mom: ClassMoments, a, task: str) -> Expectations:
        """Per-class expectations; regression by the kink-aware rule over ``(u, y)``.

        The residual ``u = r - y`` is the outer variable (`residual_rule`, cut at the
        kinks), ``y`` given ``u`` the inner one (Gauss-Hermite). Stein's lemma in these
        coordinates gives ``E[dL_r/du]`` and ``E[dL_r/dy]``, hence ``h1`` and ``h2``.
        Arguments and result as in
        [`AbstractLoss.expectations`][advdyn.problem.losses.AbstractLoss.expectations].
        """
        if task != "regression":
            return quadrature_expectations(self, mom, a, task, self.quadrature_nodes)
        # u = r - y ~ N(me, qe + noise^2); y | u ~ N(mstar + beta (u - me), s_c^2) with
        # beta = Cov(y, u) / Var(u), Cov(y, u) = ge - noise^2 (ge = g - w), and
        # Var(u) s_c^2 = (w qe - ge^2) + noise^2 q, written without cancellation
        var_u = jnp.maximum(mom.qe + mom.noise**2, _TINY)
        s_u = jnp.sqrt(var_u)
        ge = mom.g - mom.w
        beta = (ge - mom.noise**2) / var_u
        s_c = _safe_sqrt((mom.w * mom.qe - ge**2 + mom.noise**2 * mom.q) / var_u)
        kinks = jnp.asarray(self.kinks, jnp.float64).reshape(-1)
        kinks = jnp.concatenate([jnp.zeros(1), kinks, kinks - a, kinks + a])
        z1, w1 = residual_rule(mom.me, s_u, kinks)
        z2_nodes, w2 = gauss_hermite(_Y_NODES)
        z1, z2 = z1[:, :, None], jnp.asarray(z2_nodes)[None, None, :]
        u = mom.me[:, None, None] + s_u[:, None, None] * z1
        y = mom.mstar[:, None, None] + beta[:, None, None] * (u - mom.me[:, None, None]) + (
            s_c[:, None, None] * z2)
        r = u + y
        wq = w1[:, :, None] * jnp.asarray(w2)[None, None, :]
        E = lambda f: jnp.sum(f * wq, axis=(-2, -1))  # noqa: E731
        val, lr, la = self.adversarial(r, a, y)
        # Stein: E[L_r z2] = s_c E[dg/dy], E[L_r z1] = s_u (E[dg/du] + beta E[dg/dy]) for
        # g(u, y) = L_r(u + y, y); dg/du = dL_r/dr (h1) and dg/dy = h1 + h2
        d_y = self._stein_or_autodiff(E(lr * z2), s_c, r, a, y, E, along_y=True)
        d_u = self._stein_or_autodiff(E(lr * z1) - s_u * beta * d_y, s_u, r, a, y, E,
                                      along_y=False)
        return Expectations(
            adv_risk=E(val),
            clean_risk=E(self(r, y)),
            e=E(lr),
            h1=d_u,
            h2=d_y - d_u,
            a=E(la),
            I=E(lr**2),
        )

    def _stein_or_autodiff(self, stein_sum, s, r, a, y, E, along_y: bool):
        """``stein_sum / s``, or the autodiff expectation where ``s`` is degenerate."""
        degenerate = s < 1e-7

        def derivative_form():
            def lr_of(rr, yy):
                return self.adversarial(rr, a, yy)[1]

            if along_y:  # d/dy of L_r(u + y, y) = dL_r/dr + dL_r/dy
                grad = jax.grad(lambda yy, uu: lr_of(uu + yy, yy))
                return E(jnp.vectorize(grad)(y, r - y))
            return E(jnp.vectorize(jax.grad(lr_of))(r, y))

        fallback = jax.lax.cond(jnp.any(degenerate), derivative_form,
                                lambda: stein_sum / jnp.where(degenerate, 1.0, s))
        return jnp.where(degenerate, fallback, stein_sum / jnp.where(degenerate, 1.0, s))


BUILTIN = {"least_squares": LeastSquares, "logistic": Logistic, "squared_hinge": SquaredHinge}


def make_loss(spec: str | Callable | AbstractLoss) -> AbstractLoss:
    """Return an `AbstractLoss` from a built-in name, a callable ``l(r, y)`` or a loss.

    Parameters
    ----------
    spec : str, callable or AbstractLoss
        ``"least_squares"``, ``"logistic"``, ``"squared_hinge"``, a JAX function
        ``l(r, y)`` convex in ``r`` (wrapped in [`CustomLoss`][advdyn.problem.losses.CustomLoss]),
        or an `AbstractLoss` (returned).

    Returns
    -------
    AbstractLoss

    Raises
    ------
    ConfigError
        For an unknown name or something that is neither a name nor callable.
    """
    if isinstance(spec, AbstractLoss):
        return spec
    if isinstance(spec, str):
        return BUILTIN[checks.loss_name(spec, "loss")]()
    return CustomLoss(fn=spec)

#: old names (advdyn 0.1), served with a DeprecationWarning until 0.2
__getattr__ = renamed(__name__, {"Loss": "AbstractLoss"})  # rename29: keep
