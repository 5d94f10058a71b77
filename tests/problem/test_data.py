"""A data set as a problem: the Gaussian-mixture surrogate reproduces the synthetic path, and
SGD on the data's rows follows the surrogate's ODE when the data are a Gaussian mixture."""

from __future__ import annotations

import numpy as np
import pytest

import advdyn as ad
from advdyn.config import validate_config
from advdyn.config.build import data_problem, instantiate
from advdyn.problem.data import mixture_statistics, surrogate_diagnostics

D = 24


def _whitened(rng, n: int, d: int) -> np.ndarray:
    """``n x d`` rows with exactly zero mean and identity (biased) covariance."""
    Z = rng.standard_normal((n, d))
    Z -= Z.mean(axis=0)
    L = np.linalg.cholesky(Z.T @ Z / n)
    return np.linalg.solve(L, Z.T).T


def _exact_rows(instance, n: int, seed: int = 1):
    """Rows whose empirical moments equal ``instance``'s exactly (it is in the standard
    basis: ``instantiate`` draws in the eigenbasis and calls it the original one)."""
    rng = np.random.default_rng(seed)
    lam = np.asarray(instance.eigenvalues)
    means = np.asarray(instance.means)
    teacher = np.asarray(instance.theta_star)
    if instance.task == "classification":
        half = n // 2
        X = np.concatenate([means[c] + _whitened(rng, half, D) * np.sqrt(lam[c])
                            for c in range(2)])
        y = np.repeat(np.asarray(instance.labels), half)
        return X, y
    X = means[0] + _whitened(rng, n, D) * np.sqrt(lam[0])
    # a residual orthogonal to every column, of mean square exactly sigma^2
    xi = rng.standard_normal(n)
    xi -= X @ np.linalg.lstsq(X, xi, rcond=None)[0]
    xi *= float(instance.noise) / np.sqrt(np.mean(xi**2))
    return X, X @ teacher + xi


SYNTHETIC = {
    "regression": {"loss": "least_squares", "epsilon": 0.4,
                   "spectrum": {"kind": "uniform", "low": 0.3, "high": 1.7},
                   "task": {"kind": "regression", "noise": 0.3}},
    "classification": {"loss": "logistic", "epsilon": 0.3,
                       "spectrum": {"kind": "uniform", "low": 0.3, "high": 1.7},
                       "task": {"kind": "classification", "mean_norm": 1.2}},
}


@pytest.mark.parametrize("task", ["regression",
                                  pytest.param("classification", marks=pytest.mark.slow)])
def test_data_path_reproduces_the_synthetic_ode(tmp_path, task):
    """Data whose moments are exactly a synthetic instance's give the same ODE (to 1e-9).

    The surrogate is built in the eigenbasis of the estimated covariance (eigenvectors +/- the
    standard ones, in another order): the ODE is a sum over directions, so only the products
    per direction matter, and these agree to rounding. Both ODEs run with the same solver and
    tolerances on inputs equal to ~1e-13, so their records agree far below 1e-9.
    """
    rng = np.random.default_rng(0)
    theta0 = rng.standard_normal(D) / np.sqrt(D)
    np.save(tmp_path / "theta0.npy", theta0)
    init = {"kind": "file", "path": "theta0.npy"}
    synth = validate_config({"problem": {"d": D, **SYNTHETIC[task], "init": init}},
                            base_dir=tmp_path).problem
    inst = instantiate(synth)
    X, y = _exact_rows(inst, 400)
    np.savez(tmp_path / "data.npz", X=X, y=y)
    data = validate_config({"problem": {
        "loss": SYNTHETIC[task]["loss"], "epsilon": SYNTHETIC[task]["epsilon"], "init": init,
        "data": {"path": "data.npz", "task": task, "standardize": "none",
                 "standardize_target": False}}}, base_dir=tmp_path).problem
    surrogate = instantiate(data)
    times = np.linspace(0.0, 2.0, 5)  # the grid of the SGD test below (one compilation)
    lr = ad.Constant(0.5)
    a = ad.solve_ode(inst, lr, times)
    b = ad.solve_ode(surrogate, lr, times)
    for name in ("adv_risk", "clean_risk", "norm", "overlap"):
        np.testing.assert_allclose(b.ys[name], a.ys[name], rtol=1e-9, atol=1e-12, err_msg=name)


