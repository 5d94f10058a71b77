"""Gaussian expectations of THEORY section 4: closed forms vs quadrature vs Monte Carlo.

Three independent computations of the same numbers:

* closed forms (least squares, squared hinge) and Gauss-Hermite (logistic, custom losses)
  as implemented in ``advdyn.losses``;
* adaptive quadrature with scipy (``quad`` with the kink as a breakpoint), written here from
  the definitions, compared to 1e-8 relative (the issue's threshold; scipy is asked for
  1e-12, so the comparison measures our formulas, not scipy);
* Monte Carlo from the definitions (Stein coefficients as ``B^{-1} E[L_r ((r, r*) - m)]``),
  compared within 4 standard errors (a fixed seed; a correct formula fails a 4-SE test
  with probability ~6e-5 per comparison for a random seed).
"""

from __future__ import annotations

import itertools

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate
from scipy.stats import norm

import advdyn as ad
from advdyn.problem.losses import ClassMoments

QUANTITIES = ("adv_risk", "clean_risk", "e", "h1", "h2", "a", "I")


def moments(m, q, mstar=0.3, w=1.1, g=0.4, label=1.0, noise=0.3):
    """Class moments from (r, r*) statistics; residual moments derived consistently."""
    f = lambda v: jnp.atleast_1d(jnp.asarray(v, jnp.float64))  # noqa: E731
    return ClassMoments(
        m=f(m), q=f(q), mstar=f(mstar), w=f(w), g=f(g),
        me=f(m - mstar), qe=f(q - 2 * g + w), label=f(label), noise=jnp.asarray(noise),
    )


def quad(f, kinks=()):
    """E f(Z), Z ~ N(0, 1), by adaptive quadrature split at the kinks."""
    pts = sorted(kinks)
    edges = [-np.inf, *pts, np.inf]
    total = 0.0
    for lo, hi in itertools.pairwise(edges):
        val, _ = integrate.quad(lambda z: f(z) * norm.pdf(z), lo, hi, epsabs=0, epsrel=1e-12,
                                limit=200)
        total += val
    return total


def reference_least_squares(mu, s, a, task):
    """Expectations over the residual u = mu + s z from the definitions (scipy quad)."""
    kink = [-mu / s]
    u = lambda z: mu + s * z  # noqa: E731
    lr = lambda z: u(z) + a * np.sign(u(z))  # noqa: E731
    # Stein: regressing (r, y) on u gives h = (1, -1) E[L_r (u - mu)] / s^2 (regression);
    # for classification y is fixed, r = u + y, so h1 = E[L_r (u - mu)] / s^2 and h2 = 0.
    h1 = quad(lambda z: lr(z) * s * z, kink) / s**2
    return {
        "adv_risk": quad(lambda z: 0.5 * (abs(u(z)) + a) ** 2, kink),
        "clean_risk": quad(lambda z: 0.5 * u(z) ** 2),
        "e": quad(lr, kink),
        "h1": h1,
        "h2": -h1 if task == "regression" else 0.0,
        "a": quad(lambda z: abs(u(z)) + a, kink),
        "I": quad(lambda z: lr(z) ** 2, kink),
    }


@pytest.mark.parametrize("task", ["regression", "classification"])
@pytest.mark.parametrize("a", [0.0, 0.37, 2.0])
@pytest.mark.parametrize("m", [0.0, 0.8, -1.3])
def test_least_squares_closed_form_vs_adaptive_quadrature(task, a, m):
    mom = moments(m=m, q=0.9, label=1.0)
    ex = ad.LeastSquares().expectations(mom, a, task)
    if task == "regression":
        mu, s = float(mom.me[0]), float(np.sqrt(mom.qe[0] + mom.noise**2))
    else:
        mu, s = m - 1.0, float(np.sqrt(mom.q[0]))
    ref = reference_least_squares(mu, s, a, task)
    for k in QUANTITIES:
        np.testing.assert_allclose(float(getattr(ex, k)[0]), ref[k], rtol=1e-8, atol=1e-12,
                                   err_msg=k)


