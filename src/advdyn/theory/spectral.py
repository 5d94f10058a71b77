"""Spectral quadrature: the ODE over bins of the spectrum instead of ``d`` directions.

THEORY section 9. The per-direction ODE (`advdyn.theory.ode`) is linear in the state of each
direction once the low-dimensional statistics are fixed, and its coefficients depend on the
direction only through its eigenvalues ``lambda_{c,i}``. Summing the equations of a group of
directions that share their eigenvalues therefore gives *exactly* the equation of the
group's averaged state, with the group's size as a weight. Spectral quadrature groups
directions into bins of (nearly) equal eigenvalues and carries one averaged state per bin:

* per bin ``b`` the multiplicity ``n_b`` (number of directions), the multiplicity-weighted
  mean eigenvalue of every component, the bin averages of the constant products
  ``theta*_i^2``, ``theta*_i mu_{c,i}``, ``mu_{c,i} mu_{c',i}`` and of the initial state;
* [`advdyn.theory.ode.solve_ode`][advdyn.theory.solve_ode] runs unchanged on the resulting
[`BinnedInstance`][advdyn.theory.spectral.BinnedInstance]
  (sums over directions become ``x @ multiplicity``), at a cost ``O(C^2 n_bins)`` per
  right-hand side, independent of ``d``; ``d`` only enters the ``gamma^2 N / d`` noise term.

Discretisation error. Within a bin the eigenvalue spreads around the bin mean; the exact
bin sum of ``lambda_i s_i(t)`` differs from ``lambda_b s_b(t)`` by the within-bin covariance
of the eigenvalue and the state. With the mean eigenvalue as representative the first-order
term vanishes (a one-point Gauss rule per bin), so the error is second order in the bin
width: ``O(sum_b n_b Var_b(lambda) * |d^2 (lambda s)/d lambda^2|)``. For a risk decaying like
``exp(-2 gamma h lambda t)`` the relative error of a bin of width ``w`` is about
``(2 gamma h t w)^2 / 24``; it falls as ``n_bins^-2`` ([`converge_bins`][advdyn.converge_bins]
checks it by
doubling). Bins whose directions share their eigenvalues (identity, two-level, atoms) are
exact.

Two constructions:

* [`bin_instance`][advdyn.theory.spectral.bin_instance] bins a realised
[`ProblemInstance`][advdyn.problem.ProblemInstance] (any
  spectrum, including files): directions are sorted by the key
  ``kappa_i = sum_c pi_c lambda_{c,i}`` (the eigenvalue itself for a common spectrum; for
  components with different spectra, the mean covariance's eigenvalue, which is what the
  drift coefficient ``D_i`` follows) and cut into bins of equal counts (``"quantile"``) or of
  geometrically growing counts from the top of the spectrum (``"log"``, for power laws);
  ties are never split and a spectrum with at most ``n_bins`` distinct eigenvalue tuples gets
  one exact bin per tuple. Products are the realised bin averages.
* [`binned_from_config`][advdyn.binned_from_config] builds the bins directly from a
  [`ProblemConfig`][advdyn.config.ProblemConfig] whose spectra are isotropic given the eigenvalue
  (``identity``, ``two_level``, ``uniform``, ``power_law``, ``marchenko_pastur``) and whose
  init is Gaussian, without drawing an instance or materialising ``d``-vectors: the bins are
  ranges of direction indices of the deterministic spectra of `advdyn.problem.spectra`, and the
  products are their expectations under [`instantiate`][advdyn.config.instantiate]'s isotropic draws
  (``theta*_i^2 -> |theta*|^2/d``, ``E theta0_i^2 = scale^2/d``, ...). This is the ``d -> inf``
  deterministic equivalent of the realised path: the two agree up to the ``O(d^-1/2)``
  fluctuations of the draw.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import equinox as eqx
import numpy as np
from jaxtyping import ArrayLike, Float, Int

from advdyn.precision import as_float64, float64
from advdyn.problem.data import SpectralStatistics
from advdyn.problem.instance import AbstractInstance, ProblemInstance
from advdyn.problem.losses import AbstractLoss, LeastSquares
from advdyn.problem.state import DirectionState

if TYPE_CHECKING:
    from advdyn.theory.rates import AbstractLearningRate

from advdyn.typing import Array

#: spectrum kinds that [`binned_from_config`][advdyn.binned_from_config] handles without drawing an
# instance
ISOTROPIC_KINDS = ("identity", "two_level", "uniform", "power_law", "marchenko_pastur")


class BinnedInstance(AbstractInstance):
    """A problem in spectral bins: the attribute interface the ODE and statistics read.

    Every per-direction array of [`ProblemInstance`][advdyn.problem.ProblemInstance] is replaced by
    its
    bin average; ``multiplicity`` says how many directions each bin stands for. Build one
    with [`bin_instance`][advdyn.theory.spectral.bin_instance] or
    [`binned_from_config`][advdyn.binned_from_config].

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
        Mixture weights and labels, as in [`ProblemInstance`][advdyn.problem.ProblemInstance].
    noise, epsilon, ridge : Array, scalar
        Label noise, attack radius and explicit ridge.
    loss : AbstractLoss
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
    loss: AbstractLoss
    d: Array
    task: str = eqx.field(static=True)

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
        return DirectionState(self.init_err2, self.init_err_teacher, self.init_err_mean)