def test_statistics_keep_the_data_moments():
    """E[x x^T], E[x y] and E[y^2] of the regression surrogate equal the data's averages."""
    rng = np.random.default_rng(3)
    X = rng.standard_normal((300, 6)) @ rng.standard_normal((6, 6)) + 0.5
    y = X @ rng.standard_normal(6) + np.sign(rng.standard_normal(300))  # non-Gaussian noise
    s = mixture_statistics(X, y, "regression")
    sigma = (s.basis * s.eigenvalues) @ s.basis.T
    second = sigma + np.outer(s.means[0], s.means[0])
    np.testing.assert_allclose(second, X.T @ X / 300, atol=1e-10)
    np.testing.assert_allclose(second @ s.teacher, X.T @ y / 300, atol=1e-10)
    np.testing.assert_allclose(s.teacher @ second @ s.teacher + s.noise**2, np.mean(y**2),
                               rtol=1e-10)
    # the +/-1 noise is far from Gaussian: excess kurtosis -2
    diag = surrogate_diagnostics(X, y, s)
    assert diag["residual_kurtosis"] == pytest.approx(-2.0, abs=0.05)


def test_diagnostics_see_non_gaussian_classes():
    """Gaussian classes: kurtosis and covariance mismatch at their sampling floors;
    uniform features with a class-dependent scale: both far above them."""
    rng = np.random.default_rng(4)
    n, d = 4000, 8
    y = np.repeat([1.0, -1.0], n // 2)
    gauss = rng.standard_normal((n, d)) + 0.5 * y[:, None]
    s = mixture_statistics(gauss, y, "classification")
    g = surrogate_diagnostics(gauss, y, s)
    # 4 standard errors of the kurtosis; the mismatch within 30% of its expected size
    assert g["kurtosis_max_abs"] < 4 * g["kurtosis_standard_error"]
    # isotropic classes: every direction carries variance (sample spectrum of d/n = 0.002)
    assert g["effective_dimension"] == pytest.approx(d, rel=0.01)
    np.testing.assert_allclose(g["class_covariance_mismatch"],
                               g["class_covariance_mismatch_gaussian"], rtol=0.3)
    # the top eigendirection (variance 9) uniform, the other columns twice as wide in class -1
    X = rng.standard_normal((n, d)) * np.where(y > 0, 1.0, 2.0)[:, None] + 0.5 * y[:, None]
    X[:, 0] = 3 * np.sqrt(3) * rng.uniform(-1, 1, n)
    u = surrogate_diagnostics(X, y, mixture_statistics(X, y, "classification"))
    assert u["kurtosis_top"][0] == pytest.approx(-1.2, abs=0.1)  # uniform: -6/5
    assert min(u["class_covariance_mismatch"]) > 3 * max(u["class_covariance_mismatch_gaussian"])


@pytest.mark.parametrize("d, replicates", [(D, 8), pytest.param(100, 4, marks=pytest.mark.slow)])
def test_data_sgd_follows_the_ode_on_gaussian_rows(tmp_path, d, replicates):
    """SGD on rows of a Gaussian mixture, resampled with replacement, follows the ODE of the
    estimated surrogate within the d^-1/2 fluctuation scale.

    One SGD run's risk fluctuates around the ODE by a relative O(d^-1/2); the mean of R
    replicates by d^-1/2 / sqrt(R); we allow 3 of those (0.25 at d = 24, R = 8; 0.15 at
    d = 100, R = 4). The rows (n = 4000, many more than the 2 d steps) are i.i.d. Gaussian,
    so the empirical distribution SGD samples is Gaussian to O(n^-1/2) = 0.016, below that
    scale. Rows left in the original basis (not rotated into the surrogate's eigenbasis)
    miss by O(1).
    """
    n, R = 4000, replicates
    rng = np.random.default_rng(5)
    lam = np.linspace(0.3, 1.7, d)
    basis = np.linalg.qr(rng.standard_normal((d, d)))[0]  # a non-trivial eigenbasis
    teacher = rng.standard_normal(d) / np.sqrt(d)
    X = (rng.standard_normal((n, d)) * np.sqrt(lam)) @ basis.T
    y = X @ teacher + 0.3 * rng.standard_normal(n)
    np.savez(tmp_path / "gauss.npz", X=X, y=y)
    cfg = validate_config({
        "problem": {"loss": "least_squares", "epsilon": 0.4,
                    "data": {"path": "gauss.npz", "task": "regression",
                             "standardize": "none", "standardize_target": False}},
    }, base_dir=tmp_path)
    dp = data_problem(cfg.problem)
    lr = ad.Constant(0.5)
    sgd = ad.simulate_data_sgd(dp.instance, dp.rows, dp.targets, lr, ad.stream_key(0),
                               t_max=2.0, n_times=5, replicates=R)
    ode = ad.solve_ode(dp.instance, lr, sgd.ts)
    tol = 3 * d**-0.5 / np.sqrt(R)
    gap = ad.compare(ode, sgd)
    assert gap["adv_risk"]["max_relative_gap"] < tol, gap["adv_risk"]
    assert gap["clean_risk"]["max_relative_gap"] < tol, gap["clean_risk"]
    # the surrogate's value of each iterate is also recorded, and close to the data's
    # (least squares: equal up to the |r - y| term of the attack, O(n^-1/2))
    assert "surrogate_adv_risk" in sgd.ys
    np.testing.assert_allclose(sgd.ys["surrogate_clean_risk"], sgd.ys["clean_risk"],
                               rtol=1e-6)


@pytest.mark.slow
def test_data_sgd_streams_depend_on_seed_replicate_step_only(tmp_path):
    """A replicate's rows are the same whatever the replicate count or the recording grid."""
    rng = np.random.default_rng(6)
    X = rng.standard_normal((50, 6))
    y = np.where(X[:, 0] > 0, 1, 0)
    np.savez(tmp_path / "c.npz", X=X, y=y)
    cfg = validate_config({"problem": {"loss": "logistic", "epsilon": 0.2, "data": {
        "path": "c.npz", "task": "classification"}}}, base_dir=tmp_path)
    dp = data_problem(cfg.problem)
    lr = ad.Constant(0.5)
    one = ad.simulate_data_sgd(dp.instance, dp.rows, dp.targets, lr, ad.stream_key(2),
                               t_max=4.0, n_times=3, replicates=1, block_size=8)
    two = ad.simulate_data_sgd(dp.instance, dp.rows, dp.targets, lr, ad.stream_key(2),
                               t_max=4.0, n_times=5, replicates=2, block_size=5)
    np.testing.assert_array_equal(one.ys["norm"][0], two.ys["norm"][0, ::2])
    other = ad.simulate_data_sgd(dp.instance, dp.rows, dp.targets, lr, ad.stream_key(3),
                                 t_max=4.0, n_times=3, replicates=1, block_size=8)
    assert not np.array_equal(one.ys["norm"], other.ys["norm"])


@pytest.mark.parametrize(("spectrum", "reads"), [("dense", 1), ("binned", 3)])
def test_a_seed_sweep_reads_a_dense_data_set_once(tmp_path, monkeypatch, spectrum, reads):
    """The dense statistics do not depend on theta_0, so three seeds share one read of the
    file (each still gets its own theta_0); the binned ones hold theta_0's measures, so each
    seed reads and summarises again."""
    import advdyn.config.build as build

    rng = np.random.default_rng(2)
    X = rng.standard_normal((60, 6))
    np.savez(tmp_path / "rows.npz", X=X, y=X @ np.ones(6) + rng.standard_normal(60))
    calls = []
    real = build.load_data
    monkeypatch.setattr(build, "load_data", lambda data: calls.append(1) or real(data))
    build._data_moments.cache_clear()
    extra = {"probes": 2, "lanczos_steps": 2} if spectrum == "binned" else {}
    theta0 = []
    try:
        for seed in (0, 1, 2):
            cfg = validate_config({"problem": {"loss": "least_squares", "seed": seed, "data": {
                "path": str(tmp_path / "rows.npz"), "task": "regression", "spectrum": spectrum,
                **extra}}})
            theta0.append(np.asarray(data_problem(cfg.problem).rows_instance.theta0))
    finally:
        build._data_moments.cache_clear()
    assert len(calls) == reads
    assert not np.allclose(theta0[0], theta0[1])
