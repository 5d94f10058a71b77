"""The simulators' counter-based stream (issue 13, item 3; issue 14, SGD generator)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import advdyn as ad
from advdyn.config.schema import ProblemConfig
from advdyn.simulate.streams import gaussian, philox4x32, step_scalars, stream_words

# Random123's published known-answer vectors of Philox4x32-10 (its tests/kat_vectors)
KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


@pytest.mark.parametrize(("counter", "key", "want"), KAT)
def test_philox_known_answers(counter, key, want):
    got = philox4x32(tuple(jnp.uint32(c) for c in counter), tuple(jnp.uint32(k) for k in key))
    assert tuple(int(w) for w in got) == want


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_gaussians_have_normal_law_and_no_correlation(dtype):
    """2^18 draws (64 steps x 4096 coordinates): mean, variance, skewness and excess kurtosis
    within 5 standard errors (sd of the mean 1/sqrt(n) = 2e-3, of the variance sqrt(2/n),
    of the skewness sqrt(6/n), of the kurtosis sqrt(24/n)); Kolmogorov-Smirnov p > 1e-3;
    neighbouring coordinates, steps and replicates uncorrelated within 5/sqrt(n)."""
    words = stream_words(ad.stream_key(3))
    d, steps = 4096, 64
    draw = jax.jit(jax.vmap(lambda k, r: gaussian(words, r, k, d, dtype), in_axes=(0, None)))
    z = np.asarray(draw(jnp.arange(steps), 0), np.float64)
    z1 = np.asarray(draw(jnp.arange(steps), 1), np.float64)
    n = z.size
    se = 5 / np.sqrt(n)
    assert abs(z.mean()) < se
    assert abs(z.var() - 1) < 5 * np.sqrt(2 / n)
    assert abs(stats.skew(z.ravel())) < 5 * np.sqrt(6 / n)
    assert abs(stats.kurtosis(z.ravel())) < 5 * np.sqrt(24 / n)
    assert stats.kstest(z.ravel(), "norm").pvalue > 1e-3
    assert abs(np.mean(z[:, 1:] * z[:, :-1])) < 5 / np.sqrt(z[:, 1:].size)  # coordinates
    assert abs(np.mean(z[1:] * z[:-1])) < 5 / np.sqrt(z[1:].size)  # steps
    assert abs(np.mean(z * z1)) < se  # replicates
    # the coordinates sharing one Philox call (j, j + m, j + 2m, j + 3m) are uncorrelated
    m = d // 4
    assert abs(np.mean(z[:, :m] * z[:, m:2 * m])) < 5 / np.sqrt(z[:, :m].size)


def test_float32_and_float64_draw_the_same_numbers():
    """Both precisions invert the same Philox words (float32 from the top 24 bits)."""
    words = stream_words(ad.stream_key(0))
    with jax.enable_x64(True):
        z32 = np.asarray(gaussian(words, 2, 7, 1000, jnp.float32), np.float64)
        z64 = np.asarray(gaussian(words, 2, 7, 1000, jnp.float64))
    np.testing.assert_allclose(z32, z64, atol=2e-5 * (1 + np.abs(z64).max()))
    u, xi = step_scalars(words, 2, 7, jnp.float64)
    assert 0 < float(u) < 1 and np.isfinite(float(xi))


def _sgd(inst, **kw):
    kw = {"t_max": 2.0, "n_times": 61, "replicates": 4, "dtype": "float32", **kw}
    return ad.simulate_sgd(inst, ad.Constant(0.8), ad.stream_key(1), **kw)


@pytest.fixture(scope="module")
def mixture():
    # regression: the label noise uses the per-step scalars as well as the Gaussians
    return ad.instantiate(ProblemConfig(
        d=60, epsilon=0.5, ridge=0.05, task={"kind": "regression", "noise": 0.3},
    ))


def test_sgd_stream_does_not_depend_on_grid_replicates_or_block(mixture):
    """SGD at common times is bitwise equal for n_times 11 and 61, for 4 and 8
    replicates and for two block sizes (the stream is indexed by (seed, r, k) only)."""
    a = _sgd(mixture)
    b = _sgd(mixture, n_times=11)
    common = np.searchsorted(a.ts, b.ts)
    np.testing.assert_array_equal(a.ts[common], b.ts)
    np.testing.assert_array_equal(a["adv_risk"][:, common], b["adv_risk"])
    c = _sgd(mixture, replicates=8)
    np.testing.assert_array_equal(c["adv_risk"][:4], a["adv_risk"])
    e = _sgd(mixture, block_size=7)
    np.testing.assert_array_equal(e["adv_risk"], a["adv_risk"])


def test_hsgd_stream_does_not_depend_on_grid_or_replicates(mixture):
    kw = {"t_max": 1.0, "dtype": "float32"}
    a = ad.simulate_hsgd(mixture, ad.Constant(0.8), ad.stream_key(1), n_times=61,
                         replicates=2, **kw)
    b = ad.simulate_hsgd(mixture, ad.Constant(0.8), ad.stream_key(1), n_times=11,
                         replicates=3, **kw)
    common = np.searchsorted(a.ts, b.ts)
    np.testing.assert_array_equal(a["adv_risk"][:, common], b["adv_risk"][:2])


def test_grid_never_passes_t_max():
    """The last record is t_max itself (d = 1000, t_max = 1, n_times = 7 once ended at
    1.008)."""
    for d, t_max, n in ((1000, 1.0, 7), (999, 0.37, 61), (3, 2.0, 61), (1000, 6.0, 61)):
        g = ad.time_grid(d, t_max, n)
        assert g.times[-1] <= t_max + 1e-15
        assert t_max - g.times[-1] < (n - 1) / d + 1e-12  # within n - 1 steps of the horizon
        assert g.block * -(-g.stride // g.block) - g.stride < -(-g.stride // g.block)