def reference_margin_loss(loss_name, m, q, y, a):
    """Classification expectations over r = m + sqrt(q) z from the definitions (scipy quad)."""
    s = np.sqrt(q)
    r = lambda z: m + s * z  # noqa: E731
    if loss_name == "logistic":
        t = lambda z: a - y * r(z)  # noqa: E731
        val = lambda z: np.logaddexp(0, t(z))  # noqa: E731
        clean = lambda z: np.logaddexp(0, -y * r(z))  # noqa: E731
        p = lambda z: 0.5 * (1 + np.tanh(t(z) / 2))  # noqa: E731  (overflow-free sigmoid)
        # no kink, but splitting at the sigmoid's centre keeps scipy accurate when s is large
        lr, la, kinks = (lambda z: -y * p(z)), p, [(a - y * m) / (y * s)]
    else:  # squared hinge: v = 1 + a - y r, kink at v = 0
        v = lambda z: max(0.0, 1 + a - y * r(z))  # noqa: E731
        val = lambda z: v(z) ** 2  # noqa: E731
        clean = lambda z: max(0.0, 1 - y * r(z)) ** 2  # noqa: E731
        lr, la = (lambda z: -2 * y * v(z)), (lambda z: 2 * v(z))
        kinks = [(1 + a - y * m) / (y * s), (1 - y * m) / (y * s)]
    return {
        "adv_risk": quad(val, kinks),
        "clean_risk": quad(clean, kinks),
        "e": quad(lr, kinks),
        "h1": quad(lambda z: lr(z) * z, kinks) / s,  # Stein: E[L_r (r - m)] / q
        "h2": 0.0,
        "a": quad(la, kinks),
        "I": quad(lambda z: lr(z) ** 2, kinks),
    }


@pytest.mark.parametrize("loss_name", ["logistic", "squared_hinge"])
@pytest.mark.parametrize(("m", "q", "y", "a"), [(0.9, 1.2, 1.0, 0.4), (0.9, 0.3, -1.0, 1.1),
                                                 (-0.2, 2.5, 1.0, 0.0)])
def test_margin_losses_vs_adaptive_quadrature(loss_name, m, q, y, a):
    # logistic: Gauss-Hermite (96 nodes) on a smooth integrand; squared hinge: closed form
    mom = moments(m=m, q=q, label=y)
    ex = ad.make_loss(loss_name).expectations(mom, a, "classification")
    ref = reference_margin_loss(loss_name, m, q, y, a)
    for k in QUANTITIES:
        np.testing.assert_allclose(float(getattr(ex, k)[0]), ref[k], rtol=1e-8, atol=1e-12,
                                   err_msg=k)


def test_custom_loss_quadrature_is_exact_where_gauss_hermite_is():
    """The generic 1-D and 2-D Gauss-Hermite paths reproduce least squares without attack.

    With a = 0 the integrands are polynomials of degree <= 4, which Gauss-Hermite integrates
    exactly, so any discrepancy above rounding is a bug in the generic path (Cholesky
    factor, Stein solve, weights). ``a = E|u|`` is excluded: its kink at u = 0 is exactly
    what Gauss-Hermite cannot integrate to 1e-8 (the reason least squares has closed forms).
    """
    custom = ad.CustomLoss(fn=lambda r, y: 0.5 * (r - y) ** 2)
    closed = ad.LeastSquares()
    mom = moments(m=0.7, q=1.3, mstar=-0.4, w=0.8, g=0.5, label=-1.0, noise=0.25)
    for task in ("regression", "classification"):
        a_ex, b_ex = custom.expectations(mom, 0.0, task), closed.expectations(mom, 0.0, task)
        for k in set(QUANTITIES) - {"a"}:
            np.testing.assert_allclose(getattr(a_ex, k), getattr(b_ex, k), rtol=1e-10,
                                       atol=1e-12, err_msg=f"{task} {k}")


def test_custom_loss_endpoint_rule_matches_closed_form_pointwise():
    custom = ad.CustomLoss(fn=lambda r, y: jnp.logaddexp(0.0, -y * r))
    r = jnp.linspace(-3, 3, 13)
    for y in (1.0, -1.0):
        got = custom.adversarial(r, 0.6, y)
        want = ad.Logistic().adversarial(r, 0.6, y)
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-14)


def monte_carlo(loss, mom_row, a, task, n=400_000, seed=7):
    """Means and standard errors of every expectation, sampled from the definitions."""
    rng = np.random.default_rng(seed)
    m, q, mstar, w, g = (float(mom_row[k]) for k in ("m", "q", "mstar", "w", "g"))
    B = np.array([[q, g], [g, w]])
    rr = rng.multivariate_normal([m, mstar], B, size=n)
    r, rstar = rr[:, 0], rr[:, 1]
    if task == "regression":
        y = rstar + float(mom_row["noise"]) * rng.standard_normal(n)
    else:
        y = np.full(n, float(mom_row["label"]))
    val, lr, la = (np.asarray(v) for v in loss.adversarial(jnp.asarray(r), a, jnp.asarray(y)))
    clean = np.asarray(loss(jnp.asarray(r), jnp.asarray(y)))
    centred = np.stack([r - m, rstar - mstar], axis=1)
    if task == "regression":
        stein = lr[:, None] * np.linalg.solve(B, centred.T).T
    else:  # only r enters: h1 = E[L_r (r - m)] / q
        stein = np.stack([lr * (r - m) / q, np.zeros(n)], axis=1)
    samples = {"adv_risk": val, "clean_risk": clean, "e": lr, "h1": stein[:, 0],
               "h2": stein[:, 1], "a": la, "I": lr**2}
    return {k: (v.mean(), v.std(ddof=1) / np.sqrt(n)) for k, v in samples.items()}