# ----------------------------------------------------------------------------- bin edges
def rank_edges(n: int, n_bins: int, spacing: str) -> np.ndarray:
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


#: a mode counts as relaxed before the first record when ``lambda int_0^{t_1} gamma`` exceeds
#: this: its transient is then below ``e^-20 = 2e-9`` of its start (the slowest decay of the
#: state is ``exp(-lambda int gamma)`` for least squares, whose ``D_i >= lambda_i``)
RELAXED_EXPONENT = 20.0
#: how many times wider, in ``log lambda``, the bins of the relaxed decades are
RELAXED_WIDTH = 8.0


@float64
def relaxed_eigenvalue(
    lr: AbstractLearningRate, times: Float[ArrayLike, " T"], loss: AbstractLoss
) -> float | None:
    """The eigenvalue above which modes have relaxed before the first record.

    For least squares every coordinate of the state decays at least like
    ``exp(-lambda int gamma)`` (its drift coefficient ``D_i >= lambda_i``), so a mode with
    ``lambda int_{t_0}^{t_1} gamma >= RELAXED_EXPONENT`` (20) has shed its transient to
    ``e^-20`` before the first record after ``t_0``, and only its quasi-stationary value,
    smooth in ``lambda``, enters the records: such modes can share coarse bins
    (`relaxed_rank_edges`).

    Parameters
    ----------
    lr : AbstractLearningRate
        The rule; only rules without state (constant, decay: monotone in time) qualify, and
        ``int gamma`` is bounded below by ``(t_1 - t_0) min(gamma(t_0), gamma(t_1))``.
    times : array_like
        Recording times.
    loss : AbstractLoss
        Only [`LeastSquares`][advdyn.problem.losses.LeastSquares] qualifies (other losses can have
        curvature ``h_1 < 1``, so the decay bound does not hold).

    Returns
    -------
    float or None
        ``RELAXED_EXPONENT / ((t_1 - t_0) min(gamma(t_0), gamma(t_1)))``, or ``None`` when
        the rule or the loss does not qualify.
    """
    times = np.asarray(times, dtype=np.float64)
    if lr.needs_state or not isinstance(loss, LeastSquares) or times.size < 2:
        return None
    t0, t1 = float(times[0]), float(times[1])
    rate = min(abs(float(lr(t0))), abs(float(lr(t1))))
    if not (rate > 0 and t1 > t0):
        return None
    return RELAXED_EXPONENT / (rate * (t1 - t0))


