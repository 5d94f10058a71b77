"""Reading a data set and its binned surrogate without copies of the table (issue 28's cost):
the checks, moments and standardisation in two passes over the rows, the products with the
table over blocks of rows, and the same numbers as the dense formulas."""

from __future__ import annotations

import itertools
import tracemalloc

import numpy as np
import pytest

from advdyn.checks import data_features, row_chunks
from advdyn.config import validate_config
from advdyn.config.build import load_data
from advdyn.errors import ConfigError
from advdyn.problem.data import spectral_statistics, surrogate_diagnostics


def _table(n: int, d: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Correlated rows far from centred and unit scale (offset 5, scales 0.1 to 10)."""
    rng = np.random.default_rng(seed)
    X = 5.0 + (rng.standard_normal((n, d)) @ rng.standard_normal((d, d)) / np.sqrt(d)
               * np.geomspace(0.1, 10.0, d))
    return X, X @ rng.standard_normal(d) + rng.standard_normal(n)


def _load(tmp_path, X, y, **data):
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    cfg = validate_config({"problem": {"loss": "least_squares", "epsilon": 0.2, "data": {
        "path": str(tmp_path / "X.npy"), "target": str(tmp_path / "y.npy"),
        "task": "regression", **data}}})
    return cfg.problem.data


def test_row_chunks_cover_the_rows_in_order():
    for n, d in ((1, 1), (7, 10**7), (1000, 3), (10**5, 4000)):
        blocks = row_chunks(n, d)
        assert blocks[0].start == 0 and blocks[-1].stop == n
        assert all(a.stop == b.start for a, b in itertools.pairwise(blocks))
        assert all(b.stop > b.start for b in blocks)


def test_the_one_pass_moments_across_many_blocks(monkeypatch):
    """Merged block moments against numpy's mean and (1/n) std: rounding only (rtol 1e-13;
    the naive one-pass ``E x^2 - (E x)^2`` would lose about ``1e-16 * 25 / 0.01`` relative
    on the smallest column, offset 5 and scale 0.1, which the merge of centred sums avoids).
    NaN and inf are counted over every block and the first is named."""
    import advdyn.checks as checks

    monkeypatch.setattr(checks, "ROW_BLOCK_BYTES", 8 * 7 * 13)  # 13 rows a block
    X, _ = _table(3001, 7)
    assert len(row_chunks(3001, 7)) == 231
    moments = data_features(X, "f")
    np.testing.assert_allclose(moments.mean, X.mean(axis=0), rtol=1e-13)
    np.testing.assert_allclose(moments.std, X.std(axis=0), rtol=1e-13)
    X[2000, 3] = np.nan
    X[2500, 1] = np.inf
    with pytest.raises(ConfigError, match=r"2 entries are NaN or infinite \(first at row 2000, "
                                          r"column 3\)"):
        data_features(X, "f")


@pytest.mark.parametrize("mode", ["scale", "center", "none"])
def test_load_data_standardises_as_the_dense_formula(tmp_path, mode):
    X, y = _table(500, 30)
    X_std, _ = load_data(_load(tmp_path, X, y, standardize=mode))
    expected = X.copy()
    if mode != "none":
        expected = expected - X.mean(axis=0)
    if mode == "scale":
        expected /= X.std(axis=0)
    assert X_std.dtype == np.float64 and X_std.flags.c_contiguous
    np.testing.assert_allclose(X_std, expected, rtol=0, atol=1e-13 * np.abs(expected).max())


def test_a_float32_table_is_standardised_in_float32(tmp_path):
    """float32 rows (the table's own precision: what data_sgd samples as it is), each the
    float64 standardised value of the float32 entry rounded once: within half a float32
    ulp (relative ``2^-24``) of the float64 computation, plus the float64 rounding of the
    column moments (1e-13 of the largest value)."""
    X, y = _table(500, 30)
    X32 = X.astype(np.float32)
    X_std, _ = load_data(_load(tmp_path, X32, y))
    assert X_std.dtype == np.float32 and X_std.flags.c_contiguous
    X64 = X32.astype(np.float64)
    expected = (X64 - X64.mean(axis=0)) / X64.std(axis=0)
    np.testing.assert_allclose(X_std, expected, rtol=2.0**-24,
                               atol=1e-13 * np.abs(expected).max())


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of 64 KiB, a hundredth of the tables here (so that whole-table copies stand
    out from the blocks in the peak memory)."""
    import advdyn.checks as checks

    monkeypatch.setattr(checks, "ROW_BLOCK_BYTES", 1 << 16)


def test_reading_a_table_holds_one_copy_of_it(tmp_path, small_blocks):
    """Peak memory (numpy's allocations, traced) of reading, checking and standardising a
    ``.npy`` table: the standardised rows and a few blocks, not the two or three full
    copies of reading the file, converting it and centring it."""
    X, y = _table(4000, 200)
    data = _load(tmp_path, X, y)
    table = X.nbytes
    del X
    tracemalloc.start()
    try:
        X_std, _ = load_data(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert X_std.nbytes == table
    assert peak < 1.1 * table, peak / table


def test_the_binned_statistics_copy_no_table(tmp_path, small_blocks):
    """The Lanczos products and the diagnostics read blocks of rows: a float32 table is not
    converted whole (peak below a quarter of its float64 size). Its products are float32
    (centred columns): the statistics equal those of its float64 copy to a few float32
    roundings (1e-5 relative; the uncentred case below, float64 products, is tight)."""
    X, y = _table(4000, 200)
    X32 = np.ascontiguousarray((X - X.mean(axis=0)) / X.std(axis=0), np.float32)
    y = y - y.mean()
    tracemalloc.start()
    try:
        stats = spectral_statistics(X32, y, "regression", probes=4, steps=3)
        diagnostics = surrogate_diagnostics(X32, y, stats)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 0.25 * X32.astype(np.float64).nbytes, peak / X32.nbytes
    X64 = X32.astype(np.float64)
    stats64 = spectral_statistics(X64, y, "regression", probes=4, steps=3)
    np.testing.assert_allclose(stats.nodes, stats64.nodes, rtol=1e-5,
                               atol=1e-5 * stats64.nodes.max())
    np.testing.assert_allclose(stats.density.sum(), stats64.density.sum(), rtol=1e-12)
    np.testing.assert_allclose(stats.teacher, stats64.teacher, rtol=0,
                               atol=1e-5 * np.abs(stats64.teacher).max())
    expected = surrogate_diagnostics(X64, y, stats64)
    for key in ("kurtosis_teacher", "residual_kurtosis", "effective_dimension"):
        np.testing.assert_allclose(diagnostics[key], expected[key], rtol=1e-4, atol=1e-6)


def test_uncentred_float32_rows_give_the_statistics_of_their_float64_copy(small_blocks):
    """Large column means (offset 100 on unit-variance columns): the mean terms of
    ``X^T X Q`` are ``10^4`` times the covariance, and float32 products of the raw rows
    (relative rounding ``2^-24 ~ 6e-8``, times ``10^4``) moved the teacher by percents. The
    Krylov products centre each block first, so the float32 products carry float32's
    rounding of the centred rows only: the nodes agree with the float64 copy's to a few
    float32 roundings (1e-6 relative, with Krylov growth over 3 steps), and the teacher,
    a least-squares solution, to ``u`` times the covariance's condition number (``u =
    2^-24``, the relative size of those roundings; 1.3e-5 of the teacher's largest entry
    here, against 1e-4)."""
    X, y = _table(2000, 40)
    X32 = np.ascontiguousarray(X + 100.0, np.float32)
    X64 = X32.astype(np.float64)
    stats = spectral_statistics(X32, y, "regression", probes=4, steps=3)
    stats64 = spectral_statistics(X64, y, "regression", probes=4, steps=3)
    assert stats.products == "float32" and stats64.products == "float64"
    np.testing.assert_allclose(stats.nodes, stats64.nodes, rtol=1e-6,
                               atol=1e-6 * stats64.nodes.max())
    condition = stats64.nodes.max() / stats64.nodes.min()
    np.testing.assert_allclose(stats.teacher, stats64.teacher, rtol=0,
                               atol=2.0**-24 * condition * np.abs(stats64.teacher).max())


def test_float32_products_keep_far_apart_uncentred_classes(small_blocks):
    """The reviewer's case (``standardize = "none"``): one column of variance ``10^5``, the
    classes ``+/- 0.99 sqrt(10^5)`` apart along another column of within-class variance 1,
    every column offset by 50. The class means' part of the second moment is ``10^5`` times
    the covariance along the means, where products of uncentred float32 rows lost 4e-3 of
    the nodes; products of the class-centred rows agree with the float64 copy's to a few
    float32 roundings (1e-5 relative: the nodes, and the moments ``sum_j w_j nu_j^k``,
    ``k = 0, 1, 2``, of the teacher's and a class mean's measures, which is what the ODE
    integrates; the masses of two close nodes alone can trade more)."""
    rng = np.random.default_rng(3)
    n, d, V = 4000, 50, 1e5
    labels = np.where(rng.random(n) < 0.5, 1.0, -1.0)
    X = rng.standard_normal((n, d)) @ rng.standard_normal((d, d)) / np.sqrt(d)
    X[:, 0] *= np.sqrt(V)
    X[:, 1] += 0.99 * np.sqrt(V) * labels
    X32 = np.ascontiguousarray(X + 50.0, np.float32)
    stats = spectral_statistics(X32, labels, "classification", probes=4, steps=3)
    stats64 = spectral_statistics(X32.astype(np.float64), labels, "classification",
                                  probes=4, steps=3)
    np.testing.assert_allclose(stats.nodes, stats64.nodes, rtol=1e-5,
                               atol=1e-5 * stats64.nodes.max())
    for a in ("teacher", "mean+"):
        for k in range(3):
            moment = np.sum(stats.measure(a, a) * stats.nodes**k)
            expected = np.sum(stats64.measure(a, a) * stats64.nodes**k)
            assert moment == pytest.approx(expected, rel=1e-5), (a, k)


@pytest.mark.parametrize("task", ["regression", "classification"])
def test_the_binned_diagnostics_project_through_the_krylov_products(small_blocks, monkeypatch,
                                                                    task):
    """The binned path's diagnostics take the class-centred rows' projections from the
    Krylov passes' products (``row_products``) and make no pass of their own: the same
    numbers as a pass over the rows (float64 table; the directions lie in the Krylov space,
    so the two differ by rounding: 1e-10 relative)."""
    import advdyn.problem.data as data

    X, y = _table(1500, 30)
    if task == "classification":
        y = np.where(y > np.median(y), 1.0, -1.0)
        centres = np.where((y == 1.0)[:, None], X[y == 1.0].mean(0), X[y == -1.0].mean(0))
    else:
        centres = X.mean(0)
    stats = spectral_statistics(X, y, task, probes=3, steps=3)
    assert stats.row_products is not None and stats.coarser.row_products is None
    expected = (X - centres) @ np.column_stack([stats.top, stats.teacher])
    np.testing.assert_allclose(stats.row_products, expected, rtol=0,
                               atol=1e-10 * np.abs(expected).max())
    passed = surrogate_diagnostics(X, y, stats._replace(row_products=None))

    def no_pass(*args):
        raise AssertionError("the diagnostics passed over the rows")

    monkeypatch.setattr(data, "_rows_times", no_pass)
    folded = surrogate_diagnostics(X, y, stats)
    for key in ("kurtosis_teacher", "kurtosis_top", "kurtosis_max_abs", "residual_kurtosis"):
        if key in passed:
            np.testing.assert_allclose(folded[key], passed[key], rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="rows"):
        surrogate_diagnostics(X[:-1], y[:-1], stats)


def test_the_krylov_products_are_in_the_tables_dtype(small_blocks):
    """A float32 table's Krylov products are float32 (half the time of float64 ones), a
    float64 table's float64, and the label says which. On a centred table the float32
    products move the nodes and the teacher by a few float32 roundings (``u = 6e-8``
    relative per product, summed over blocks in float64; Krylov growth over 3 steps: 1e-5
    allowed)."""
    X, y = _table(3000, 40)
    centred = np.ascontiguousarray((X - X.mean(axis=0)) / X.std(axis=0), np.float32)
    y = y - y.mean()
    labels = np.where(y > 0, 1.0, -1.0)
    for table, target, task, expected in (
            (centred, y, "regression", "float32"),
            (centred, labels, "classification", "float32"),
            (centred.astype(np.float64), y, "regression", "float64")):
        stats = spectral_statistics(table, target, task, probes=3, steps=3)
        assert stats.products == expected, (task, table.dtype)
        assert ("float32 products" in stats.method) == (expected == "float32")
    stats = spectral_statistics(centred, y, "regression", probes=3, steps=3)
    stats64 = spectral_statistics(centred.astype(np.float64), y, "regression", probes=3,
                                  steps=3)
    np.testing.assert_allclose(stats.nodes, stats64.nodes, rtol=1e-5,
                               atol=1e-5 * stats64.nodes.max())
    np.testing.assert_allclose(stats.teacher, stats64.teacher, rtol=0,
                               atol=1e-5 * np.abs(stats64.teacher).max())


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_the_krylov_space_grows_on_a_table_far_from_zero(small_blocks, dtype):
    """Columns offset by ``10^3`` (unit variance): the start vectors are normalised and
    deflation is measured on the covariance's scale, so the space reaches ``R^d`` as on a
    centred table (it stopped after one block when the means set the deflation floor) and
    the nodes are the dense eigenvalues (float64: 1e-9 relative; float32: the table's own
    rounding, ``2^-24`` times the offset over the spread, 1e-4)."""
    from advdyn.problem.data import mixture_statistics

    rng = np.random.default_rng(4)
    n, d = 3000, 30
    X = (rng.standard_normal((n, d)) * np.linspace(0.5, 1.5, d) + 1e3).astype(dtype)
    y = X @ rng.standard_normal(d) / np.sqrt(d) + rng.standard_normal(n)
    stats = spectral_statistics(X, y, "regression", probes=8, steps=4)
    dense = mixture_statistics(X.astype(np.float64), y, "regression")
    assert stats.nodes.size == d
    tol = 1e-9 if dtype == "float64" else 1e-4
    np.testing.assert_allclose(stats.nodes, dense.eigenvalues, rtol=tol,
                               atol=tol * dense.eigenvalues.max())


def test_two_far_apart_classes_are_each_centred_on_their_own_mean(small_blocks):
    """Two classes ``10^5`` apart along one column (unit variance, float32 table): each row
    is centred on its own class's mean, which is exact near it (Sterbenz), so the product
    is the exactly centred one to float32's rounding of the centred rows (1e-5 relative;
    centring on one class's mean and shifting the other rounded at the classes' distance,
    1.7e-4 off)."""
    from advdyn.problem.data import _gram_times

    rng = np.random.default_rng(5)
    n, d = 4000, 20
    labels = np.where(rng.random(n) < 0.5, 1.0, -1.0)
    X = rng.standard_normal((n, d))
    X[:, 0] += 0.5e5 * labels
    X32 = X.astype(np.float32)
    masks = np.column_stack([labels == 1.0, labels == -1.0]).astype(np.float64)
    means = np.array([X32[labels == 1.0].astype(np.float64).mean(0),
                      X32[labels == -1.0].astype(np.float64).mean(0)])
    Q = np.linalg.qr(rng.standard_normal((d, 4)))[0]
    centres = means.astype(np.float32)
    out, _, _ = _gram_times(X32, Q, masks, centres)
    R = X32.astype(np.float64) - masks @ centres.astype(np.float64)
    expected = R.T @ (R @ Q)
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-5 * np.abs(expected).max())


def test_the_one_pass_gram_product_is_the_two_pass_one(small_blocks):
    """``R^T (R Q)`` of the centred rows over blocks (float64 table): the same product as
    the dense formula, summed in another order (rounding, 1e-13 relative), and the rows'
    products ``R Q``."""
    from advdyn.problem.data import _gram_times

    X, _ = _table(3000, 50)
    Q = np.linalg.qr(np.random.default_rng(1).standard_normal((50, 6)))[0]
    mean = X.mean(axis=0)
    out, _, RQ = _gram_times(X, Q, np.ones((3000, 1)), mean[None, :])
    R = X - mean
    expected = R.T @ (R @ Q)
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-13 * np.abs(expected).max())
    np.testing.assert_allclose(RQ, R @ Q, rtol=0, atol=1e-13 * np.abs(R @ Q).max())


