"""A data set's surrogate on a binned spectrum (issue 28): Gauss quadrature from block Lanczos
on matrix-free products with the rows, against the dense eigendecomposition."""

from __future__ import annotations

import itertools
import math

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


@pytest.mark.parametrize("task", ["regression", "classification"])
def test_the_quadrature_is_exact_once_the_krylov_space_is_the_whole_space(task):
    """With ``steps * (probes + C + 1) >= d`` the Krylov space is ``R^d``: the nodes are the
    eigenvalues and every measure is the dense one (to rounding, 1e-9), the teacher is the
    dense least-squares one and every node counts one direction; the statistics one and two
    steps fewer are quadratures too (two blocks and one, direction counts summing to
    ``d``)."""
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
    # every node is one eigendirection: counted exactly, not by the probes
    np.testing.assert_array_equal(quad.density, np.ones(d))
    assert quad.coarser is not None and quad.coarser.steps == 2
    assert quad.coarser.coarser is not None and quad.coarser.coarser.steps == 1
    assert quad.coarser.coarser.coarser is None
    assert quad.coarser.density.sum() == pytest.approx(d, rel=1e-12)


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
    assert cfg.problem.data is not None and cfg.problem.data.spectrum_method == "dense"
    wide = tmp_path / "wide"
    wide.mkdir()
    np.save(wide / "X.npy", np.zeros((2, 2001)))
    np.save(wide / "y.npy", np.zeros(2))
    raw = {"problem": {"loss": "least_squares", "data": {
        "path": str(wide / "X.npy"), "target": str(wide / "y.npy"), "task": "regression"}}}
    cfg = validate_config(raw)
    assert cfg.problem.data is not None and cfg.problem.data.spectrum_method == "binned"
    # the memory estimate counts the table twice and the Krylov basis, no d x d matrix
    from advdyn.workflows.memory import estimate_memory

    parts = estimate_memory(cfg, available=(1 << 40, "test")).parts
    assert parts["data"] == 2 * 2 * 2001 * 8
    assert parts["instance: draw temporaries"] < 2001**2 * 8
    # data_sgd puts the table on the device in its own dtype (here float64), not run.dtype
    sgd_run = validate_config({**raw, "run": {"methods": ["ode", "data_sgd"],
                                              "dtype": "float32"}})
    assert estimate_memory(sgd_run, available=(1 << 40, "test")).parts[
        "data_sgd: rows"] == 2 * 2001 * 8
    # a float32 table is held in float32 (read, standardised, on the device): half the bytes
    np.save(wide / "X.npy", np.zeros((2, 2001), np.float32))
    parts32 = estimate_memory(validate_config({**raw, "run": {"methods": ["ode", "data_sgd"]}}),
                              available=(1 << 40, "test")).parts
    assert parts32["data"] == 2 * 2 * 2001 * 4 and parts32["data_sgd: rows"] == 2 * 2001 * 4
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
    # divergence is judged on what data_sgd records (the iterate's distance to theta*, the
    # risk measured on the rows), not on surrogate risks the rows instance cannot give:
    # a rate far above the stable range stops the run after its first steps
    with pytest.raises(ad.DivergenceError) as err:
        run(cfg.with_overrides(**{"lr.gamma": 40.0, "run.methods": ["data_sgd"]}))
    assert err.value.time > 0


def _run_config(tmp_path, d: int = 12, methods=("ode",), **data):
    raw = _config(tmp_path, d, **data)
    raw["run"].update({"n_times": 3, "methods": list(methods)})
    return validate_config(raw)


def test_dense_and_binned_start_from_the_same_seeded_theta0(tmp_path):
    """Same config, dense and binned (Krylov space ``R^d``: 6 steps of 8 + 2 + 1 columns at
    d = 12): the binned ODE starts from the seeded ``theta_0`` draw that ``data_sgd`` starts
    from, not from its expectation, so the two ODEs agree to the solver's rounding (1e-9;
    with the expectation they differed by ``O(d^-1/2)``, 7.6% in clean risk on digits at
    d = 52); the same vector in the data's basis on both paths."""
    from advdyn.workflows.run import run

    dense = _run_config(tmp_path, spectrum="dense")
    binned = _run_config(tmp_path, spectrum="binned", probes=8, lanczos_steps=6)
    a, b = (run(c).datasets["ode"] for c in (dense, binned))
    for name in ("adv_risk", "clean_risk", "dist_to_opt", "norm"):
        np.testing.assert_allclose(b[name], a[name], rtol=1e-9, err_msg=name)
    dp_dense, dp_binned = ad.data_problem(dense.problem), ad.data_problem(binned.problem)
    U = dp_dense.statistics.basis
    np.testing.assert_allclose(U @ np.asarray(dp_dense.rows_instance.theta0),
                               np.asarray(dp_binned.rows_instance.theta0), atol=1e-14)


