"""The deterministic-equivalent ODE against closed forms and independent implementations."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp

import advdyn as ad
import advdyn.theory.statistics
from advdyn.config.schema import ProblemConfig
from advdyn.io import to_dataset
from advdyn.problem.state import DirectionState
from advdyn.simulate.sgd import sgd_step
from advdyn.theory.drift import drift_terms
from advdyn.theory.statistics import expectations, statistics


def scalar_risk(t, gamma, s2_0, sigma):
    """Hand-derived solution (docs/theory.md): eps = 0, K = I, one centred class.

    ds^2/dt = -(2 gamma - gamma^2) s^2 + 2 gamma sigma^2,  R = s^2 / 2.
    """
    s2_inf = 2 * sigma**2 / (2 - gamma)
    return 0.5 * (s2_inf + (s2_0 - s2_inf) * np.exp(-(2 * gamma - gamma**2) * t))


@pytest.mark.parametrize(("gamma", "sigma", "t_max"), [(0.8, 0.3, 8.0), (1.0, 0.0, 20.0),
                                                      (1.6, 0.5, 10.0)])
def test_isotropic_least_squares_matches_hand_derived_scalar_ode(gamma, sigma, t_max):
    cfg = ProblemConfig(d=300, task={"kind": "regression", "noise": sigma}, epsilon=0.0)
    inst = ad.instantiate(cfg)
    times = np.linspace(0, t_max, 41)
    ds = to_dataset(ad.solve_ode(inst, ad.Constant(gamma), times))
    s2_0 = float(jnp.sum((inst.theta0 - inst.theta_star) ** 2)) + sigma**2
    want = scalar_risk(times, gamma, s2_0, sigma)
    # Noiseless case: the risk falls by e^-20 ~ 2e-9 and must keep 1e-6 *relative* accuracy
    # (the error-variable formulation and tiny atol exist for this; THEORY 10). The solver
    # runs at rtol = 1e-8, so 1e-6 leaves two orders of margin for error accumulation.
    np.testing.assert_allclose(ds.clean_risk, want, rtol=1e-6)
    np.testing.assert_allclose(ds.adv_risk, want, rtol=1e-6)


def pqm_reference(inst, gamma, times):
    """THEORY section 5 in its original (P, Q, M) variables, assembled here from the
    per-class expectations and integrated with scipy's DOP853 -- independent of the error
    variables, the drift module and diffrax used by advdyn.solve_ode."""
    lam, ts, mu = (np.asarray(x) for x in (inst.eigenvalues, inst.theta_star, inst.means))
    pi, eps, delta, d = np.asarray(inst.weights), float(inst.epsilon), float(inst.ridge), inst.d
    C = len(pi)

    def split(y):
        return y[:d], y[d : 2 * d], y[2 * d :].reshape(C, d)

    def stats_of(P, Q, M):
        # statistics as the error-variable Statistics expects them, from (P, Q, M)
        E2, F, G = P - 2 * Q + ts**2, Q - ts**2, M - ts * mu
        return ad.theory.statistics.Statistics(
            qe=jnp.asarray(lam @ E2), ge=jnp.asarray(lam @ F), w=jnp.asarray(lam @ ts**2),
            me=jnp.asarray(G.sum(-1)), mstar=jnp.asarray(mu @ ts),
            norm2=jnp.asarray(P.sum()), overlap=jnp.asarray(Q.sum()),
        )

    # only the per-class expectations come from advdyn (jitted: the logistic quadrature is
    # slow when run eagerly at every right-hand-side call)
    ex_of = jax.jit(lambda st: expectations(st, inst))

    def rhs(t, y):
        P, Q, M = split(y)
        ex = ex_of(stats_of(P, Q, M))
        e, h1, h2, a, I = (np.asarray(v) for v in (ex.e, ex.h1, ex.h2, ex.a, ex.I))
        n = np.sqrt(P.sum())
        rho = eps * (pi @ a) / n + delta
        D = (pi * h1) @ lam + rho
        H = (pi * h2) @ lam
        N = (pi * I) @ lam
        dP = -2 * gamma * (D * P + H * Q + (pi * e) @ M) + gamma**2 / d * N
        dQ = -gamma * (D * Q + H * ts**2 + (pi * e) @ (ts * mu))
        dM = -gamma * (D * M + H * ts * mu + mu * ((pi * e) @ mu))
        return np.concatenate([dP, dQ, dM.ravel()])

    th0 = np.asarray(inst.theta0)
    y0 = np.concatenate([th0**2, th0 * ts, (th0 * mu).ravel()])
    sol = solve_ivp(rhs, (0, times[-1]), y0, t_eval=times, method="DOP853", rtol=1e-11,
                    atol=1e-14)
    risks = []
    for y in sol.y.T:
        st = stats_of(*split(y))
        risks.append(float(inst.weights @ ex_of(st).adv_risk))
    return np.array(risks)


@pytest.mark.parametrize(
    ("cfg", "gamma"),
    [
        (ProblemConfig(d=2000, spectrum={"kind": "uniform", "low": 0.2, "high": 1.8},
                       task={"kind": "regression", "noise": 0.3}, epsilon=0.5, ridge=0.05), 0.8),
        (ProblemConfig(d=2000, spectrum={"kind": "uniform", "low": 0.3, "high": 1.7},
                       task={"kind": "classification", "mean_norm": 1.5}, loss="logistic",
                       epsilon=0.4), 2.0),
        (ProblemConfig(d=40, spectrum={"kind": "two_level", "first": 2.0, "second": 0.5,
                                       "fraction": 0.3},
                       task={"kind": "regression", "noise": 0.2}, epsilon=0.3,
                       components=[{"weight": 0.4, "mean_norm": 1.0},
                                   {"weight": 0.6, "mean_norm": 0.5, "mean_direction": "teacher",
                                    "spectrum": {"kind": "uniform", "low": 0.2, "high": 1.0}}]),
         0.7),
    ],
    ids=["ls-anisotropic-ridge", "logistic-mixture", "ls-regression-mixture"],
)
def test_error_variable_ode_matches_pqm_formulation(cfg, gamma):
    inst = ad.instantiate(cfg)
    # 26 records: the shapes (and, for logistic-mixture, the problem) of the SGD-vs-ODE
    # checks at d = 2000 (tests/simulate), so the ODE's compiled program is shared
    times = np.linspace(0, 4, 26)
    ds = to_dataset(ad.solve_ode(inst, ad.Constant(gamma), times))
    # both solvers run at rtol <= 1e-8: agreement to 1e-6 checks the change of variables
    # and the drift assembly, not the integrators
    np.testing.assert_allclose(ds.adv_risk, pqm_reference(inst, gamma, times), rtol=1e-6)


@pytest.mark.parametrize(
    "cfg",
    [
        ProblemConfig(d=12, spectrum={"kind": "uniform", "low": 0.3, "high": 1.7},
                      task={"kind": "classification", "mean_norm": 1.2}, loss="logistic",
                      epsilon=0.4, ridge=0.1),
        ProblemConfig(d=12, spectrum={"kind": "uniform", "low": 0.5, "high": 1.5},
                      task={"kind": "regression", "noise": 0.3}, epsilon=0.6,
                      components=[{"weight": 0.5, "mean_norm": 1.0},
                                  {"weight": 0.5, "mean_norm": 0.7, "mean_direction": "teacher",
                                   "mean_sign": -1}]),
        ProblemConfig(d=12, task={"kind": "classification", "mean_norm": 1.0},
                      loss="squared_hinge", epsilon=0.3),
    ],
    ids=["logistic", "ls-mixture", "squared-hinge"],
)
def test_drift_is_the_expected_per_sample_gradient(cfg):
    """E[grad] from THEORY section 4 vs the mean of the simulator's own per-sample gradient.

    The drift formula is exact for Gaussian data at any d, so a small d suffices; each of
    the d coordinates must lie within 4 standard errors (fixed seed).
    """
    inst = ad.instantiate(cfg)
    theta = inst.theta0 + 0.3 * inst.theta_star
    n = 400_000
    key = jax.random.key(3)
    kc, kz, kx = jax.random.split(key, 3)
    cls = jax.random.choice(kc, inst.n_components, (n,), p=inst.weights)
    x = inst.means[cls] + jnp.sqrt(inst.eigenvalues[cls]) * jax.random.normal(kz, (n, inst.d))
    if inst.task == "regression":
        y = x @ inst.theta_star + inst.noise * jax.random.normal(kx, (n,))
    else:
        y = inst.labels[cls]
    # sgd_step with gamma = d is theta - grad
    grads = theta - jax.vmap(lambda xi, yi: sgd_step(theta, xi, yi, inst.d, inst))(x, y)
    mean, se = np.asarray(grads.mean(0)), np.asarray(grads.std(0) / np.sqrt(n))
    terms = drift_terms(statistics(DirectionState.from_iterate(theta, inst), inst), inst)
    drift = np.asarray(terms.D * theta + terms.H * inst.theta_star + terms.mean_term(inst.means))
    assert np.all(np.abs(drift - mean) <= 4 * se), np.abs(drift - mean) / se


def test_ode_divergence_names_time_and_learning_rate():
    cfg = ProblemConfig(d=200, task={"kind": "regression", "noise": 0.3}, epsilon=0.2)
    with pytest.raises(ad.DivergenceError) as info:
        to_dataset(ad.solve_ode(ad.instantiate(cfg), ad.Constant(3.0), np.linspace(0, 20, 21)))
    msg = str(info.value)
    assert "t = " in msg and "gamma = 3" in msg
    assert info.value.time > 0