def test_standardize_leaves_its_input_alone_unless_told():
    """`standardize` returns a new array (every mode, the input unchanged); only
    ``overwrite=True`` (what the loader passes for the table it read) reuses a writeable
    float64 input."""
    from advdyn.checks import data_features
    from advdyn.problem.data import standardize

    X, _ = _table(50, 4)
    X = X + 3.0
    moments = data_features(X, "x")
    for mode in ("scale", "center", "none"):
        before = X.copy()
        out = standardize(X, moments, mode)
        assert out is not X and np.array_equal(X, before), mode
    out = standardize(X, moments, "scale", overwrite=True)
    assert out is X
    np.testing.assert_allclose(X.mean(axis=0), 0.0, atol=1e-12)


@pytest.mark.parametrize("table", ["float32", "float64"])
@pytest.mark.parametrize("run_dtype", ["float32", "float64"])
def test_data_sgd_takes_the_table_as_it_is(small_blocks, monkeypatch, table, run_dtype):
    """SGD on the rows copies no table: the rows it gathers from are the table in its own
    dtype (a float32 table was widened to a float64 device copy on entry), and the host
    allocations of the call (numpy's, traced; compiled by a first call) stay below a
    quarter of the table (a float64 table was converted whole to a float32 ``run.dtype``)."""
    import jax.numpy as jnp

    import advdyn as ad
    import advdyn.simulate.data as data_sgd

    X, y = _table(4000, 100)
    rows = np.ascontiguousarray((X - X.mean(axis=0)) / X.std(axis=0), table)
    y = y - y.mean()
    stats = spectral_statistics(rows, y, "regression", probes=4, steps=2,
                                theta0=np.zeros(100))
    from advdyn.problem.data import rows_basis_instance

    instance = rows_basis_instance(stats, ad.make_loss("least_squares"), 0.2, 0.0,
                                   np.zeros(100))
    seen = []
    real = data_sgd._RowBlock
    monkeypatch.setattr(data_sgd, "_RowBlock",
                        lambda r, t: seen.append((r.dtype, r.shape)) or real(r, t))

    def run():
        return ad.simulate_data_sgd(instance, rows, y, ad.Constant(0.5), ad.stream_key(0),
                                    t_max=2.0, n_times=3, replicates=1, dtype=run_dtype,
                                    measured_only=True)

    run()
    tracemalloc.start()
    try:
        sol = run()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert seen == [(np.dtype(table), rows.shape)] * 2
    device_rows = jnp.asarray(rows)  # a JAX array is taken as it is too
    ad.simulate_data_sgd(instance, device_rows, y, ad.Constant(0.5), ad.stream_key(0),
                         t_max=2.0, n_times=3, replicates=1, dtype=run_dtype,
                         measured_only=True)
    assert seen[-1] == (np.dtype(table), rows.shape)
    assert peak < 0.25 * rows.nbytes, peak / rows.nbytes
    assert np.asarray(sol.ys["adv_risk"]).dtype == np.float64
    assert np.all(np.isfinite(np.asarray(sol.ys["adv_risk"])))


