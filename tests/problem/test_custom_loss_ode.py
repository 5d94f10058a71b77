"""The ODE of a non-smooth custom loss: accurate and affordable.

Before the fix the README's Huber loss at d = 1000, t <= 3 ran 7.5 minutes in ``solve_ode``
and then reported a false divergence with advice for least squares.
"""

from __future__ import annotations

import re
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from advdyn.errors import DivergenceError
from advdyn.problem.losses import ClassMoments, CustomLoss, LeastSquares

README = Path(__file__).resolve().parents[2] / "README.md"


def huber(r, y):
    u = jnp.abs(r - y)
    return jnp.where(u < 1, 0.5 * u**2, u - 0.5)


def _moments(m, q, mstar, w, g, noise) -> ClassMoments:
    f = lambda x: jnp.asarray([x], jnp.float64)  # noqa: E731
    return ClassMoments(m=f(m), q=f(q), mstar=f(mstar), w=f(w), g=f(g), me=f(m - mstar),
                        qe=f(q - 2 * g + w), label=f(1.0), noise=f(noise))


# (m, q, m*, w, g, noise): generic, noiseless, shifted; Cov((r, r*)) is positive definite
CASES = [(0.1, 1.0, 0.0, 1.0, 0.6, 0.3), (0.0, 0.5, 0.0, 1.0, 0.7, 0.0),
         (0.3, 2.0, 0.1, 1.0, 1.2, 0.3)]


@pytest.mark.parametrize("case", CASES)
def test_residual_rule_reproduces_least_squares_closed_forms(case):
    # least squares written as a custom loss: every expectation, Stein coefficients
    # included, must match the closed forms to rounding (the rule is exact for polynomials
    # times the Gaussian on panels cut at the attack's kink u = 0)
    mom, a = _moments(*case), 0.4
    got = CustomLoss(fn=lambda r, y: 0.5 * (r - y) ** 2).expectations(mom, a, "regression")
    want = LeastSquares().expectations(mom, a, "regression")
    for name in want._fields:
        np.testing.assert_allclose(getattr(got, name), getattr(want, name), rtol=1e-12,
                                   atol=1e-13, err_msg=name)


@pytest.mark.parametrize("case", CASES)
def test_huber_expectations_match_a_fine_one_dimensional_reference(case):
    # Huber depends on u = r - y only: E l_eps = E huber(|u| + a) with u ~ N(me, qe + s^2);
    # reference by a 2-million-point Riemann sum over +/- 14 sd (error ~1e-11)
    mom, a = _moments(*case), 0.4
    got = CustomLoss(fn=huber, kinks=(-1.0, 1.0)).expectations(mom, a, "regression")
    mu, s = float(mom.me[0]), float(np.sqrt(mom.qe[0] + mom.noise[0] ** 2))
    u = np.linspace(mu - 14 * s, mu + 14 * s, 2_000_001)
    pdf = np.exp(-0.5 * ((u - mu) / s) ** 2) / (np.sqrt(2 * np.pi) * s) * (u[1] - u[0])
    au = np.abs(u) + a
    risk = np.sum(np.where(au < 1, 0.5 * au**2, au - 0.5) * pdf)
    # h1 = E[d L_r / du]: L_r = sign(u) min(|u| + a, 1) jumps by 2a at 0 and has slope 1
    # on |u| < 1 - a, so h1 = 2a p(0) + P(|u| < 1 - a)
    h1 = 2 * a * np.exp(-0.5 * (mu / s) ** 2) / (np.sqrt(2 * np.pi) * s) + np.sum(
        pdf[np.abs(u) < 1 - a])
    np.testing.assert_allclose(float(got.adv_risk[0]), risk, rtol=1e-9)
    np.testing.assert_allclose(float(got.h1[0]), h1, rtol=1e-5)  # Riemann step at the jumps
    np.testing.assert_allclose(float(got.h2[0]), -float(got.h1[0]), rtol=1e-12)


@pytest.mark.slow  # long: the README example at d = 1000 (ODE and SGD)
def test_readme_huber_example_ode_agrees_with_sgd():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    example = next(b for b in blocks if "kinks=" in b)
    namespace: dict = {}
    exec(compile("import jax.numpy as jnp\nimport advdyn as ad\n" + example, "README.md",
                 "exec"), namespace)
    ode, sgd = namespace["ode_h"], namespace["sgd_h"]
    d = namespace["inst_h"].d
    assert d == 1000 and float(ode.ts[-1]) <= 3.0 + 1e-12
    mean = np.asarray(sgd.ys["adv_risk"]).mean(axis=0)
    gap = np.max(np.abs(mean / np.asarray(ode.ys["adv_risk"]) - 1))
    # the SGD risk of one replicate fluctuates around the ODE on the scale d^-1/2 (3.2%
    # here); the mean of 4 replicates is within that scale
    assert gap < d**-0.5, gap


def test_divergence_advice_is_for_the_loss_at_hand():
    err = DivergenceError("ode", 1.0, 3.0, "risk blew up")
    assert "least squares" not in str(err) and "Lower the learning rate" in str(err)
    assert "least squares" in str(err.with_loss("least_squares"))
    assert "least squares" not in str(err.with_loss("custom:huber"))
