"""The exact dynamics on a data problem as on a synthetic one (issue 28): eps*(n/d) from the
surrogate's ODE, Polyak and line-search rates, the optimum and the constant-rate limit.

The data are built with moments exactly those of isotropic streaming least squares
(`advdyn.critical.exact.least_squares_instance`), so every exact quantity of the data problem
must equal the synthetic one up to rounding, on the dense and the binned spectrum alike
(every eigenvalue is 1: the quadrature and its direction counts are exact).
"""

from __future__ import annotations

import equinox as eqx
import numpy as np
import pytest

import advdyn as ad
from advdyn.critical import exact


def _isotropic_rows(n: int, d: int, teacher: np.ndarray, sigma: float, seed: int = 1):
    """Rows of mean exactly 0 and covariance exactly ``I``, targets ``<teacher, x> + xi`` with
    the residual ``xi`` orthogonal to every column and of mean square exactly ``sigma^2``: the
    data's moments are those of `exact.least_squares_instance`."""
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((n, d))
    Z -= Z.mean(axis=0)
    X = np.linalg.solve(np.linalg.cholesky(Z.T @ Z / n), Z.T).T
    xi = rng.standard_normal(n)
    xi -= X @ np.linalg.lstsq(X, xi, rcond=None)[0]
    xi *= sigma / np.sqrt(np.mean(xi**2))
    return X, X @ teacher + xi


D, SIGMA = 12, 0.5


def _surrogate(tmp_path, spectrum: str, epsilon: float = 0.0):
    """The data problem of isotropic rows (``theta_0 = 0``) on the given spectrum path."""
    X, y = _isotropic_rows(40 * D, D, exact.teacher_direction(D), SIGMA)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    cfg = ad.validate_config({"problem": {
        "loss": "least_squares", "init": {"scale": 0.0}, "epsilon": epsilon,
        "data": {"path": str(tmp_path / "X.npy"), "target": str(tmp_path / "y.npy"),
                 "task": "regression", "standardize": "none", "standardize_target": False,
                 "spectrum": spectrum,
                 **({"probes": 4, "lanczos_steps": 2} if spectrum == "binned" else {})}}})
    return ad.data_problem(cfg.problem)


@pytest.mark.parametrize("spectrum", ["dense", "binned"])
def test_critical_radius_of_a_data_problem_is_the_synthetic_one(tmp_path, spectrum):
    """Data whose moments are exactly those of isotropic streaming least squares (theta_0 = 0)
    give the same eps*(t) from their surrogate's ODE, dense or binned, as the synthetic
    problem: the ODEs are the same up to rounding (every eigenvalue is 1, so the quadrature
    and the direction counts are exact), to 1e-8 relative, and so is the floor sigma^2/2
    found from the surrogate's clean optimum."""
    surrogate = _surrogate(tmp_path, spectrum).instance
    d, sigma = D, SIGMA
    times, grid = np.array([0.0, 1.0, 4.0]), np.array([0.01, 0.1, 1.0])
    got = exact.instance_critical_radius(surrogate, times, grid)
    ref = exact.ode_critical_radius(d, times, grid, sigma=sigma)
    assert got.attrs["floor"] == pytest.approx(sigma**2 / 2, rel=1e-8)
    np.testing.assert_allclose(got["adv_risk"], ref["adv_risk"], rtol=1e-8)
    np.testing.assert_allclose(got["eps_star_margin"][1:], ref["eps_star_margin"][1:],
                               rtol=1e-8)
    assert np.all(got["eps_star"][1:] == 0.0)  # the paper's definition, as for the synthetic


def _half_teacher_start(instance):
    """``instance`` started at ``theta_0 = theta* / 2`` (so ``e_0 = -theta* / 2``)."""
    if isinstance(instance, ad.BinnedInstance):
        return eqx.tree_at(
            lambda i: (i.init_err2, i.init_err_teacher, i.init_err_mean), instance,
            (instance.teacher2 / 4, -instance.teacher2 / 2, -instance.teacher_mean / 2))
    return eqx.tree_at(lambda i: i.theta0, instance, instance.theta_star / 2)


@pytest.mark.parametrize("spectrum", ["dense", pytest.param("binned", marks=pytest.mark.slow)])
@pytest.mark.parametrize("rule", [ad.Polyak(2.0), ad.LineSearch(2.0)], ids=["polyak", "line"])
def test_state_dependent_rates_on_a_data_problem(tmp_path, spectrum, rule):
    """Polyak and line-search rates read the surrogate's statistics along the ODE: the same
    rate and risk as on the synthetic problem (1e-8), both started at half the teacher (at
    ``theta_0 = 0`` the exact line search hardly moves and its escape is rounding's)."""
    surrogate = _half_teacher_start(_surrogate(tmp_path, spectrum, epsilon=0.3).instance)
    synthetic = _half_teacher_start(exact.least_squares_instance(D, 0.3, SIGMA))
    times = np.array([0.0, 1.0, 3.0])
    got = ad.solve_ode(surrogate, rule, times)
    ref = ad.solve_ode(synthetic, rule, times)
    for name in ("adv_risk", "lr"):
        np.testing.assert_allclose(got.ys[name], ref.ys[name], rtol=1e-8, err_msg=name)


def test_a_binned_data_problem_refuses_a_state_dependent_rate_for_its_rows(tmp_path):
    """SGD on the rows of a binned surrogate has no eigenbasis to evaluate the rate's
    statistics in: refused, naming lr.kind."""
    dp = _surrogate(tmp_path, "binned")
    with pytest.raises(ad.ConfigError, match=r"lr\.kind"):
        ad.simulate_data_sgd(dp.rows_instance, dp.rows, dp.targets, ad.Polyak(1.0),
                             ad.stream_key(0), t_max=1.0, measured_only=True)


@pytest.mark.parametrize("spectrum", ["dense", "binned"])
def test_optimum_and_limit_of_a_data_problem(tmp_path, spectrum):
    """The adversarial optimum and the constant-rate limit of the surrogate are the synthetic
    problem's (fixed points of the same equations, 1e-8)."""
    from advdyn.workflows.limits import limit_report

    surrogate = _surrogate(tmp_path, spectrum, epsilon=0.3).instance
    got = limit_report(surrogate, 0.8, check_with_ode=False)
    ref = limit_report(exact.least_squares_instance(D, 0.3, SIGMA), 0.8, check_with_ode=False)
    for name in ("adv_risk_opt", "adv_risk_limit", "norm_opt", "norm_limit"):
        assert got[name] == pytest.approx(ref[name], rel=1e-8), name