def relaxed_rank_edges(
    n: int,
    n_bins: int,
    key_at: Callable[[np.ndarray], np.ndarray],
    relaxed_above: float,
    width: float = RELAXED_WIDTH,
) -> Int[np.ndarray, " B_plus_1"]:
    """Log bins whose decades above ``relaxed_above`` are ``width`` times coarser.

    The modes with a key above ``relaxed_above`` have relaxed before the first record (see
    `RELAXED_EXPONENT`), so only their quasi-stationary values, smooth in the
    eigenvalue, enter the records; the resolution goes to the decades below, where the
    records see the dynamics. With ``L_top = ln(key_max / relaxed_above)`` and
    ``L_low = ln(relaxed_above / key_min)``, the ranks above get
    ``n_top = round(n_bins (L_top / width) / (L_low + L_top / width))`` log bins (at least
    one) and those below the other ``n_bins - n_top``, equal in ``log`` rank (equal in
    ``log lambda`` for a power law). For a power law ``L_low`` hardly depends on ``d`` while
    ``L_top`` grows like ``ln d``, so at a fixed count the bins below keep their width as
    ``d`` grows instead of widening like ``ln d`` (``docs/benchmarks.md``). Doubling
    ``n_bins`` doubles both parts, so the doubled-bins check sees both.

    Parameters
    ----------
    n : int
        Number of ranks (directions).
    n_bins : int
        Requested number of bins.
    key_at : callable
        ``key_at(ranks) -> keys``: the (non-increasing) eigenvalue key at integer ranks.
    relaxed_above : float
        Keys above it count as relaxed.
    width : float
        Relative log-width of the relaxed bins.

    Returns
    -------
    ndarray of int
        Increasing edges from 0 to ``n``; plain log edges (`_rank_edges`) when no key
        exceeds ``relaxed_above`` or the keys are not positive and decreasing.
    """
    ends = np.asarray(key_at(np.array([0, n - 1])), dtype=np.float64)
    k_max, k_min = float(ends[0]), float(ends[1])
    plain = rank_edges(n, n_bins, "log")
    if n_bins < 2 or not (k_max > relaxed_above > k_min > 0):
        return plain
    # cut = number of ranks whose key exceeds relaxed_above (bisection; keys non-increasing)
    lo, hi = 0, n - 1  # key_at(lo) > relaxed_above >= ... ; key_at(hi) <= relaxed_above
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if float(key_at(np.array([mid]))[0]) > relaxed_above:
            lo = mid
        else:
            hi = mid
    cut = hi
    top_len = np.log(k_max / relaxed_above) / width
    low_len = np.log(relaxed_above / k_min)
    n_top = int(np.clip(round(n_bins * top_len / (top_len + low_len)), 1, min(cut, n_bins - 1)))
    top = rank_edges(cut, n_top, "log")
    low = np.round(np.geomspace(cut, n, n_bins - n_top + 1)).astype(np.int64)
    return np.unique(np.concatenate([top, low]))


def resolve_spacing(spacing: str, key: np.ndarray) -> str:
    if spacing not in ("auto", "quantile", "log"):
        raise ValueError(f"spacing must be 'auto', 'quantile' or 'log', got {spacing!r}")
    if spacing != "auto":
        return spacing
    positive = key[key > 0]
    # a spectrum spanning more than two decades (power laws) needs resolution at its top
    return "log" if positive.size and positive.max() > 100 * positive.min() else "quantile"


# ----------------------------------------------------------------------------- realised
#: eigenvalue evaluations per bin in [`bin_means`][advdyn.theory.spectral.bin_means] and
#: `bin_gauss_nodes`; larger bins use a midpoint
#: sub-grid of this many cells
BIN_SUBSAMPLE = 1024


def _bin_samples(eigenvalue_at: Callable[[np.ndarray], np.ndarray], edges: np.ndarray):
    """The bin of each sample, the samples per bin and their eigenvalues: the directions
    themselves for bins of at most `BIN_SUBSAMPLE`, else the midpoints of that many cells."""
    a, n = edges[:-1], np.diff(edges)
    m = np.minimum(n, BIN_SUBSAMPLE)
    bin_id = np.repeat(np.arange(n.size), m)
    j = np.arange(bin_id.size) - np.repeat(np.cumsum(m) - m, m)
    a_s, n_s = a[bin_id], n[bin_id]
    pos = np.where(n_s <= BIN_SUBSAMPLE, a_s + j,
                   a_s - 0.5 + (j + 0.5) * (n_s / BIN_SUBSAMPLE))
    return bin_id, m, eigenvalue_at(pos.astype(np.float64))


def bin_means(eigenvalue_at: Callable[[np.ndarray], np.ndarray],
              edges: Int[np.ndarray, " B+1"]) -> Float[np.ndarray, " B"]:
    """Mean eigenvalue over the index ranges ``[edges_j, edges_{j+1})`` of a law.

    Parameters
    ----------
    eigenvalue_at : callable
        Eigenvalues at (fractional) direction indices, e.g. a
        [`advdyn.problem.spectra.eigenvalue_at`][advdyn.problem.spectra.eigenvalue_at] with its
        kind, ``d`` and parameters bound.
    edges : ndarray of int, shape (B + 1,)
        Increasing bin edges from 0 to ``d``.

    Returns
    -------
    ndarray, shape (B,)
        Exact for bins of at most `BIN_SUBSAMPLE` directions; beyond, the mean over a midpoint
        sub-grid of `BIN_SUBSAMPLE` cells (such bins lie far from the top of the spectrum,
        where it is smooth).
    """
    bin_id, m, vals = _bin_samples(eigenvalue_at, edges)
    return np.bincount(bin_id, weights=vals, minlength=m.size) / m


