"""Spectral quadrature: the ODE over bins of the spectrum instead of ``d`` directions.

THEORY section 9. The per-direction ODE (:mod:`advdyn.ode`) is linear in the state of each
direction once the low-dimensional statistics are fixed, and its coefficients depend on the
direction only through its eigenvalues ``lambda_{c,i}``. Summing the equations of a group of
directions that share their eigenvalues therefore gives *exactly* the equation of the
group's averaged state, with the group's size as a weight. Spectral quadrature groups
directions into bins of (nearly) equal eigenvalues and carries one averaged state per bin:

* per bin ``b`` the multiplicity ``n_b`` (number of directions), the multiplicity-weighted
  mean eigenvalue of every component, the bin averages of the constant products
  ``theta*_i^2``, ``theta*_i mu_{c,i}``, ``mu_{c,i} mu_{c',i}`` and of the initial state;
* :func:`advdyn.ode.solve_ode` runs unchanged on the resulting :class:`BinnedInstance`
  (sums over directions become ``x @ multiplicity``), at a cost ``O(C^2 n_bins)`` per
  right-hand side, independent of ``d``; ``d`` only enters the ``gamma^2 N / d`` noise term.

Discretisation error. Within a bin the eigenvalue spreads around the bin mean; the exact
bin sum of ``lambda_i s_i(t)`` differs from ``lambda_b s_b(t)`` by the within-bin covariance
of the eigenvalue and the state. With the mean eigenvalue as representative the first-order
term vanishes (a one-point Gauss rule per bin), so the error is second order in the bin
width: ``O(sum_b n_b Var_b(lambda) * |d^2 (lambda s)/d lambda^2|)``. For a risk decaying like
``exp(-2 gamma h lambda t)`` the relative error of a bin of width ``w`` is about
``(2 gamma h t w)^2 / 24``; it falls as ``n_bins^-2`` (:func:`converge_bins` checks it by
doubling). Bins whose directions share their eigenvalues (identity, two-level, atoms) are
exact.

Two constructions:

* :func:`bin_instance` bins a realised :class:`~advdyn.problem.ProblemInstance` (any
  spectrum, including files): directions are sorted by the key
  ``kappa_i = sum_c pi_c lambda_{c,i}`` (the eigenvalue itself for a common spectrum; for
  components with different spectra, the mean covariance's eigenvalue, which is what the
  drift coefficient ``D_i`` follows) and cut into bins of equal counts (``"quantile"``) or of
  geometrically growing counts from the top of the spectrum (``"log"``, for power laws);
  ties are never split and a spectrum with at most ``n_bins`` distinct eigenvalue tuples gets
  one exact bin per tuple. Products are the realised bin averages.
* :func:`binned_from_config` builds the bins directly from a
  :class:`~advdyn.config.ProblemConfig` whose spectra are isotropic given the eigenvalue
  (``identity``, ``two_level``, ``uniform``, ``power_law``, ``marchenko_pastur``) and whose
  init is Gaussian, without drawing an instance or materialising ``d``-vectors: the bins are
  ranges of direction indices of the deterministic spectra of :mod:`advdyn.spectra`, and the
  products are their expectations under :func:`~advdyn.problem.instantiate`'s isotropic draws
  (``theta*_i^2 -> |theta*|^2/d``, ``E theta0_i^2 = scale^2/d``, ...). This is the ``d -> inf``
  deterministic equivalent of the realised path: the two agree up to the ``O(d^-1/2)``
  fluctuations of the draw.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from . import config as C
from .errors import ConfigError
from .losses import Loss, make_loss
from .spectra import marchenko_pastur_quantiles

Array = jax.Array

#: spectrum kinds that :func:`binned_from_config` handles without drawing an instance
ISOTROPIC_KINDS = ("identity", "two_level", "uniform", "power_law", "marchenko_pastur")


class BinnedInstance(eqx.Module):
    """A problem in spectral bins: the attribute interface the ODE and statistics read.

    Every per-direction array of :class:`~advdyn.problem.ProblemInstance` is replaced by its
    bin average; ``multiplicity`` says how many directions each bin stands for. Build one
    with :func:`bin_instance` or :func:`binned_from_config`.

    Attributes
    ----------
    eigenvalues : Array, shape (C, B)
        Multiplicity-weighted mean eigenvalue of each component in each bin.
    multiplicity : Array, shape (B,)
        Number of directions per bin (float; sums to ``d``).
    teacher2 : Array, shape (B,)
        Bin average of ``theta*_i^2``.
    teacher_mean : Array, shape (C, B)
        Bin average of ``theta*_i mu_{c,i}``.
    mean_mean : Array, shape (C, C, B)
        Bin average of ``mu_{c,i} mu_{c',i}``.
    init_err2, init_err_teacher : Array, shape (B,)
        Bin averages of ``e_i^2`` and ``e_i theta*_i`` at ``t = 0`` (``e = theta_0 - theta*``).
    init_err_mean : Array, shape (C, B)
        Bin average of ``e_i mu_{c,i}`` at ``t = 0``.
    weights, labels : Array, shape (C,)
        Mixture weights and labels, as in :class:`~advdyn.problem.ProblemInstance`.
    noise, epsilon, ridge : Array, scalar
        Label noise, attack radius and explicit ridge.
    loss : Loss
        The loss.
    task : str
        ``"regression"`` or ``"classification"``.
    d : Array, scalar
        The true dimension as a float64 scalar (it only scales the SGD noise term
        ``gamma^2 N / d``; being an array, a new ``d`` does not trigger a recompilation).
    """

    eigenvalues: Array
    multiplicity: Array
    teacher2: Array
    teacher_mean: Array
    mean_mean: Array
    init_err2: Array
    init_err_teacher: Array
    init_err_mean: Array
    weights: Array
    labels: Array
    noise: Array
    epsilon: Array
    ridge: Array
    loss: Loss
    d: Array
    task: str = eqx.field(static=True)

    @property
    def n_components(self) -> int:
        """Number of mixture components ``C``."""
        return self.weights.shape[0]

    @property
    def dimension(self) -> int:
        """The true dimension ``d`` as a Python int (outside of traced code)."""
        return round(float(self.d))

    @property
    def n_bins(self) -> int:
        """Number of bins ``B``."""
        return self.multiplicity.shape[0]

    def initial_state(self):
        """Bin-averaged state at ``t = 0``.

        Returns
        -------
        DirectionState
            ``(init_err2, init_err_teacher, init_err_mean)`` as float64 arrays.
        """
        from .statistics import DirectionState

        return DirectionState(self.init_err2, self.init_err_teacher, self.init_err_mean)


def _f64(x) -> Array:
    return jnp.asarray(np.asarray(x, dtype=np.float64))


# ----------------------------------------------------------------------------- bin edges
def _rank_edges(n: int, n_bins: int, spacing: str) -> np.ndarray:
    """Edges ``0 = e_0 < ... < e_B = n`` of bins of ranks ``[e_j, e_{j+1})``.

    ``"quantile"``: equal counts. ``"log"``: counts growing geometrically from rank 0, the
    first bins holding single ranks, with as close to ``n_bins`` bins as rounding allows.
    """
    n_bins = max(1, min(n_bins, n))
    if spacing == "quantile":
        return np.unique(np.round(np.linspace(0, n, n_bins + 1)).astype(np.int64))
    # geometric edges in rank + 1 (1 .. n + 1); rounding merges the first ones, so search
    # for the number of geometric points that yields n_bins distinct edges
    lo, hi = n_bins + 1, 64 * (n_bins + 1)

    def edges(m):
        return np.unique(np.round(np.geomspace(1, n + 1, m)).astype(np.int64)) - 1

    while len(edges(hi)) - 1 < n_bins and hi < 1 << 24:
        hi *= 2
    while lo < hi:  # smallest m giving at least n_bins bins
        mid = (lo + hi) // 2
        if len(edges(mid)) - 1 >= n_bins:
            hi = mid
        else:
            lo = mid + 1
    return edges(lo)


def _resolve_spacing(spacing: str, key: np.ndarray) -> str:
    if spacing not in ("auto", "quantile", "log"):
        raise ValueError(f"spacing must be 'auto', 'quantile' or 'log', got {spacing!r}")
    if spacing != "auto":
        return spacing
    positive = key[key > 0]
    # a spectrum spanning more than two decades (power laws) needs resolution at its top
    return "log" if positive.size and positive.max() > 100 * positive.min() else "quantile"


# ----------------------------------------------------------------------------- realised
def bin_assignment(
    eigenvalues, weights, n_bins: int, spacing: str = "auto"
) -> tuple[np.ndarray, int]:
    """Assign every direction of a realised spectrum to a bin.

    Parameters
    ----------
    eigenvalues : array_like, shape (C, d)
        ``lambda_{c,i}``.
    weights : array_like, shape (C,)
        Mixture weights ``pi_c`` (define the key ``kappa_i = sum_c pi_c lambda_{c,i}``).
    n_bins : int
        Requested number of bins (at least 1).
    spacing : {"auto", "quantile", "log"}
        ``"quantile"``: equal counts in the key's rank; ``"log"``: counts growing
        geometrically from the largest key (single directions at the top of a power law);
        ``"auto"``: ``"log"`` when the positive keys span more than a factor 100.

    Returns
    -------
    index : ndarray of int, shape (d,)
        Bin of each direction, ``0 .. n_used - 1`` (bins ordered by decreasing key).
    n_used : int
        Number of non-empty bins. When the directions have at most ``n_bins`` distinct
        eigenvalue tuples, there is one bin per tuple (exact quadrature); otherwise bins never
        split a run of equal keys, so ``n_used`` may be slightly below ``n_bins``.
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    lam = np.asarray(eigenvalues, dtype=np.float64)
    lam = lam.reshape(-1, lam.shape[-1])
    d = lam.shape[-1]
    distinct, inverse = np.unique(lam, axis=1, return_inverse=True)
    inverse = np.asarray(inverse).reshape(-1)
    if distinct.shape[1] <= n_bins:
        # exact: one bin per distinct eigenvalue tuple, ordered by decreasing key
        key_u = np.asarray(weights, dtype=np.float64) @ distinct
        order = np.argsort(-key_u, kind="stable")
        rank = np.empty_like(order)
        rank[order] = np.arange(order.size)
        return rank[inverse], int(distinct.shape[1])
    key = np.asarray(weights, dtype=np.float64) @ lam
    order = np.argsort(-key, kind="stable")
    sorted_key = key[order]
    edges = _rank_edges(d, n_bins, _resolve_spacing(spacing, key))
    # never split a run of equal keys: move an edge to the end of the run it falls in
    neg = -sorted_key
    inner = edges[1:-1]
    tie = sorted_key[inner - 1] == sorted_key[inner]
    inner = np.where(tie, np.searchsorted(neg, neg[inner], side="right"), inner)
    edges = np.unique(np.concatenate([[0], inner, [d]]))
    pos_bin = np.searchsorted(edges, np.arange(d), side="right") - 1
    index = np.empty(d, dtype=np.int64)
    index[order] = pos_bin
    return index, len(edges) - 1


def bin_instance(instance, n_bins: int, spacing: str = "auto") -> BinnedInstance:
    """Spectral bins of a realised problem instance.

    Parameters
    ----------
    instance : ProblemInstance
        A drawn instance (any spectrum).
    n_bins : int
        Requested number of bins; see :func:`bin_assignment` for how they are formed.
    spacing : {"auto", "quantile", "log"}
        Bin spacing, see :func:`bin_assignment`.

    Returns
    -------
    BinnedInstance
        Per-bin multiplicity, multiplicity-weighted mean eigenvalues, and bin averages of the
        realised products ``theta*_i^2``, ``theta*_i mu_{c,i}``, ``mu_{c,i} mu_{c',i}`` and
        of the initial state. Sums over the bins reproduce every statistic of the instance
        at ``t = 0`` exactly (up to rounding).
    """
    lam = np.asarray(instance.eigenvalues)
    index, n_used = bin_assignment(lam, np.asarray(instance.weights), n_bins, spacing)
    count = np.bincount(index, minlength=n_used).astype(np.float64)

    def avg(x):
        x = np.asarray(x, dtype=np.float64)
        flat = x.reshape(-1, x.shape[-1])
        out = np.stack([np.bincount(index, weights=row, minlength=n_used) for row in flat])
        return (out / count).reshape(*x.shape[:-1], n_used)

    s0 = instance.initial_state()
    return BinnedInstance(
        eigenvalues=_f64(avg(lam)),
        multiplicity=_f64(count),
        teacher2=_f64(avg(instance.teacher2)),
        teacher_mean=_f64(avg(instance.teacher_mean)),
        mean_mean=_f64(avg(instance.mean_mean)),
        init_err2=_f64(avg(s0.err2)),
        init_err_teacher=_f64(avg(s0.err_teacher)),
        init_err_mean=_f64(avg(s0.err_mean)),
        weights=instance.weights,
        labels=instance.labels,
        noise=instance.noise,
        epsilon=instance.epsilon,
        ridge=instance.ridge,
        loss=instance.loss,
        task=instance.task,
        d=_f64(instance.d),
    )


# ----------------------------------------------------------------------------- from a config
_SUBSAMPLE = 1024  # directions evaluated per bin; larger bins use a midpoint sub-grid


def _spectra(config: C.ProblemConfig) -> list:
    comps = config.resolved_components()
    return [config.spectrum if c.spectrum is None else c.spectrum for c in comps]


def config_supported(config: C.ProblemConfig) -> bool:
    """Whether :func:`binned_from_config` can build this problem without an instance.

    Parameters
    ----------
    config : ProblemConfig
        A validated problem.

    Returns
    -------
    bool
        True when every component's spectrum is one of :data:`ISOTROPIC_KINDS` and the
        init is Gaussian (files give directions, which are not isotropic).
    """
    return isinstance(config.init, C.GaussianInit) and all(
        s.kind in ISOTROPIC_KINDS for s in _spectra(config)
    )


def _eigen_at(spec, d: int, idx: np.ndarray, power_norm: float | None) -> np.ndarray:
    """Eigenvalue of direction ``idx`` (float index allowed) of a deterministic spectrum,
    the same formulas as :mod:`advdyn.spectra` without building ``d`` values."""
    if isinstance(spec, C.IdentitySpectrum):
        return np.ones_like(idx, dtype=np.float64)
    if isinstance(spec, C.TwoLevelSpectrum):
        k = round(spec.fraction * d)
        return np.where(idx < k, float(spec.first), float(spec.second))
    if isinstance(spec, C.UniformSpectrum):
        return spec.low + (spec.high - spec.low) * (idx + 0.5) / d
    if isinstance(spec, C.PowerLawSpectrum):
        return power_norm * (idx + 1.0) ** (-float(spec.exponent))
    if isinstance(spec, C.MarchenkoPasturSpectrum):
        return marchenko_pastur_quantiles((idx + 0.5) / d, spec.aspect_ratio)
    raise ConfigError("problem.spectrum", f"spectral bins from a config need one of "
                      f"{', '.join(ISOTROPIC_KINDS)}, got {spec.kind!r}")  # pragma: no cover


def _breakpoints(spec, d: int) -> list[int]:
    """Direction indices where a spectrum jumps (bins must not straddle them)."""
    if isinstance(spec, C.TwoLevelSpectrum):
        return [round(spec.fraction * d)]
    if isinstance(spec, C.MarchenkoPasturSpectrum) and spec.aspect_ratio > 1:
        atom = 1.0 - 1.0 / spec.aspect_ratio  # directions with (i + 1/2)/d <= atom are 0
        return [int(np.floor(atom * d - 0.5)) + 1]
    return []


def _bin_means(spec, d: int, edges: np.ndarray, power_norm: float | None) -> np.ndarray:
    """Mean eigenvalue over the index ranges ``[edges_j, edges_{j+1})``: exact for bins of at
    most ``_SUBSAMPLE`` directions, an ``_SUBSAMPLE``-point midpoint sub-grid otherwise (the
    bins are then far from the top of the spectrum, where it is smooth)."""
    a, n = edges[:-1], np.diff(edges)
    m = np.minimum(n, _SUBSAMPLE)
    bin_id = np.repeat(np.arange(n.size), m)
    j = np.arange(bin_id.size) - np.repeat(np.cumsum(m) - m, m)
    a_s, n_s = a[bin_id], n[bin_id]
    # the directions themselves when n <= _SUBSAMPLE, else midpoints of n/_SUBSAMPLE-wide cells
    pos = np.where(n_s <= _SUBSAMPLE, a_s + j, a_s - 0.5 + (j + 0.5) * (n_s / _SUBSAMPLE))
    vals = _eigen_at(spec, d, pos.astype(np.float64), power_norm)
    return np.bincount(bin_id, weights=vals, minlength=n.size) / m


def _power_norm(spec, d: int) -> float | None:
    """``c`` with ``sum_{i=1}^d c i^-exponent = d`` (as :func:`advdyn.spectra.power_law`)."""
    if not isinstance(spec, C.PowerLawSpectrum):
        return None
    edges = _rank_edges(d, 512, "log")
    raw = _bin_means(spec, d, edges, 1.0) * np.diff(edges)
    return d / raw.sum()


def config_edges(config: C.ProblemConfig, n_bins: int, spacing: str = "auto") -> np.ndarray:
    """Direction-index edges of the bins :func:`binned_from_config` uses.

    Parameters
    ----------
    config : ProblemConfig
        A problem accepted by :func:`config_supported`.
    n_bins : int
        Requested number of bins.
    spacing : {"auto", "quantile", "log"}
        ``"auto"`` is ``"log"`` when a component has a power-law spectrum (whose largest
        eigenvalues are then single-direction bins), else ``"quantile"``.

    Returns
    -------
    ndarray of int
        Increasing edges from 0 to ``d``. Jumps of two-level spectra and the zero atom of a
        Marchenko-Pastur law (``aspect_ratio > 1``) are always edges; a spectrum where every
        component is constant gets a single bin, two-level spectra one bin per level.
    """
    d = config.d
    specs = _spectra(config)
    if spacing == "auto":
        spacing = "log" if any(s.kind == "power_law" for s in specs) else "quantile"
    _resolve_spacing(spacing, np.ones(1))
    breaks = sorted({p for s in specs for p in _breakpoints(s, d) if 0 < p < d})
    if all(s.kind in ("identity", "two_level") for s in specs):
        return np.array([0, *breaks, d], dtype=np.int64)  # piecewise constant: exact bins
    edges = _rank_edges(d, n_bins, spacing)
    return np.unique(np.concatenate([edges, breaks]).astype(np.int64))


def binned_from_config(
    config: C.ProblemConfig,
    n_bins: int,
    spacing: str = "auto",
    loss: Loss | None = None,
) -> BinnedInstance:
    """Spectral bins of a problem built from its config, without drawing an instance.

    The bins are ranges of direction indices of the deterministic spectra of
    :mod:`advdyn.spectra` (:func:`config_edges`); their eigenvalues are the mean over the
    range (exact for bins of up to 1024 directions, a 1024-point midpoint sub-grid beyond).
    The products are the expectations under :func:`~advdyn.problem.instantiate`'s isotropic
    draws, the same in every direction: with ``T = teacher_norm``, ``s = init.scale`` and
    ``m_c``, ``s_c`` the mean norm and sign of component ``c``,

    * ``theta*_i^2 -> T^2 / d``;
    * ``theta*_i mu_{c,i} -> s_c m_c T / d`` if ``mu_c`` lies along the teacher, else 0;
    * ``mu_{c,i} mu_{c',i} -> s_c m_c s_c' m_c' / d`` when both share a direction (both along
      the teacher, both ``"common"``, or ``c = c'``), else 0;
    * ``e_i^2 -> (s^2 + T^2)/d``, ``e_i theta*_i -> -T^2/d``, ``e_i mu_{c,i} -> -theta*_i
      mu_{c,i}`` (``theta_0`` is independent of ``theta*`` and of the means).

    Memory and time are ``O(n_bins)`` (plus at most 1024 eigenvalue evaluations per bin), so
    any ``d`` works, e.g. ``10^7``. The realised instance of the same config agrees up to the
    ``O(d^-1/2)`` fluctuations of its random draws.

    Parameters
    ----------
    config : ProblemConfig
        A problem accepted by :func:`config_supported`.
    n_bins : int
        Requested number of bins (see :func:`config_edges`).
    spacing : {"auto", "quantile", "log"}
        Bin spacing in the direction index.
    loss : Loss, optional
        Overrides ``config.loss``.

    Returns
    -------
    BinnedInstance

    Raises
    ------
    ConfigError
        If a spectrum is not isotropic-given-the-eigenvalue (files) or the init is a file
        (naming the field); bin the realised instance with :func:`bin_instance` instead.
    """
    if n_bins < 1:
        raise ConfigError("run.bins", f"must be >= 1, got {n_bins}")
    comps = config.resolved_components()
    specs = _spectra(config)
    for i, (comp, spec) in enumerate(zip(comps, specs, strict=True)):
        if spec.kind not in ISOTROPIC_KINDS:
            field = "problem.spectrum" if comp.spectrum is None else (
                f"problem.components[{i}].spectrum")
            raise ConfigError(field, f"spectral bins without an instance need one of "
                              f"{', '.join(ISOTROPIC_KINDS)}, got {spec.kind!r}")
    if not isinstance(config.init, C.GaussianInit):
        raise ConfigError("problem.init", "spectral bins without an instance need a "
                          "Gaussian init (a file init is not isotropic)")
    d = config.d
    edges = config_edges(config, n_bins, spacing)
    count = np.diff(edges).astype(np.float64)
    B, n_comp = count.size, len(comps)
    lam = np.stack([_bin_means(s, d, edges, _power_norm(s, d)) for s in specs])

    T = float(config.task.teacher_norm)
    scale = float(config.init.scale)
    amp = np.array([c.mean_sign * c.mean_norm for c in comps], dtype=np.float64)
    along = np.array([c.mean_direction == "teacher" for c in comps])
    tm = np.where(along, amp * T, 0.0) / d  # E theta*_i mu_{c,i}
    same = np.zeros((n_comp, n_comp), dtype=bool)
    for a_, ca in enumerate(comps):
        for b_, cb in enumerate(comps):
            shared = ca.mean_direction == cb.mean_direction and ca.mean_direction != "random"
            same[a_, b_] = a_ == b_ or shared
    mm = np.where(same, np.outer(amp, amp), 0.0) / d  # E mu_{c,i} mu_{c',i}

    ones = np.ones(B)
    labels = [0.0 if c.label is None else float(c.label) for c in comps]
    return BinnedInstance(
        eigenvalues=_f64(lam),
        multiplicity=_f64(count),
        teacher2=_f64(ones * T**2 / d),
        teacher_mean=_f64(tm[:, None] * ones),
        mean_mean=_f64(mm[:, :, None] * ones),
        init_err2=_f64(ones * (scale**2 + T**2) / d),
        init_err_teacher=_f64(-ones * T**2 / d),
        init_err_mean=_f64(-tm[:, None] * ones),
        weights=_f64([c.weight for c in comps]),
        labels=_f64(labels),
        noise=_f64(getattr(config.task, "noise", 0.0)),
        epsilon=_f64(config.epsilon),
        ridge=_f64(config.ridge),
        loss=loss if loss is not None else make_loss(config.loss),
        task=config.task.kind,
        d=_f64(d),
    )


# ----------------------------------------------------------------------------- convergence
@dataclass(frozen=True)
class BinsConvergence:
    """Outcome of :func:`converge_bins`.

    Attributes
    ----------
    bins : int
        Requested bin count of the accepted solution.
    n_bins : int
        Bins actually used (may be fewer: ties, exact spectra).
    rel_change : float
        Largest relative change of ``adv_risk`` over time between ``bins`` and the
        previous (half) count; ``nan`` when only one count was tried.
    converged : bool
        Whether ``rel_change < tol``.
    history : list of (int, float)
        ``(bins, rel_change)`` for every count tried.
    dataset : xarray.Dataset
        The ODE solution at ``bins``.
    """

    bins: int
    n_bins: int
    rel_change: float
    converged: bool
    history: list
    dataset: xr.Dataset


def adv_risk_change(a: xr.Dataset, b: xr.Dataset) -> float:
    """Largest relative difference of ``adv_risk`` between two ODE solutions on one grid.

    Parameters
    ----------
    a, b : xarray.Dataset
        Solutions with ``adv_risk`` on the same ``time`` coordinate.

    Returns
    -------
    float
        ``max_t |a - b| / |a|``.
    """
    ra, rb = np.asarray(a.adv_risk), np.asarray(b.adv_risk)
    return float(np.max(np.abs(ra - rb) / np.abs(ra)))


def make_binned(source, n_bins: int, spacing: str = "auto") -> BinnedInstance:
    """Bins of a config (without an instance) or of a realised instance.

    Parameters
    ----------
    source : ProblemConfig or ProblemInstance
        A config is binned with :func:`binned_from_config`, an instance with
        :func:`bin_instance`.
    n_bins : int
        Requested number of bins.
    spacing : {"auto", "quantile", "log"}
        Bin spacing.

    Returns
    -------
    BinnedInstance
    """
    if isinstance(source, C.ProblemConfig):
        return binned_from_config(source, n_bins, spacing)
    return bin_instance(source, n_bins, spacing)


def converge_bins(
    source,
    lr,
    times,
    *,
    bins: int = 32,
    tol: float = 1e-4,
    max_bins: int = 4096,
    spacing: str = "auto",
    **solve_kwargs,
) -> BinsConvergence:
    """Double the number of bins until ``adv_risk`` changes by less than ``tol``.

    Since the quadrature error falls as ``n_bins^-2`` (module docstring), the change
    between ``B`` and ``2B`` bins is about three times the remaining error at ``2B``.

    Parameters
    ----------
    source : ProblemConfig or ProblemInstance
        What to bin (see :func:`make_binned`).
    lr : LearningRate
        Learning-rate rule.
    times : array_like
        Recording times.
    bins : int
        First bin count.
    tol : float
        Accept when the largest relative change of ``adv_risk`` over time is below it.
    max_bins : int
        Stop doubling here (``converged`` is then false if the change is still too big).
    spacing : {"auto", "quantile", "log"}
        Bin spacing.
    **solve_kwargs
        Passed to :func:`advdyn.ode.solve_ode` (``rtol``, ``atol``, ...).

    Returns
    -------
    BinsConvergence
    """
    from .ode import solve_ode

    binned = make_binned(source, bins, spacing)
    prev = solve_ode(binned, lr, times, **solve_kwargs)
    history = [(bins, math.nan)]
    change = math.nan
    # exact bins (every bin holds equal eigenvalues) cannot improve with more bins
    while bins < max_bins:
        finer = make_binned(source, 2 * bins, spacing)
        if finer.n_bins == binned.n_bins:
            change = 0.0
            history.append((2 * bins, change))
            bins, binned = 2 * bins, finer
            break
        ds = solve_ode(finer, lr, times, **solve_kwargs)
        change = adv_risk_change(ds, prev)
        bins, binned, prev = 2 * bins, finer, ds
        history.append((bins, change))
        if change < tol:
            break
    return BinsConvergence(bins, binned.n_bins, change, bool(change < tol), history, prev)


# ----------------------------------------------------------------------------- pipeline
def config_path_applies(config: C.Config) -> bool:
    """Whether a run builds its ODE bins from the config alone (no instance drawn).

    Parameters
    ----------
    config : Config
        A validated configuration.

    Returns
    -------
    bool
        True when ``run.bins`` is set, the ODE is the only method and
        :func:`config_supported` holds. The ODE then uses the ``d -> inf`` expected initial
        products: the seed does not enter, and nothing of size ``d`` is allocated.
    """
    rc = config.run
    return rc.bins is not None and list(rc.methods) == ["ode"] and config_supported(
        config.problem
    )


def spectral_instances(config: C.Config):
    """The realised instance and the ODE's binned instance a run needs.

    Parameters
    ----------
    config : Config
        A validated configuration.

    Returns
    -------
    instance : ProblemInstance or None
        The drawn instance; ``None`` when :func:`config_path_applies` (no simulator runs).
    binned : BinnedInstance or None
        ``None`` without ``run.bins``; built from the config when ``instance`` is ``None``,
        else by :func:`bin_instance`.
    """
    from .problem import instantiate

    bins = config.run.bins
    if config_path_applies(config):
        return None, binned_from_config(config.problem, bins)
    instance = instantiate(config.problem)
    return instance, (bin_instance(instance, bins) if bins is not None else None)


def doubled_bins_check(config: C.Config, instance, binned: BinnedInstance, ds, solve) -> dict:
    """Re-solve with twice the bins and report the change of ``adv_risk``.

    Parameters
    ----------
    config : Config
        The run's configuration (``run.bins``).
    instance : ProblemInstance or None
        The realised instance the bins came from, or ``None`` for the config path.
    binned : BinnedInstance
        The bins the run used.
    ds : xarray.Dataset
        Its ODE solution.
    solve : callable
        ``solve(binned_instance) -> Dataset`` (same grid, rule and tolerances).

    Returns
    -------
    dict
        ``bins`` (requested), ``bins_used``, ``bins_rel_change`` (largest relative change of
        ``adv_risk`` over time with ``2 * bins``; about three times the quadrature error,
        which falls as ``bins^-2``; 0 when the bins are already exact) and ``bins_source``
        (``"config"`` or ``"instance"``).
    """
    source = config.problem if instance is None else instance
    finer = make_binned(source, 2 * config.run.bins)
    change = 0.0 if finer.n_bins == binned.n_bins else adv_risk_change(ds, solve(finer))
    return {
        "bins": int(config.run.bins),
        "bins_used": int(binned.n_bins),
        "bins_rel_change": float(change),
        "bins_source": "config" if instance is None else "instance",
    }