def test_the_step_error_is_the_geometric_tail_and_never_below_the_last_change():
    """`step_error` on records that converge geometrically, ``x_m = 1 + r^m``: for a
    contraction ``r >= 1/2`` the error ``r^m / (1 + r^m)`` exactly (the tail), below it the
    last change (above the error); changes that do not contract (``r >= 0.9``) infinity,
    or the larger when both are within ``floor``; a record that is not finite infinity;
    without the lower record the last change; without the middle one (its ODE failed)
    infinity. The largest over the records."""
    from advdyn.workflows.run import step_error

    def records(r: float, m: int) -> dict[str, float]:  # x_m = 1 + r^m, limit 1
        return {"a": 1.0 + r**m, "b": 2.0}

    for r in (0.25, 0.4, 0.5, 0.75, 0.85):
        got = step_error(records(r, 6), records(r, 5), records(r, 4))
        error = r**6 / (1 + r**6)  # |x_6 - limit| / |x_6|: what the estimate is after
        if r >= 0.5:  # a geometric tail is estimated exactly
            assert got == pytest.approx(error, rel=1e-9), r
        else:  # the last change, above the error
            assert got == pytest.approx((r**5 - r**6) / (1 + r**6), rel=1e-12), r
            assert got > error, r
    stalled = {"a": 1.0}, {"a": 1.1}, {"a": 1.15}  # changes 0.1 then 0.05: not contracting
    assert step_error(*stalled) == math.inf
    assert step_error(*stalled, floor=0.2) == pytest.approx(0.1)
    assert step_error({"a": 1.0}, {"a": 1.01}) == pytest.approx(0.01)
    assert step_error({"a": 1.0}, None, {"a": 1.0}) == math.inf
    assert step_error({"a": 1.0}, {"a": math.nan}, {"a": 1.0}) == math.inf
    assert step_error({"a": 1.0, "b": 1.0}, {"a": 1.0, "b": math.nan}) == math.inf
    assert step_error({"a": 0.0}, {"a": 0.0}, {"a": 0.0}) == 0.0
    assert step_error({"a": 1.0, "b": 1.0}, {"a": 1.01, "b": 1.02}) == pytest.approx(0.02)


def test_the_quadratures_convergence_in_lanczos_steps_is_reported(tmp_path):
    """``spectrum_rel_change``: the error in the steps estimated from the final records on
    all but the last one and two Krylov blocks (`step_error`), in the summary, the ODE's
    attributes and a one-line warning above the threshold.
    One probe and two steps at d = 12 is far from converged (the reviewer's 1-probe, 1-step
    run was 9x off in dist_to_opt without a word); a space that is ``R^d`` from the first
    block is exact (0)."""
    from advdyn.workflows.run import SPECTRUM_REL_CHANGE_WARN, run

    cfg = _run_config(tmp_path, spectrum="binned", probes=1, lanczos_steps=2)
    with pytest.warns(UserWarning, match=r"lanczos_steps"):
        result = run(cfg)
    change = result.summary["data"]["spectrum_rel_change"]
    assert change > SPECTRUM_REL_CHANGE_WARN
    assert result.datasets["ode"].attrs["spectrum_rel_change"] == change
    from advdyn.cli.run import data_report

    assert (f"quadrature error in the Lanczos steps about {change:.2g} (warns above 0.01)"
            in data_report(result.summary["data"])[0])
    with pytest.raises(ad.ConfigError, match=r"lanczos_steps"):  # no step fewer than one
        validate_config(_config(tmp_path, 12, spectrum="binned", lanczos_steps=1))


