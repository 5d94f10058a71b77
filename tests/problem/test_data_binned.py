"""A data set's surrogate on a binned spectrum (issue 28): Gauss quadrature from block Lanczos
on matrix-free products with the rows, against the dense eigendecomposition."""

from __future__ import annotations

import itertools

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import pytest

import advdyn as ad
from advdyn.config import validate_config
from advdyn.problem.data import mixture_statistics, spectral_statistics, surrogate_instance
from advdyn.theory.spectral import bin_instance, quadrature_instance


def _data(task: str, n: int, d: int, seed: int = 0):
    """Gaussian rows of a uniform spectrum in a random basis: centred regression targets, or
    two classes of weights 0.4 / 0.6 with means +/- mu."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.standard_normal((d, d)))[0]
    X = (rng.standard_normal((n, d)) * np.sqrt(np.linspace(0.2, 2.0, d))) @ basis.T
    if task == "regression":
        X -= X.mean(axis=0)
        y = X @ rng.standard_normal(d) / np.sqrt(d) + 0.3 * rng.standard_normal(n)
    else:
        y = np.where(rng.random(n) < 0.4, 1.0, -1.0)
        X += np.outer(y, rng.standard_normal(d) / np.sqrt(d))
    return X, y, rng.standard_normal(d) / np.sqrt(d)


def _probes(seed: int, d: int, k: int) -> np.ndarray:
    """The probes `spectral_statistics` draws (the same call on the same generator)."""
    return np.random.default_rng(seed).choice(np.array([-1.0, 1.0]), size=(d, k)) / np.sqrt(d)


@pytest.mark.parametrize("task", ["regression", "classification"])
def test_the_quadrature_is_exact_once_the_krylov_space_is_the_whole_space(task):
    """With ``steps * (probes + C + 1) >= d`` the Krylov space is ``R^d``: the nodes are the
    eigenvalues and every measure is the dense one (to rounding, 1e-9), the teacher is the
    dense least-squares one and the direction counts are the probes' exact Hutchinson
    weights ``(d / k) sum_p (u_i . z_p)^2``."""
    d, k = 24, 8
    X, y, theta0 = _data(task, 300, d)
    dense = mixture_statistics(X, y, task)
    quad = spectral_statistics(X, y, task, probes=k, steps=3, seed=5, theta0=theta0)
    assert quad.nodes.shape == (d,)
    np.testing.assert_allclose(quad.nodes, dense.eigenvalues, rtol=1e-9, atol=1e-12)
    U = dense.basis  # the measures are quadratic: the eigenvectors' signs do not matter
    for a, vec in [("teacher", dense.teacher), ("theta0", theta0)]:
        np.testing.assert_allclose(quad.measure(a, a), (U.T @ vec) ** 2, rtol=1e-9, atol=1e-13)
    first_mean = quad.names[1]
    np.testing.assert_allclose(quad.measure("teacher", first_mean),
                               (U.T @ dense.teacher) * (U.T @ dense.means[0]), atol=1e-12)
    np.testing.assert_allclose(quad.teacher, dense.teacher, atol=1e-10)
    assert quad.noise == pytest.approx(dense.noise, rel=1e-10, abs=1e-14)
    exact_counts = (d / k) * np.sum((U.T @ _probes(5, d, k)) ** 2, axis=1)
    np.testing.assert_allclose(quad.density, exact_counts, rtol=1e-9)
    assert quad.density.sum() == pytest.approx(d, rel=1e-12)


@pytest.mark.parametrize("task", ["regression",
                                  pytest.param("classification", marks=pytest.mark.slow)])
def test_the_binned_ode_matches_the_dense_one(task):
    """The ODE on the quadrature's nodes against the dense surrogate's, ``theta_0`` the same.

    The reference vectors' measures are block Gauss quadratures, exact for polynomials of
    degree ``2 m - 1``, so only the direction counts (Hutchinson, ``k`` probes) differ, and
    they enter only the SGD-noise term ``gamma^2 N / d``. The noise-driven part of the risk
    is ``R - R_inf`` (``R_inf``: the same bins with ``d -> inf``), and Hutchinson's relative
    error of a spectral sum ``sum_i f(lambda_i)`` has standard deviation
    ``sqrt(2 / (k d_f))``, ``d_f = (sum f)^2 / sum f^2``; the noise term weighs
    ``f ~ lambda^2``. Tolerance: 4 standard deviations of the noise part, plus 1e-7 of the
    risk for the solver."""
    d, k = 40, 16
    X, y, theta0 = _data(task, 1200, d)
    loss = ad.make_loss("least_squares" if task == "regression" else "logistic")
    dense = mixture_statistics(X, y, task)
    times = np.linspace(0.0, 3.0, 7)
    # one bin per direction is the dense ODE exactly, and the same program as the quadrature's
    exact = bin_instance(surrogate_instance(dense, loss, 0.3, 0.0, theta0, "original"), d)
    ref = ad.solve_ode(exact, ad.Constant(0.5), times).ys["adv_risk"]
    binned = quadrature_instance(spectral_statistics(X, y, task, probes=k, steps=3,
                                                     theta0=theta0), loss, 0.3, 0.0)
    got = ad.solve_ode(binned, ad.Constant(0.5), times).ys["adv_risk"]
    no_noise = ad.solve_ode(eqx.tree_at(lambda i: i.d, binned, jnp.asarray(1e15)),
                            ad.Constant(0.5), times).ys["adv_risk"]
    lam2 = dense.eigenvalues**2
    sd = np.sqrt(2 / (k * np.sum(lam2) ** 2 / np.sum(lam2**2)))
    got, ref, noise = np.asarray(got), np.asarray(ref), np.abs(np.asarray(got - no_noise))
    assert np.all(noise[1:] > 1e-2 * ref[1:])  # the check has something to check (t > 0)
    assert np.all(np.abs(got - ref) <= 4 * sd * noise + 1e-7 * ref)


def test_the_binned_masses_match_the_eigenvalue_histogram():
    """Direction counts of the quadrature's nodes, summed over five eigenvalue bins, against
    the dense eigenvalues' histogram, with a Krylov space smaller than ``R^d``.

    Tolerance per bin: 4 Hutchinson standard deviations of a bin of ``n_b`` directions,
    ``sqrt(2 n_b (1 - n_b / d) / k)``, plus the counts of the two nodes on either side of
    each of its edges (Gauss quadrature puts a node's mass on one side of an edge that the
    true spectrum straddles: the Chebyshev-Markov-Stieltjes inequality bounds the
    distribution function's error there by the neighbouring nodes' weights)."""
    d, k = 160, 32
    X, y, _ = _data("regression", 1600, d)
    lam = mixture_statistics(X, y, "regression").eigenvalues
    quad = spectral_statistics(X, y, "regression", probes=k, steps=3)
    assert quad.nodes.size < d  # a true quadrature, not the whole space
    edges = np.linspace(lam.min(), lam.max(), 6)
    edges[0], edges[-1] = -np.inf, np.inf
    true = np.histogram(lam, edges)[0]
    got = np.array([quad.density[(quad.nodes >= lo) & (quad.nodes < hi)].sum()
                    for lo, hi in itertools.pairwise(edges)])
    order = np.argsort(quad.nodes)
    nodes, counts = quad.nodes[order], quad.density[order]

    def edge_mass(x: float) -> float:
        if not np.isfinite(x):
            return 0.0
        i = np.searchsorted(nodes, x)
        return float(counts[max(i - 2, 0):i + 2].sum())

    smear = np.array([edge_mass(lo) + edge_mass(hi)
                      for lo, hi in itertools.pairwise(edges)])
    tol = 4 * np.sqrt(2 * true * (1 - true / d) / k) + smear
    assert np.all(np.abs(got - true) <= tol), (got, true, tol)
    assert got.sum() == pytest.approx(d, rel=1e-12)


def _config(tmp_path, d: int, **data) -> dict:
    X, y, _ = _data("regression", 8 * d, d)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    return {"problem": {"loss": "least_squares", "epsilon": 0.2, "data": {
        "path": str(tmp_path / "X.npy"), "target": str(tmp_path / "y.npy"),
        "task": "regression", **data}},
        "run": {"t_max": 1.0, "n_times": 3, "replicates": 2}}


def test_the_path_rule_and_what_a_binned_spectrum_refuses(tmp_path):
    """``auto`` is dense up to d = 2000 and binned above; SGD on the surrogate needs the
    eigenbasis, which a binned spectrum does not build (one line naming run.methods)."""
    cfg = validate_config(_config(tmp_path, 8))
    assert cfg.problem.data is not None and cfg.problem.data.spectrum_path == "dense"
    wide = tmp_path / "wide"
    wide.mkdir()
    np.save(wide / "X.npy", np.zeros((2, 2001)))
    np.save(wide / "y.npy", np.zeros(2))
    raw = {"problem": {"loss": "least_squares", "data": {
        "path": str(wide / "X.npy"), "target": str(wide / "y.npy"), "task": "regression"}}}
    cfg = validate_config(raw)
    assert cfg.problem.data is not None and cfg.problem.data.spectrum_path == "binned"
    # the memory estimate counts the table twice and the Krylov basis, no d x d matrix
    from advdyn.workflows.memory import estimate_memory

    parts = estimate_memory(cfg, available=(1 << 40, "test")).parts
    assert parts["data"] == 2 * 2 * 2001 * 8
    assert parts["instance: draw temporaries"] < 2001**2 * 8
    raw["run"] = {"methods": ["ode", "sgd"]}
    with pytest.raises(ad.ConfigError, match=r"run\.methods"):
        validate_config(raw)


def test_a_binned_run_records_its_path_and_the_rows_risks(tmp_path):
    """A run on a binned spectrum: summary, dataset attributes and the data's SGD say which
    path was taken; the SGD on the rows records the risks measured on the rows and the
    basis-free order parameters only (no surrogate risks: the rows are not in an
    eigenbasis); the cached arrays are read-only."""
    from advdyn.workflows.run import run

    cfg = validate_config(_config(tmp_path, 12, spectrum="binned", probes=4, lanczos_steps=2))
    result = run(cfg)
    label = "binned (Lanczos, 4 probes, 2 steps)"
    assert result.summary["data"]["spectrum"] == label
    assert result.datasets["ode"].attrs["spectrum"] == label
    data_sgd = result.datasets["data_sgd"]
    assert set(data_sgd.data_vars) == {"adv_risk", "clean_risk", "norm", "overlap", "lr"}
    with pytest.raises(ad.ConfigError, match=r"problem\.data\.spectrum"):
        ad.instantiate(cfg.problem)
    # the cached arrays every caller shares cannot be changed by one of them
    dp = ad.data_problem(cfg.problem)
    for array in (dp.rows, dp.targets, dp.statistics.teacher, dp.statistics.nodes):
        assert not array.flags.writeable
