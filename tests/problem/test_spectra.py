"""Covariance spectra and the eigenbasis transformation of file inputs."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate

import advdyn as ad
from advdyn.config.schema import ProblemConfig
from advdyn.problem import spectra


def test_power_law_is_normalised_to_trace_d():
    lam = spectra.power_law(1000, 1.3)
    np.testing.assert_allclose(lam.sum(), 1000)
    assert np.all(np.diff(lam) < 0)
    np.testing.assert_allclose(lam[0] / lam[9], 10**1.3)


def test_two_level_and_uniform():
    lam = spectra.two_level(10, 3.0, 0.5, 0.3)
    assert (lam == 3.0).sum() == 3 and (lam == 0.5).sum() == 7
    np.testing.assert_allclose(spectra.uniform(4, 0.0, 1.0), [0.125, 0.375, 0.625, 0.875])


@pytest.mark.parametrize("ratio", [0.25, 1.0, 3.0])
def test_marchenko_pastur_quantiles(ratio):
    lam = spectra.marchenko_pastur(4000, ratio)
    a, b = (1 - np.sqrt(ratio)) ** 2, (1 + np.sqrt(ratio)) ** 2
    assert np.all(np.diff(lam) >= 0)
    assert lam.max() <= b + 1e-9
    # the law has mean 1 (unit-variance entries); the midpoint grid is exact to O(1/d)
    np.testing.assert_allclose(lam.mean(), 1.0, atol=2e-3)
    # atom at zero of mass 1 - 1/ratio when ratio > 1
    np.testing.assert_allclose((lam == 0).mean(), max(0.0, 1 - 1 / ratio), atol=1e-3)
    # a quantile checked against direct integration of the density
    dens = lambda x: np.sqrt(max((b - x) * (x - a), 0)) / (2 * np.pi * ratio * x)  # noqa: E731
    q = spectra.marchenko_pastur_quantiles(np.array([0.9]), ratio)[0]
    mass, _ = integrate.quad(dens, a, q, limit=200)
    np.testing.assert_allclose(max(0.0, 1 - 1 / ratio) + mass, 0.9, atol=1e-6)


def test_dense_covariance_is_diagonalised_and_init_rotated(tmp_path):
    rng = np.random.default_rng(1)
    d = 20
    A = rng.standard_normal((d, 2 * d))
    cov = A @ A.T / (2 * d)
    theta0 = rng.standard_normal(d)
    np.save(tmp_path / "cov.npy", cov)
    np.save(tmp_path / "theta0.npy", theta0)
    cfg = ProblemConfig(d=d, spectrum={"kind": "covariance_file", "path": tmp_path / "cov.npy"},
                        init={"kind": "file", "path": tmp_path / "theta0.npy"})
    inst = ad.instantiate(cfg)
    lam, t0 = np.asarray(inst.eigenvalues[0]), np.asarray(inst.theta0)
    np.testing.assert_allclose(np.sort(lam), np.linalg.eigvalsh(cov), rtol=1e-10, atol=1e-12)
    # basis-free invariants of the initial iterate
    np.testing.assert_allclose(t0 @ t0, theta0 @ theta0, rtol=1e-12)
    np.testing.assert_allclose(lam @ t0**2, theta0 @ cov @ theta0, rtol=1e-10)


def test_instance_draws_follow_config():
    cfg = ProblemConfig(d=500, task={"kind": "classification", "teacher_norm": 2.0,
                                     "mean_norm": 1.5}, loss="logistic")
    inst = ad.instantiate(cfg)
    np.testing.assert_allclose(np.linalg.norm(inst.theta_star), 2.0)
    np.testing.assert_allclose(np.linalg.norm(inst.means, axis=1), [1.5, 1.5])
    np.testing.assert_allclose(inst.means[0], -inst.means[1])
    np.testing.assert_allclose(inst.labels, [1.0, -1.0])
    # the default symmetric mixture puts the means along the teacher
    np.testing.assert_allclose(inst.means[0] @ inst.theta_star, 1.5 * 2.0)
    # same seed, same instance
    np.testing.assert_array_equal(ad.instantiate(cfg).theta0, inst.theta0)


@pytest.mark.parametrize("exponent", [0.0, 0.5, 0.999999, 1.0, 1.5, 3.0])
@pytest.mark.parametrize("d", [1, 1023, 1024, 1025, 12_345, 2_000_000])
def test_power_law_sum_matches_the_direct_sum(d, exponent):
    # independent reference: the d terms added in extended precision; the Euler-Maclaurin
    # remainder (order n^-(s+9), n = 1024) is far below float64 rounding, so only rounding
    # (a few ulp) separates them
    direct = np.sum(np.arange(1, d + 1, dtype=np.longdouble) ** -np.longdouble(exponent))
    assert spectra.power_law_sum(d, exponent) == pytest.approx(float(direct), rel=1e-14)
    if d <= 12_345:  # and the normalisation power_law uses
        assert spectra.power_law(d, exponent).sum() == pytest.approx(float(d), rel=1e-12)


@pytest.mark.parametrize(("d", "exponent", "field"), [
    (0, 1.0, "d"), (10.5, 1.0, "d"), (True, 1.0, "d"), (10, -1.0, "exponent"),
    (10, float("nan"), "exponent"),
])
def test_power_law_sum_refuses_bad_input(d, exponent, field):
    with pytest.raises(ad.ConfigError) as err:
        spectra.power_law_sum(d, exponent)
    assert err.value.field == field
