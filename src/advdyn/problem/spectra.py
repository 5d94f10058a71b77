"""Covariance spectra: the eigenvalues ``lambda_i`` of ``K`` (THEORY section 1).

Each function returns a float64 array of ``d`` eigenvalues. Deterministic spectra use a
midpoint quantile grid, so the same ``d`` always gives the same eigenvalues and no random
draw is involved.
"""

from __future__ import annotations

import numpy as np
from jaxtyping import Float
from numpy.typing import ArrayLike

from advdyn import checks


def _midpoints(d: int) -> np.ndarray:
    return (np.arange(d) + 0.5) / d


def identity(d: int) -> Float[np.ndarray, " d"]:
    """Identity spectrum ``K = I``: ``lambda_i = 1`` for all ``i``.

    Parameters
    ----------
    d : int
        Dimension.

    Returns
    -------
    ndarray, shape (d,)
        ``d`` ones.
    """
    return np.ones(d)


def two_level(d: int, first: float, second: float, fraction: float) -> Float[np.ndarray, " d"]:
    """Two-level spectrum: ``round(fraction * d)`` eigenvalues ``first``, the rest ``second``.

    Parameters
    ----------
    d : int
        Dimension.
    first, second : float
        The two eigenvalue levels.
    fraction : float
        Fraction of the ``d`` directions at level ``first`` (rounded to a count).

    Returns
    -------
    ndarray, shape (d,)
        The ``first`` block, then the ``second`` block.
    """
    k = round(fraction * d)
    return np.concatenate([np.full(k, float(first)), np.full(d - k, float(second))])


def uniform(d: int, low: float, high: float) -> Float[np.ndarray, " d"]:
    """Uniform spectrum on ``[low, high]``: its midpoint quantiles.

    Parameters
    ----------
    d : int
        Dimension.
    low, high : float
        Support of the uniform law.

    Returns
    -------
    ndarray, shape (d,)
        ``lambda_i = low + (high - low) (i + 1/2) / d``, ``i = 0..d-1`` (increasing).
    """
    return low + (high - low) * _midpoints(d)


def power_law(d: int, exponent: float) -> Float[np.ndarray, " d"]:
    """Power-law spectrum ``lambda_i = c * i^(-exponent)``, ``i = 1..d``.

    Parameters
    ----------
    d : int
        Dimension.
    exponent : float
        Decay exponent.

    Returns
    -------
    ndarray, shape (d,)
        Decreasing eigenvalues, with ``c`` such that ``tr K = sum_i lambda_i = d``.
    """
    lam = np.arange(1, d + 1, dtype=float) ** (-float(exponent))
    return lam * (d / lam.sum())


#: below this many terms `power_law_sum` adds them up; above, the Euler-Maclaurin tail
_EULER_MACLAURIN_START = 1024


def power_law_sum(d: int, exponent: float) -> float:
    """The generalised harmonic number ``sum_{i=1}^d i^-exponent`` in ``O(1)`` time.

    The first ``1023`` terms are added up; the tail ``i = n .. d`` (``n = 1024``) is the
    Euler-Maclaurin formula ``int_n^d f + (f(n) + f(d))/2 + sum_k B_2k/(2k)!
    (f^(2k-1)(d) - f^(2k-1)(n))`` for ``f(x) = x^-s`` with ``k = 1..4``; its remainder is of
    order ``s^8 n^(-s-9)``, far below float64 rounding for the exponents of spectra. This is
    the normalisation of `power_law` without its ``d`` powers, so that bins of a power
    law at ``d = 10^8`` cost no more than at ``10^4``.

    Parameters
    ----------
    d : int
        Number of terms (``d >= 1``).
    exponent : float
        ``s >= 0``.

    Returns
    -------
    float

    Raises
    ------
    ConfigError
        If ``d`` is not an integer ``>= 1`` or ``exponent`` not a finite number ``>= 0``.
    """
    d = checks.integer(d, "d", minimum=1)
    s = checks.nonnegative(exponent, "exponent")
    n = _EULER_MACLAURIN_START
    if d < n:
        return float(np.sum(np.arange(1, d + 1, dtype=np.float64) ** -s))
    head = float(np.sum(np.arange(1, n, dtype=np.float64) ** -s))
    log_ratio = np.log(d / n)
    x = (1.0 - s) * log_ratio
    integral = n ** (1.0 - s) * (log_ratio if x == 0 else np.expm1(x) / (1.0 - s))
    tail = integral + 0.5 * (n**-s + float(d) ** -s)
    # f^(2k-1)(x) = -s (s+1) ... (s+2k-2) x^(-s-2k+1); B_2 = 1/6, B_4 = -1/30, B_6 = 1/42,
    # B_8 = -1/30
    rising, factorial = s, 2.0  # s (s+1) ... (s+2k-2) and (2k)!, at k = 1
    for k, bernoulli in enumerate((1 / 6, -1 / 30, 1 / 42, -1 / 30), start=1):
        if k > 1:
            rising *= (s + 2 * k - 3) * (s + 2 * k - 2)
            factorial *= (2 * k - 1) * (2 * k)
        power = -s - (2 * k - 1)
        tail -= bernoulli / factorial * rising * (float(d) ** power - float(n) ** power)
    return head + tail