def bin_gauss_nodes(eigenvalue_at: Callable[[np.ndarray], np.ndarray],
                    edges: Int[np.ndarray, " B+1"]
                    ) -> tuple[Float[np.ndarray, "B 2"], Float[np.ndarray, "B 2"]]:
    """Two-point Gauss rule of the eigenvalue distribution inside every bin.

    From the mean ``m``, variance ``v`` and third central moment ``k3`` of the bin's
    eigenvalues (the samples of [`bin_means`][advdyn.theory.spectral.bin_means]), the nodes
    ``m + sqrt(v) z_pm`` with ``z_pm = (g -+ sqrt(g^2 + 4)) / 2``, ``g = k3 / v^1.5``, and
    weights ``z_+ / (z_+ - z_-)``, ``-z_- / (z_+ - z_-)`` integrate every cubic in the
    eigenvalue exactly, so the quadrature error of a bin falls as its width to the fourth
    power (against the second for the mean alone).

    Parameters
    ----------
    eigenvalue_at : callable
        As in [`bin_means`][advdyn.theory.spectral.bin_means].
    edges : ndarray of int, shape (B + 1,)
        Increasing bin edges from 0 to ``d``.

    Returns
    -------
    nodes, weights : ndarray, shape (B, 2)
        A bin of equal eigenvalues gets weights ``(1, 0)``.
    """
    bin_id, m, vals = _bin_samples(eigenvalue_at, edges)
    mean = np.bincount(bin_id, weights=vals, minlength=m.size) / m
    dev = vals - mean[bin_id]
    var = np.bincount(bin_id, weights=dev**2, minlength=m.size) / m
    k3 = np.bincount(bin_id, weights=dev**3, minlength=m.size) / m
    spread = var > (1e-12 * np.abs(mean)) ** 2
    sd = np.sqrt(np.where(spread, var, 1.0))
    g = np.where(spread, k3 / sd**3, 0.0)
    root = np.sqrt(g**2 + 4)
    z_lo, z_hi = (g - root) / 2, (g + root) / 2
    w_lo = np.where(spread, z_hi / (z_hi - z_lo), 1.0)
    nodes = np.stack([mean + np.where(spread, sd * z_lo, 0.0),
                      mean + np.where(spread, sd * z_hi, 0.0)], axis=1)
    return nodes, np.stack([w_lo, 1.0 - w_lo], axis=1)


