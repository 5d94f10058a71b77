"""Counter-based random streams of the simulators: Philox4x32-10 indexed by (replicate, step).

The simulators need, for replicate ``r`` and SGD step ``k``, ``d`` standard Gaussians (the
sample ``z`` of SGD, the Brownian increment of the SDE) and, for some problems, two scalars
(the class of a mixture sample, the label noise). They are the outputs of the counter-based
generator Philox4x32-10 (Salmon, Moraes, Dror and Shaw, "Parallel random numbers: as easy as
1, 2, 3", SC 2011), a bijection of a 128-bit counter under a 64-bit key:

* **key**: the two 32-bit words of the JAX key (`stream_words`), the stream key of
  [`advdyn.problem.stream_key`][advdyn.problem.stream_key] for SGD and ``fold_in(stream_key,
  HSGD_STREAM)`` for the
  SDE;
* **counter**: ``(j, k mod 2^32, k div 2^32, r)``. Coordinate ``i`` of the Gaussian vector of
  step ``k`` is word ``i div m`` of the output for ``j = i mod m``, with
  ``m = ceil(d / 4)``; the per-step scalars use ``j = 2^32 - 1`` (never a coordinate's).

Hence the numbers of replicate ``r`` at step ``k`` depend on the seed, ``r``, ``k``, ``d``
and the dtype only -- never on the recording grid (``n_times``, ``t_max``), the number of
replicates, the sampling block or the device layout, so that recording more often, adding
replicates or changing ``run.block_size`` leaves every trajectory unchanged bit for bit.

From bits to Gaussians (inverse CDF, exact symmetric uniforms): in float32 the top 24 bits
``m`` give ``v = (2 m + 1 - 2^24) / 2^24`` (exact, in ``(-1, 1)``, symmetric) and
``z = sqrt(2) erfinv(v)``; in float64 the 32 bits give ``v = (2 m + 1 - 2^32) / 2^32``. The
float32 and float64 streams are thus the same numbers up to the resolution of ``v``
(``2^-23`` vs ``2^-31``): a float64 run is the float32 run refined, not a different stream.
The tails are cut at ``|z| = 5.3`` (float32) and ``6.2`` (float64), probabilities
``1.2e-7`` and ``6e-10``, far below anything a run of ``d t_max`` steps resolves.

Statistical quality: Philox4x32-10 passes TestU01's BigCrush for every tested key and
counter pattern (the paper above; it is also XLA's and cuRAND's Philox), with three rounds
of safety margin. ``tests/simulate/test_streams.py`` checks the implementation against
Random123's known-answer vectors and the Gaussians' moments, their Kolmogorov-Smirnov
distance and the correlations between coordinates, steps and replicates.

Why not ``jax.random.normal``: its threefry2x32 (20 rounds per two words) costs about three
times Philox's 10 rounds of two 32x32 -> 64-bit multiplications per four words on a CPU,
which made the Gaussian draws, not the SGD step, the simulators' bottleneck
(``docs/benchmarks.md``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, UInt

_M0, _M1 = 0xD2511F53, 0xCD9E8D57  # Philox4x32 multipliers
_W0, _W1 = 0x9E3779B9, 0xBB67AE85  # Weyl key increments
_ROUNDS = 10
#: counter word ``j`` reserved for the per-step scalars (never a coordinate block)
SCALAR_SLOT = 0xFFFFFFFF


def philox4x32(
    counter: tuple[Array, Array, Array, Array], key: tuple[Array, Array]
) -> tuple[Array, Array, Array, Array]:
    """Philox4x32-10: four 32-bit words from a 128-bit counter and a 64-bit key.

    Parameters
    ----------
    counter : tuple of 4 uint32 arrays
        Counter words (broadcast together).
    key : tuple of 2 uint32 arrays
        Key words.

    Returns
    -------
    tuple of 4 uint32 arrays
        The output words, Random123's ``philox4x32_10(counter, key)``. Needs
        ``jax_enable_x64`` (the 32x32 -> 64-bit products).
    """
    u32, u64 = jnp.uint32, jnp.uint64
    c0, c1, c2, c3 = (jnp.asarray(c, u32) for c in counter)
    k0, k1 = (jnp.asarray(k, u32) for k in key)
    m0, m1 = jnp.asarray(_M0, u64), jnp.asarray(_M1, u64)
    for _ in range(_ROUNDS):
        p0 = m0 * c0.astype(u64)
        p1 = m1 * c2.astype(u64)
        hi0, lo0 = (p0 >> 32).astype(u32), p0.astype(u32)
        hi1, lo1 = (p1 >> 32).astype(u32), p1.astype(u32)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        k0 = k0 + jnp.asarray(_W0, u32)
        k1 = k1 + jnp.asarray(_W1, u32)
    return c0, c1, c2, c3


def stream_words(key: Array) -> UInt[Array, 2]:
    """The Philox key of a JAX random key: its two 32-bit words.

    Parameters
    ----------
    key : jax.random key
        A typed (``jax.random.key``) or raw threefry key.

    Returns
    -------
    Array, shape (2,), uint32
    """
    data = jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key
    return jnp.asarray(data, jnp.uint32).reshape(-1)[-2:]


def _split_step(k) -> tuple[Array, Array]:
    k = jnp.asarray(k, jnp.uint64)
    return (k & jnp.uint64(0xFFFFFFFF)).astype(jnp.uint32), (k >> 32).astype(jnp.uint32)


def bits_to_normal(bits: UInt[Array, ...], dtype) -> Float[Array, ...]:
    """Standard Gaussians from uniform 32-bit words by the inverse CDF (module docstring).

    Parameters
    ----------
    bits : uint32 array
    dtype : float32 or float64

    Returns
    -------
    Array
        ``sqrt(2) erfinv(v)`` with ``v`` the exact symmetric uniform of the top 24 (float32)
        or all 32 (float64) bits.
    """
    dtype = jnp.dtype(dtype)
    if dtype == jnp.float32:
        m = (bits >> 8).astype(jnp.int32)
        v = (2 * m + (1 - (1 << 24))).astype(jnp.float32) * jnp.float32(2.0**-24)
    else:
        m = bits.astype(jnp.int64)
        v = (2 * m + (1 - (1 << 32))).astype(dtype) * jnp.asarray(2.0**-32, dtype)
    return jax.lax.erf_inv(v) * jnp.asarray(np.sqrt(2.0), dtype)


def bits_to_uniform(bits: UInt[Array, ...]) -> Float[Array, ...]:
    """Uniforms on ``(0, 1)`` (float64): ``(m + 1/2) / 2^32``."""
    return (bits.astype(jnp.float64) + 0.5) * 2.0**-32


def gaussian(words, r, k, d: int, dtype) -> Float[Array, " d"]:
    """The ``d`` Gaussians of replicate ``r`` at step ``k``.

    Parameters
    ----------
    words : Array, shape (2,), uint32
        Stream key (`stream_words`).
    r : int or uint32 scalar
        Replicate.
    k : int scalar
        Step (``0 <= k < 2^64``).
    d : int
        Dimension.
    dtype : float32 or float64

    Returns
    -------
    Array, shape (d,)
    """
    m = -(-d // 4)
    j = jnp.arange(m, dtype=jnp.uint32)
    k_lo, k_hi = _split_step(k)
    zero = jnp.zeros_like(j)
    out = philox4x32((j, zero + k_lo, zero + k_hi, zero + jnp.asarray(r, jnp.uint32)),
                     (words[0], words[1]))
    return bits_to_normal(jnp.concatenate(out)[:d], dtype)


def step_scalars(words, r, k, dtype) -> tuple[Float[Array, ""], Float[Array, ""]]:
    """The two scalars of replicate ``r`` at step ``k``: a uniform and a Gaussian.

    Parameters
    ----------
    words : Array, shape (2,), uint32
    r, k : int scalars
    dtype : float32 or float64
        Of the Gaussian.

    Returns
    -------
    u : float64 scalar
        Uniform on ``(0, 1)`` (the class of a mixture sample).
    xi : scalar of ``dtype``
        Standard Gaussian (the label noise).
    """
    k_lo, k_hi = _split_step(k)
    out = philox4x32((jnp.uint32(SCALAR_SLOT), k_lo, k_hi, jnp.asarray(r, jnp.uint32)),
                     (words[0], words[1]))
    return bits_to_uniform(out[0]), bits_to_normal(out[1], dtype)