@pytest.mark.parametrize(
    ("loss", "task"),
    [
        (ad.LeastSquares(), "regression"),
        (ad.LeastSquares(), "classification"),
        (ad.Logistic(), "classification"),
        (ad.SquaredHinge(), "classification"),
        (ad.CustomLoss(fn=lambda r, y: jnp.log(jnp.cosh(r - y))), "regression"),
    ],
    ids=["ls-reg", "ls-cls", "logistic", "sq-hinge", "logcosh-reg-2d-quadrature"],
)
def test_expectations_vs_monte_carlo(loss, task):
    mom = moments(m=0.6, q=1.1, mstar=0.2, w=0.9, g=0.5, label=-1.0, noise=0.4)
    a = 0.45
    ex = loss.expectations(mom, a, task)
    row = {k: np.asarray(v).ravel()[0] for k, v in mom._asdict().items()}
    mc = monte_carlo(loss, row, a, task)
    for k in QUANTITIES:
        mean, se = mc[k]
        got = float(getattr(ex, k)[0])
        assert abs(got - mean) <= 4 * se + 1e-12, f"{k}: quadrature {got}, MC {mean} +/- {se}"


def test_theory_worked_example_formulas():
    """THEORY section 5's centred adversarial least-squares formulas, typed in independently."""
    c0 = np.sqrt(2 / np.pi)
    eps, n, s = 0.5, 0.9, 0.7
    mom = moments(m=0.0, q=0.0, mstar=0.0, w=0.0, g=0.0, noise=s)  # residual = noise only
    ex = ad.LeastSquares().expectations(mom, eps * n, "regression")
    a = eps * n
    np.testing.assert_allclose(ex.adv_risk, (s + a * c0) ** 2 / 2 + a**2 * (1 - c0**2) / 2,
                               rtol=1e-13)
    np.testing.assert_allclose(ex.clean_risk, s**2 / 2, rtol=1e-13)
    np.testing.assert_allclose(ex.h1, 1 + a * c0 / s, rtol=1e-13)
    np.testing.assert_allclose(ex.h2, -(1 + a * c0 / s), rtol=1e-13)
    np.testing.assert_allclose(ex.a, c0 * s + a, rtol=1e-13)
    np.testing.assert_allclose(ex.I, s**2 + 2 * a * c0 * s + a**2, rtol=1e-13)


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_degenerate_moments_give_finite_stein_coefficients(task):
    """At theta = 0 (q = 0) the Stein quotient E[L_r z]/sqrt(q) is 0/0; the generic path must
    return the limit E[dL_r/dr] instead of amplified rounding noise."""
    mom = moments(m=0.0, q=0.0, mstar=0.0, w=1.0, g=0.0, label=1.0, noise=0.0)
    a = 0.0
    if task == "classification":
        ex = ad.CustomLoss(fn=lambda r, y: jnp.logaddexp(0.0, -y * r)).expectations(mom, a, task)
        # r = 0 surely: h1 = d/dr [-y sigmoid(-y r)] at r = 0 = sigmoid'(0) = 1/4
        np.testing.assert_allclose(ex.h1, 0.25, rtol=1e-12)
    else:
        ex = ad.CustomLoss(fn=lambda r, y: jnp.log(jnp.cosh(r - y))).expectations(mom, a, task)
        # r = 0 surely, y ~ N(0, 1): L_r = tanh(r - y), so h1 = E sech^2(y) = -h2
        want = quad(lambda z: 1 - np.tanh(z) ** 2)
        np.testing.assert_allclose(ex.h1, want, rtol=1e-8)
        np.testing.assert_allclose(ex.h2, -want, rtol=1e-8)


@pytest.mark.parametrize("q", [25.0, 400.0, 1e4, 1e6])
def test_logistic_quadrature_stays_accurate_for_large_margins_variance(q):
    """|theta| grows during training; q = <theta, K theta> far above 1 makes the sigmoid
    narrow on the Gaussian's scale, where plain Gauss-Hermite loses accuracy (1e-2 at
    q = 1e4 with 96 nodes). The composite rule must still meet the 1e-8 requirement."""
    m, y, a = 0.5 * np.sqrt(q), 1.0, 0.3
    ex = ad.Logistic().expectations(moments(m=m, q=q, label=y), a, "classification")
    ref = reference_margin_loss("logistic", m, q, y, a)
    for k in QUANTITIES:
        np.testing.assert_allclose(float(getattr(ex, k)[0]), ref[k], rtol=1e-8, atol=1e-12,
                                   err_msg=k)