def marchenko_pastur_quantiles(
    u: Float[ArrayLike, "*shape"], aspect_ratio: float
) -> Float[np.ndarray, "*shape"]:
    """Quantile function of the Marchenko-Pastur law with ratio ``aspect_ratio`` and mean 1.

    For ``aspect_ratio > 1`` the law has an atom of mass ``1 - 1/aspect_ratio`` at 0.
    The continuous part, supported on ``[(1 - sqrt(g))^2, (1 + sqrt(g))^2]`` with
    ``g = aspect_ratio``, is inverted numerically on a Chebyshev-clustered grid (the
    density has square-root edges), accurate to about 1e-9 in the quantile.

    Parameters
    ----------
    u : array_like
        Probabilities in ``[0, 1]``.
    aspect_ratio : float
        Ratio ``g > 0`` of the law (dimension over sample count for a sample covariance).

    Returns
    -------
    ndarray
        Quantiles, same shape as ``u``; 0 where ``u`` falls in the atom.
    """
    g = float(aspect_ratio)
    a, b = (1 - np.sqrt(g)) ** 2, (1 + np.sqrt(g)) ** 2
    atom = max(0.0, 1.0 - 1.0 / g)
    # x = a + (b-a)(1-cos(pi s))/2 makes the sqrt edges smooth in s.
    s = np.linspace(0.0, 1.0, 200_001)
    x = a + (b - a) * (1 - np.cos(np.pi * s)) / 2
    dxds = (b - a) * np.pi * np.sin(np.pi * s) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        dens = np.sqrt(np.clip((b - x) * (x - a), 0, None)) / (2 * np.pi * g * x)
    dens = np.nan_to_num(dens)
    integrand = dens * dxds
    cdf = np.concatenate([[0.0], np.cumsum((integrand[1:] + integrand[:-1]) / 2 * np.diff(s))])
    cdf = atom + cdf * ((1 - atom) / cdf[-1])  # remove the O(h^2) mass error
    u = np.asarray(u, dtype=float)
    return np.where(u <= atom, 0.0, np.interp(u, cdf, x))


def marchenko_pastur(d: int, aspect_ratio: float) -> Float[np.ndarray, " d"]:
    """Marchenko-Pastur spectrum (``K`` a sample covariance, mean eigenvalue 1).

    Parameters
    ----------
    d : int
        Dimension.
    aspect_ratio : float
        Ratio ``g`` of the law, see `marchenko_pastur_quantiles`.

    Returns
    -------
    ndarray, shape (d,)
        The law's quantiles at the midpoints ``(i + 1/2) / d`` (increasing).
    """
    return marchenko_pastur_quantiles(_midpoints(d), aspect_ratio)


#: the laws [`eigenvalue_at`][advdyn.problem.spectra.eigenvalue_at] evaluates without
#: building ``d`` values, and their parameters
LAWS = {"identity": (), "two_level": ("first", "second", "fraction"), "uniform": ("low", "high"),
        "power_law": ("exponent",), "marchenko_pastur": ("aspect_ratio",)}


def eigenvalue_at(kind: str, d: int, idx: ArrayLike, **params: float) -> np.ndarray:
    """Eigenvalue of direction ``idx`` of a deterministic spectrum, without the other ``d``.

    The same formulas as [`identity`][advdyn.problem.spectra.identity],
    [`two_level`][advdyn.problem.spectra.two_level], [`uniform`][advdyn.problem.spectra.uniform],
    [`power_law`][advdyn.problem.spectra.power_law] and
    [`marchenko_pastur`][advdyn.problem.spectra.marchenko_pastur], at any (also fractional)
    index: what the spectral bins of a config average over (THEORY section 1).

    Parameters
    ----------
    kind : str
        One of `LAWS`.
    d : int
        Dimension.
    idx : array_like of float
        Direction indices in ``[0, d)`` (fractional ones interpolate the law).
    **params : float
        The law's parameters, as named in `LAWS` (``first``, ``second``, ``fraction``;
        ``low``, ``high``; ``exponent``; ``aspect_ratio``).

    Returns
    -------
    ndarray of float64, shape of ``idx``

    Raises
    ------
    ValueError
        For a kind not in `LAWS`.
    """
    idx = np.asarray(idx, dtype=np.float64)
    if kind == "identity":
        return np.ones_like(idx, dtype=np.float64)
    if kind == "two_level":
        k = round(params["fraction"] * d)
        return np.where(idx < k, float(params["first"]), float(params["second"]))
    if kind == "uniform":
        return params["low"] + (params["high"] - params["low"]) * (idx + 0.5) / d
    if kind == "power_law":
        norm = d / power_law_sum(d, params["exponent"])  # sum of the d eigenvalues is d
        return norm * (idx + 1.0) ** (-float(params["exponent"]))
    if kind == "marchenko_pastur":
        return marchenko_pastur_quantiles((idx + 0.5) / d, params["aspect_ratio"])
    raise ValueError(f"kind must be one of {', '.join(LAWS)}, got {kind!r}")


def breakpoints(kind: str, d: int, **params: float) -> list[int]:
    """Direction indices where a deterministic spectrum jumps (bins must not straddle them).

    Parameters
    ----------
    kind, d, **params
        The law, as in [`eigenvalue_at`][advdyn.problem.spectra.eigenvalue_at].

    Returns
    -------
    list of int
        The first index of the second level of a two-level law; the first index past the
        zero atom of a Marchenko-Pastur law with ``aspect_ratio > 1``; none otherwise.
    """
    if kind == "two_level":
        return [round(params["fraction"] * d)]
    if kind == "marchenko_pastur" and params["aspect_ratio"] > 1:
        atom = 1.0 - 1.0 / params["aspect_ratio"]  # directions with (i + 1/2)/d <= atom are 0
        return [int(np.floor(atom * d - 0.5)) + 1]
    return []