@pytest.mark.parametrize("spectrum", ["dense", "binned"])
def test_a_float32_file_gives_the_results_of_its_float64_copy(tmp_path, spectrum):
    """The same values written as float32 and as float64 (offset 5, scales 0.1 to 10: the
    standardisation matters): the float32 file's rows stay float32, the theory float64.

    The only difference is the rounding of each standardised entry to float32, a relative
    error of at most ``u = 2^-24`` (6e-8), independent across entries. A risk is a smooth
    function of the rows (through the moments for the ODE; through the same sampled rows,
    the same seed, for SGD), quadratic in them for least squares, so it moves by about
    ``2u`` times a condition factor of order one (the ODE's moments average the entries'
    errors down further, by ``n^-1/2``); we allow ``16 u`` (1e-6 relative), five orders of
    magnitude below SGD's own fluctuation scale ``d^-1/2 = 0.2``: on standardised
    (``O(1)``) rows float32 costs nothing the comparison with the theory can see."""
    import advdyn as ad
    from advdyn.config.build import data_problem

    X, y = _table(2000, 24)
    X32 = X.astype(np.float32)
    results = {}
    for dtype in ("float32", "float64"):
        np.save(tmp_path / f"X{dtype}.npy", X32.astype(dtype))
        np.save(tmp_path / "y.npy", y)
        cfg = validate_config({"problem": {"loss": "least_squares", "epsilon": 0.2, "data": {
            "path": str(tmp_path / f"X{dtype}.npy"), "target": str(tmp_path / "y.npy"),
            "task": "regression", "spectrum": spectrum}}})
        dp = data_problem(cfg.problem)
        assert dp.rows.dtype == np.dtype(dtype)
        lr = ad.Constant(0.5)
        sgd = ad.simulate_data_sgd(dp.rows_instance, dp.rows, dp.targets, lr,
                                   ad.stream_key(0), t_max=2.0, n_times=5, replicates=2,
                                   measured_only=dp.binned)
        ode = ad.solve_ode(dp.instance, lr, sgd.ts)
        assert np.asarray(ode.ys["adv_risk"]).dtype == np.float64
        results[dtype] = ode, sgd
    tol = 16 * 2.0**-24
    for k in ("adv_risk", "clean_risk"):
        for i in range(2):  # the ODE, then SGD
            a, b = (np.asarray(results[dtype][i].ys[k]) for dtype in ("float32", "float64"))
            np.testing.assert_allclose(a, b, rtol=tol, err_msg=f"{k} {i}")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_the_binned_class_mismatch_estimates_the_dense_one(small_blocks, dtype):
    """``class_mismatch`` (``|Cov_c - Sigma|_F / |Sigma|_F`` per class) from the probes of
    the first Krylov block against the dense path's exact value, on classes with different
    covariances and means far from zero (offset 20, means 3 apart): a ratio of two
    Hutchinson norm estimates from ``k`` Rademacher probes, relative standard deviation
    at most about ``k^-1/2`` (5% at ``k = 400``; 1e-4 measured here, where 400 probes in
    ``d = 20`` nearly resolve the identity); 20% allowed. Without the per-class mean terms
    the float64 table's estimate measured ``|mu_c mu_c^T|``, 3000 times the true value."""
    from advdyn.problem.data import mixture_statistics

    rng = np.random.default_rng(6)
    n, d = 4000, 20
    labels = np.where(rng.random(n) < 0.4, 1.0, -1.0)
    scale = np.where(labels[:, None] > 0, np.linspace(0.5, 1.5, d), np.linspace(1.5, 0.5, d))
    X = (rng.standard_normal((n, d)) * scale + 20.0 + 1.5 * labels[:, None]).astype(dtype)
    dense = mixture_statistics(X.astype(np.float64), labels, "classification")
    binned = spectral_statistics(X, labels, "classification", probes=400, steps=1)
    np.testing.assert_allclose(binned.class_mismatch, dense.class_mismatch, rtol=0.2)