def bin_assignment(
    eigenvalues, weights, n_bins: int, spacing: str = "auto",
    relaxed_above: float | None = None,
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
    relaxed_above : float, optional
        With log spacing, the keys above it (modes relaxed before the first record) get
        coarser bins (`relaxed_rank_edges`).

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
    spacing = resolve_spacing(spacing, key)
    if spacing == "log" and relaxed_above is not None:
        edges = relaxed_rank_edges(d, n_bins, lambda r: sorted_key[r], relaxed_above)
    else:
        edges = rank_edges(d, n_bins, spacing)
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


@float64
def bin_instance(
    instance: ProblemInstance, n_bins: int, spacing: str = "auto",
    relaxed_above: float | None = None,
) -> BinnedInstance:
    """Spectral bins of a realised problem instance.

    Parameters
    ----------
    instance : ProblemInstance
        A drawn instance (any spectrum).
    n_bins : int
        Requested number of bins; see `bin_assignment` for how they are formed.
    spacing : {"auto", "quantile", "log"}
        Bin spacing, see `bin_assignment`.
    relaxed_above : float, optional
        Coarser log bins above this eigenvalue key (`relaxed_rank_edges`). Runs do not
        use it here: the realised initial products vary by direction, so coarse bins make
        the state at ``t = 0`` approximate (its statistics are then no longer exact).

    Returns
    -------
    BinnedInstance
        Per-bin multiplicity, multiplicity-weighted mean eigenvalues, and bin averages of the
        realised products ``theta*_i^2``, ``theta*_i mu_{c,i}``, ``mu_{c,i} mu_{c',i}`` and
        of the initial state. Sums over the bins reproduce every statistic of the instance
        at ``t = 0`` exactly (up to rounding).
    """
    lam = np.asarray(instance.eigenvalues)
    index, n_used = bin_assignment(
        lam, np.asarray(instance.weights), n_bins, spacing, relaxed_above
    )
    count = np.bincount(index, minlength=n_used).astype(np.float64)

    def avg(x):
        x = np.asarray(x, dtype=np.float64)
        flat = x.reshape(-1, x.shape[-1])
        out = np.stack([np.bincount(index, weights=row, minlength=n_used) for row in flat])
        return (out / count).reshape(*x.shape[:-1], n_used)

    s0 = instance.initial_state()
    return BinnedInstance(
        eigenvalues=as_float64(avg(lam)),
        multiplicity=as_float64(count),
        teacher2=as_float64(avg(instance.teacher2)),
        teacher_mean=as_float64(avg(instance.teacher_mean)),
        mean_mean=as_float64(avg(instance.mean_mean)),
        init_err2=as_float64(avg(s0.err2)),
        init_err_teacher=as_float64(avg(s0.err_teacher)),
        init_err_mean=as_float64(avg(s0.err_mean)),
        weights=instance.weights,
        labels=instance.labels,
        noise=instance.noise,
        epsilon=instance.epsilon,
        ridge=instance.ridge,
        loss=instance.loss,
        task=instance.task,
        d=as_float64(instance.d),
    )


@float64
def quadrature_instance(stats: SpectralStatistics, loss: AbstractLoss, epsilon: float,
                        ridge: float) -> BinnedInstance:
    """A data set's surrogate on the nodes of its Gauss quadrature (one bin per node).

    Each node ``nu_j`` of a
    [`SpectralStatistics`][advdyn.problem.data.SpectralStatistics] becomes a bin of
    ``density_j`` directions with eigenvalue ``nu_j`` (every component: the covariance is
    shared), whose constant products are the quadrature masses of the reference vectors
    divided by ``density_j``: ``sum_b n_b teacher2_b = sum_j (r_j . theta*)^2`` and so on,
    so every sum the ODE takes is the quadrature of its measure. A node's direction count
    is floored at ``1e-9 d / N`` (a node that only a reference vector reaches). The initial
    error ``theta_0 - theta*`` is that of the actual ``theta_0`` whose projections the
    statistics hold (``"theta0"``), not an average over draws.

    Parameters
    ----------
    stats : SpectralStatistics
        With a ``"theta0"`` reference vector.
    loss : AbstractLoss
    epsilon, ridge : float
        Attack radius and explicit ridge.

    Returns
    -------
    BinnedInstance
        float64, ``N`` bins.

    Raises
    ------
    ValueError
        If ``stats`` holds no ``"theta0"`` projection.
    """
    if "theta0" not in stats.names:
        raise ValueError("quadrature_instance needs statistics with a 'theta0' projection "
                         "(spectral_statistics(..., theta0=...))")
    d = float(np.sum(stats.density))
    count = np.maximum(stats.density, 1e-9 * d / stats.nodes.size)
    means = [n for n in stats.names if n.startswith("mean")]
    teacher2 = stats.measure("teacher", "teacher") / count
    teacher_mean = np.stack([stats.measure("teacher", m) for m in means]) / count
    mean_mean = np.stack([np.stack([stats.measure(a, b) for b in means]) for a in means]) / count
    P = stats.projections
    err = P[:, stats.names.index("theta0")] - P[:, stats.names.index("teacher")]
    err2 = err**2 / count
    err_teacher = err * P[:, stats.names.index("teacher")] / count
    err_mean = np.stack([err * P[:, stats.names.index(m)] for m in means]) / count
    C = len(means)
    return BinnedInstance(
        eigenvalues=as_float64(np.repeat(stats.nodes[None], C, axis=0)),
        multiplicity=as_float64(count),
        teacher2=as_float64(teacher2),
        teacher_mean=as_float64(teacher_mean),
        mean_mean=as_float64(mean_mean),
        init_err2=as_float64(err2),
        init_err_teacher=as_float64(err_teacher),
        init_err_mean=as_float64(err_mean),
        weights=as_float64(stats.weights),
        labels=as_float64(stats.labels),
        noise=as_float64(stats.noise),
        epsilon=as_float64(epsilon),
        ridge=as_float64(ridge),
        loss=loss,
        task=stats.task,
        d=as_float64(round(d)),
    )