def test_the_auto_fallback_to_binned_refuses_sgd_before_computing(tmp_path, monkeypatch):
    """An ``auto`` spectrum whose dense covariance does not fit in memory falls back to the
    binned path: SGD on the surrogate is then refused naming run.methods (it was an
    AssertionError mid-run), and run.bins naming run.bins."""
    import advdyn.config.build as build
    from advdyn.workflows.run import run

    def no_memory(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(build, "mixture_statistics", no_memory)
    build._data_moments.cache_clear()  # the data are read again, under the patch
    try:
        for methods, field in ((("ode", "sgd"), "run.methods"), (("ode",), "run.bins")):
            raw = _config(tmp_path, 12)
            raw["run"].update({"methods": list(methods)})
            if field == "run.bins":
                raw["run"]["bins"] = 4
            with pytest.raises(ad.ConfigError, match=field.replace(".", r"\.")) as err:
                run(validate_config(raw))
            assert "does not fit in memory" in str(err.value)
    finally:
        build._data_moments.cache_clear()  # no binned statistics left for the dense path


def test_the_auto_fallback_to_binned_reads_the_file_once(tmp_path, monkeypatch):
    """An ``auto`` dense path whose covariance does not fit falls back to the binned path on
    the table already read (it was read again), and a second seed does not try the dense
    path again (it reads once more: the binned statistics hold theta_0's measures)."""
    import advdyn.config.build as build

    reads, dense_tries = [], []

    def no_memory(*args, **kwargs):
        dense_tries.append(1)
        raise MemoryError

    real = build.load_data
    monkeypatch.setattr(build, "mixture_statistics", no_memory)
    monkeypatch.setattr(build, "load_data", lambda data: reads.append(1) or real(data))
    build._data_moments.cache_clear()
    try:
        raw = _config(tmp_path, 12, probes=4, lanczos_steps=2)  # written once
        for seed in (0, 1):
            raw["problem"]["seed"] = seed
            dp = ad.data_problem(validate_config(raw).problem)
            assert dp.binned
            assert len(reads) == seed + 1
        assert len(dense_tries) == 1
    finally:
        build._data_moments.cache_clear()


def test_settings_a_data_spectrum_does_not_use_are_refused_or_warned(tmp_path):
    """run.bins on a binned data spectrum and the binned settings on an explicit dense one are
    refused (one line naming the field); on an ``auto`` spectrum that is dense they are
    warned about once; a label noise on a data problem (the surrogate's is the data's
    residual noise) is refused."""
    from advdyn.workflows.run import check_data_spectrum

    raw = _config(tmp_path, 12, spectrum="binned")
    raw["run"]["bins"] = 4
    with pytest.raises(ad.ConfigError, match=r"run\.bins"):
        validate_config(raw)
    with pytest.raises(ad.ConfigError, match=r"data\.probes"):
        validate_config(_config(tmp_path, 12, spectrum="dense", probes=4))
    cfg = validate_config(_config(tmp_path, 12, lanczos_steps=4))
    with pytest.warns(UserWarning, match=r"problem\.data\.lanczos_steps not used"):
        check_data_spectrum(cfg, ad.data_problem(cfg.problem))
    raw = _config(tmp_path, 12)
    raw["problem"]["task"] = {"kind": "regression", "noise": 0.3}
    with pytest.raises(ad.ConfigError, match=r"task\.noise"):
        validate_config(raw)


def test_the_rows_instance_of_a_binned_spectrum_is_no_theory_input(tmp_path):
    """The binned path's rows_instance (for data_sgd, in the data's own basis) has NaN
    eigenvalues, which the ODE and the optimum refuse, naming the instance."""
    cfg = _run_config(tmp_path, spectrum="binned", probes=4, lanczos_steps=2)
    rows_instance = ad.data_problem(cfg.problem).rows_instance
    assert np.all(np.isnan(np.asarray(rows_instance.eigenvalues)))
    with pytest.raises(ad.ConfigError, match=r"instance.*rows_instance"):
        ad.adversarial_optimum(rows_instance)
    with pytest.raises(ad.ConfigError, match=r"instance.*rows_instance"):
        ad.solve_ode(rows_instance, ad.Constant(0.5), np.linspace(0.0, 1.0, 3))
    dp = ad.data_problem(cfg.problem)  # SGD on the rows: the same check, its own remedy
    with pytest.raises(ad.ConfigError, match=r"instance.*rows_instance.*measured_only=True"):
        ad.simulate_data_sgd(rows_instance, dp.rows, dp.targets, ad.Constant(0.5),
                             ad.stream_key(0), t_max=1.0)


def test_phase_on_a_data_problem(tmp_path):
    """``phase`` on a binned data spectrum runs the ODE on the quadrature's nodes (the dense
    diagram's numbers where the Krylov space is R^d, to 1e-9), records the spectrum, refuses
    data_sgd there with a rate that reads the iterate's statistics (naming lr.kind; with a
    constant rate it runs: tests/workflows/test_phase_data_sgd.py), and refuses a sweep of
    problem.task.noise on any data problem (run uses the data's residual noise)."""
    from advdyn.workflows.phase import phase_diagram

    axes = {"problem.epsilon": [0.1, 0.3]}
    dense = phase_diagram(_run_config(tmp_path, spectrum="dense"), axes).dataset
    binned = phase_diagram(_run_config(tmp_path, spectrum="binned", probes=8, lanczos_steps=6),
                           axes).dataset
    assert dense.attrs["spectrum"] == "dense"
    assert binned.attrs["spectrum"].startswith("binned (Lanczos, 8 probes")
    np.testing.assert_allclose(binned["final_adv_risk"], dense["final_adv_risk"], rtol=1e-9)
    line_search = _run_config(tmp_path, methods=("ode", "data_sgd"), spectrum="binned"
                              ).with_overrides(lr={"kind": "line_search"})
    with pytest.raises(ad.ConfigError, match=r"lr\.kind"):
        phase_diagram(line_search, axes)
    with pytest.raises(ad.ConfigError, match=r"problem\.task\.noise"):
        phase_diagram(_run_config(tmp_path, spectrum="dense"), {"problem.task.noise": [0.0]})
