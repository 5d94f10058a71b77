"""A data set as a problem: its Gaussian-mixture surrogate (THEORY sections 1-2).

The theory is exact for Gaussian mixtures with a common covariance eigenbasis. For a
feature matrix ``X`` (``n x d``) and targets ``y`` the surrogate keeps the data's first and
second moments:

* **classification** (labels ``+/-1``): one component per class with weight ``pi_c`` (the
  class frequency), mean ``mu_c`` (the class mean) and the pooled within-class covariance
  ``Sigma = sum_c pi_c Cov_c`` shared by both; the reference direction ``theta*`` (for
  ``overlap``) is ``teacher_norm (mu_+ - mu_-) / |mu_+ - mu_-|``;
* **regression**: one component with the data's mean and covariance, the least-squares
  teacher ``theta* = argmin |y - X theta|^2`` (minimum norm, no intercept) and the residual
  noise ``sigma^2 = |y - X theta*|^2 / n``.

Covariances are the biased (``1/n``) ones, so that ``E[x x^T]``, ``E[x y]`` and ``E[y^2]`` of
the surrogate equal the data's averages exactly: least-squares risks of any ``theta`` agree
between the surrogate and the data. ``Sigma = U diag(lambda) U^T`` is diagonalised densely
(``O(d^3)`` time, ``O(d^2)`` memory) and everything becomes a
[`ProblemInstance`][advdyn.problem.instance.ProblemInstance] in its eigenbasis, the same
per-direction instance the synthetic problems use; spectral bins of it
([`bin_instance`][advdyn.bin_instance]) serve large ``d`` for the ODE.

[`surrogate_diagnostics`][advdyn.problem.data.surrogate_diagnostics] measures how far the data
are from the surrogate (excess kurtosis of projections, class-conditional covariance mismatch).
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import jax
import numpy as np

from advdyn.checks import ColumnMoments, row_chunks
from advdyn.precision import as_float64, float64
from advdyn.problem.instance import ProblemInstance
from advdyn.problem.losses import AbstractLoss

#: Top eigendirections whose projections the diagnostics examine.
TOP_DIRECTIONS = 5
#: ``max_c |mu_c|^2 / (tr(M) / d)`` above which a float64 table's rows are centred by their
#: class means before the Krylov products (below it the mean terms cancel to at most
#: ``1e4 x 2^-52`` of the average eigenvalue; centring costs a copy of each block)
CENTRE_FLOAT64 = 1e4


class MixtureStatistics(NamedTuple):
    """Moments of a data set that define its Gaussian-mixture surrogate.

    Attributes
    ----------
    weights : ndarray, shape (C,)
        Class frequencies (``C = 2``, classes ``+1`` then ``-1``) or ``[1.0]``.
    labels : ndarray, shape (C,)
        ``+/-1`` for classification, ``[0.0]`` for regression.
    means : ndarray, shape (C, d)
        Component means in the original basis.
    eigenvalues : ndarray, shape (d,)
        Of the shared covariance, ascending, clipped at 0.
    basis : ndarray, shape (d, d)
        Columns are the eigenvectors ``u_i``.
    teacher : ndarray, shape (d,)
        ``theta*`` in the original basis.
    noise : float
        Residual standard deviation ``sigma`` (regression; 0 for classification).
    class_mismatch : ndarray, shape (C,)
        ``|Cov_c - Sigma|_F / |Sigma|_F`` per class (zeros for regression).
    task : str
        ``"regression"`` or ``"classification"``.
    """

    weights: np.ndarray
    labels: np.ndarray
    means: np.ndarray
    eigenvalues: np.ndarray
    basis: np.ndarray
    teacher: np.ndarray
    noise: float
    class_mismatch: np.ndarray
    task: str

    @property
    def radius(self) -> float:
        """The data-scaled attack radius: half the distance between the class means
        (classification), or ``sigma / |theta*|`` (regression: the attack then moves a
        prediction by as much as the noise)."""
        if self.task == "classification":
            return float(np.linalg.norm(self.means[0] - self.means[1]) / 2)
        return float(self.noise) / max(float(np.linalg.norm(self.teacher)), 1e-300)


@float64(keep=("X",))
def mixture_statistics(X: np.ndarray, y: np.ndarray, task: str,
                       teacher_norm: float = 1.0) -> MixtureStatistics:
    """The surrogate's moments of a checked data set (module docstring).

    Two passes over blocks of rows (`row_chunks`), each block converted to float64 in
    cache (a float32 ``X`` is not copied): the class sums (and ``X^T y``), then the
    class-centred second moments; the dense ``d x d`` covariance is then diagonalised.

    Parameters
    ----------
    X : ndarray, shape (n, d)
        Features, finite (see `advdyn.checks.data_features`), float32 or float64 (taken
        as they are, not widened).
    y : ndarray, shape (n,)
        Targets; ``+/-1`` labels with both classes present for classification.
    task : {"regression", "classification"}
    teacher_norm : float
        Norm of the classification reference direction ``theta*``.

    Returns
    -------
    MixtureStatistics
        float64.
    """
    X = np.asarray(X)
    y = np.asarray(y, np.float64)
    n = X.shape[0]
    if task == "classification":
        labels = np.array([1.0, -1.0])
        masks = np.column_stack([y == 1.0, y == -1.0])
    else:
        labels = np.zeros(1)
        masks = np.ones((n, 1), bool)
    counts = masks.sum(axis=0).astype(np.float64)
    weights = counts / n
    first = _first_pass(X, np.column_stack([masks, y]))[0]  # the class sums and X^T y
    means = (first[:, :-1] / counts).T
    covs = _centred_grams(X, masks, means) / np.maximum(counts, 1.0)[:, None, None]
    if task == "classification":
        sigma = np.einsum("c,cij->ij", weights, covs)
        scale = max(float(np.linalg.norm(sigma)), 1e-300)
        mismatch = np.array([np.linalg.norm(c - sigma) / scale for c in covs])
        diff = means[0] - means[1]
        teacher = teacher_norm * diff / max(float(np.linalg.norm(diff)), 1e-300)
        noise = 0.0
    else:
        sigma = covs[0]
        mismatch = np.zeros(1)
    del covs
    lam, basis = np.linalg.eigh(sigma)
    if task == "regression":
        teacher = _least_squares(first[:, -1] / n, n, means[0], lam, basis)
        noise = float(np.sqrt(np.mean((y - _rows_times(X, teacher[:, None])[:, 0]) ** 2)))
    return MixtureStatistics(weights, labels, means, np.clip(lam, 0.0, None), basis, teacher,
                             noise, mismatch, task)


def _centred_grams(X: np.ndarray, masks: np.ndarray, means: np.ndarray) -> np.ndarray:
    """``sum_{j in c} (x_j - mu_c)(x_j - mu_c)^T`` per class ``c`` (shape ``(C, d, d)``),
    float64, one pass over blocks of rows (`row_chunks`), each converted to float64 and
    centred in cache."""
    out = np.zeros((masks.shape[1], X.shape[1], X.shape[1]))
    for block in row_chunks(*X.shape):
        R = np.asarray(X[block], np.float64)
        for c in range(masks.shape[1]):
            Z = (R if masks.shape[1] == 1 else R[masks[block, c]]) - means[c]
            out[c] += Z.T @ Z
    return out


def rows_in_eigenbasis(X: np.ndarray, stats: MixtureStatistics) -> np.ndarray:
    """The rows ``X U`` in the covariance eigenbasis of ``stats``, in ``X``'s own dtype.

    Parameters
    ----------
    X : ndarray, shape (n, d)
        float32 or float64 rows.
    stats : MixtureStatistics

    Returns
    -------
    ndarray, shape (n, d)
        Of the dtype of ``X`` (one new table; each block is rotated in float64 and rounded
        once).
    """
    out = np.empty(X.shape, X.dtype)
    for block in row_chunks(*X.shape):
        out[block] = np.asarray(X[block], np.float64) @ stats.basis
    return out


def standardize(X: np.ndarray, moments: ColumnMoments, mode: str, *,
                overwrite: bool = False) -> np.ndarray:
    """The rows of a checked feature matrix, centred and scaled as ``mode`` says, in one pass.

    Parameters
    ----------
    X : ndarray, shape (n, d)
        Checked features (`advdyn.checks.data_features`), possibly a read-only memory map.
        Not modified unless ``overwrite``.
    moments : ColumnMoments
        Of ``X`` (float64).
    mode : {"scale", "center", "none"}
        ``(x - mean) / std``, ``x - mean`` or ``x``, column by column.
    overwrite : bool
        The caller hands ``X`` over: a writeable C-contiguous ``X`` of the output's dtype
        is standardised in place and returned (no second table); other arrays are copied
        whatever this says.

    Returns
    -------
    ndarray, shape (n, d)
        C-contiguous, in the table's own precision: float32 for a float32 ``X``, float64
        for any other dtype (each block is computed in float64 and rounded once, so a
        float32 result is the correctly rounded standardised value up to float64 rounding);
        what [`simulate_data_sgd`][advdyn.simulate.simulate_data_sgd] samples as it is. A
        new array unless ``overwrite``.
    """
    dtype = np.dtype(np.float32 if X.dtype == np.float32 else np.float64)
    in_place = (overwrite and X.flags.writeable and X.flags.c_contiguous and X.dtype == dtype)
    if mode == "none":
        return X if in_place else np.array(X, dtype, order="C")
    out = X if in_place else np.empty(X.shape, dtype)
    for block in row_chunks(*X.shape):
        # float64 in place; float32 through a float64 block in cache, rounded once
        part = out[block] if dtype == np.float64 else np.empty(out[block].shape)
        np.subtract(X[block], moments.mean, out=part)
        if mode == "scale":
            np.divide(part, moments.std, out=part)
        if part.dtype != dtype:
            out[block] = part
    return out


def _least_squares(b, n, mean, lam, basis) -> np.ndarray:
    """Minimum-norm ``argmin |y - X theta|`` from the normal equations ``M theta = b``
    (``b = X^T y / n``) with ``M = Sigma + mu mu^T`` (the second moment), solved in the
    eigenbasis of ``M``: that of ``Sigma`` when the columns are centred, else one more
    eigendecomposition. Eigenvalues of
    ``M`` below ``max(n, d) eps lambda_max`` (``eps`` of float64) count as zero: since
    ``lambda = s^2 / n`` for the singular values ``s`` of ``X``, directions with
    ``s < sqrt(max(n, d) eps) s_max`` are dropped (a looser cutoff than ``lstsq``'s
    ``max(n, d) eps s_max``: forming ``M`` already rounds its eigenvalues at ``eps lambda_max``)."""
    d = b.shape[0]
    if np.any(mean != 0.0):
        lam, basis = np.linalg.eigh((basis * lam) @ basis.T + np.outer(mean, mean))
    keep = lam > max(n, d) * np.finfo(np.float64).eps * max(float(lam.max()), 1e-300)
    coef = np.where(keep, (basis.T @ b) / np.where(keep, lam, 1.0), 0.0)
    return basis @ coef


@float64
def surrogate_instance(stats: MixtureStatistics, loss: AbstractLoss, epsilon: float, ridge: float,
                       theta0: np.ndarray, theta0_basis: str = "eigen") -> ProblemInstance:
    """The surrogate as a [`ProblemInstance`][advdyn.problem.instance.ProblemInstance] in the
    covariance eigenbasis.

    Parameters
    ----------
    stats : MixtureStatistics
    loss : AbstractLoss
    epsilon, ridge : float
        Attack radius and explicit ridge.
    theta0 : ndarray, shape (d,)
        Initial iterate.
    theta0_basis : {"eigen", "original"}
        The basis ``theta0`` is given in (an isotropic draw may be taken as eigenbasis
        coordinates directly).

    Returns
    -------
    ProblemInstance
        float64, every component with the shared eigenvalues.
    """
    U = stats.basis
    if theta0_basis == "original":
        theta0 = U.T @ theta0
    return _instance(stats, stats.eigenvalues, U.T @ stats.teacher, stats.means @ U, theta0,
                     loss, epsilon, ridge)


def _instance(stats: MixtureStatistics | SpectralStatistics, eigenvalues: np.ndarray,
              teacher: np.ndarray, means: np.ndarray, theta0: np.ndarray, loss: AbstractLoss,
              epsilon: float, ridge: float) -> ProblemInstance:
    """A float64 `ProblemInstance` of ``stats`` with the shared ``eigenvalues`` and the
    vectors given in its basis."""
    f64 = lambda x: jax.device_put(np.asarray(x, dtype=np.float64))  # noqa: E731
    C = stats.weights.shape[0]
    return ProblemInstance(
        eigenvalues=f64(np.repeat(np.asarray(eigenvalues)[None], C, axis=0)),
        theta_star=f64(teacher),
        means=f64(means),
        weights=f64(stats.weights),
        labels=f64(stats.labels),
        theta0=f64(theta0),
        noise=as_float64(stats.noise),
        epsilon=as_float64(epsilon),
        ridge=as_float64(ridge),
        loss=loss,
        task=stats.task,
    )


def effective_dimension(eigenvalues: np.ndarray, multiplicity: np.ndarray | None = None) -> float:
    """``(tr K)^2 / tr K^2``: the number of directions that carry the variance.

    ``multiplicity`` (optional, shape of ``eigenvalues``) counts the directions of each
    eigenvalue (a binned spectrum).

    It equals ``d`` for an isotropic covariance and is much smaller for a spectrum with a few
    large eigenvalues (random features share a common mode). An SGD run's relative
    fluctuations around the ``d -> inf`` limit are of order ``effective_dimension^-1/2``
    rather than ``d^-1/2`` when the two differ.
    """
    lam = np.asarray(eigenvalues, np.float64)
    count = np.ones_like(lam) if multiplicity is None else np.asarray(multiplicity, np.float64)
    return float(np.sum(count * lam) ** 2 / max(float(np.sum(count * lam**2)), 1e-300))


def _multiplicities(stats: MixtureStatistics | SpectralStatistics) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues and their direction counts (ones on the dense path)."""
    if isinstance(stats, SpectralStatistics):
        return stats.nodes, stats.density
    return stats.eigenvalues, np.ones_like(stats.eigenvalues)


def _excess_kurtosis(z: np.ndarray) -> np.ndarray:
    """``E z^4 / (E z^2)^2 - 3`` per column of centred projections ``z``, shape ``(n, k)``."""
    m2 = np.mean(z**2, axis=0)
    m4 = np.mean(z**4, axis=0)
    return m4 / np.maximum(m2, 1e-300) ** 2 - 3.0


def surrogate_diagnostics(X: np.ndarray, y: np.ndarray,
                          stats: MixtureStatistics | SpectralStatistics) -> dict:
    """How far a data set is from its Gaussian-mixture surrogate.

    For a Gaussian mixture every projection of a class-centred row is Gaussian (excess
    kurtosis 0, up to the sampling error ``sqrt(24 / n)``) and every class shares the
    covariance. The numbers here say where the data depart.

    Parameters
    ----------
    X : ndarray, shape (n, d)
        The features the statistics were estimated from (original basis; float32 or
        float64, read in blocks of rows).
    y : ndarray, shape (n,)
        Their targets (``+/-1`` for classification).
    stats : MixtureStatistics or SpectralStatistics
        On the binned path the top eigendirections are Ritz vectors and the spectral sums
        are quadratures.

    Returns
    -------
    dict
        Python floats and lists of them (NumPy float64; one pass over the rows in blocks on
        the dense path, none when the statistics hold ``row_products``, which are then the
        projections of ``X``'s rows):
        ``kurtosis_teacher`` (excess kurtosis of the class-centred projection onto
        ``theta*/|theta*|``), ``kurtosis_top`` (onto the top ``TOP_DIRECTIONS``
        eigendirections, largest first), ``kurtosis_max_abs`` (the largest absolute value of
        those), ``kurtosis_standard_error`` (``sqrt(24 / n)``), ``class_covariance_mismatch``
        (classification: ``|Cov_c - Sigma|_F / |Sigma|_F`` for classes ``+1``, ``-1``),
        ``class_covariance_mismatch_gaussian`` (its expected size from sampling alone, for
        Gaussian classes of one covariance),
        ``residual_kurtosis`` (regression: of ``y - <theta*, x>``), ``radius`` (see
        [`MixtureStatistics.radius`][advdyn.problem.data.MixtureStatistics.radius]),
        ``effective_dimension`` (see `effective_dimension`), ``n`` and ``d``.

    Raises
    ------
    ValueError
        If the statistics hold ``row_products`` for another number of rows than ``X``'s.
    """
    X = np.asarray(X)
    n, d = X.shape
    k = min(TOP_DIRECTIONS, d)
    t = stats.teacher / max(float(np.linalg.norm(stats.teacher)), 1e-300)
    top = stats.top if isinstance(stats, SpectralStatistics) else stats.basis[:, ::-1][:, :k]
    directions = np.concatenate([t[:, None], top, stats.teacher[:, None]], axis=1)
    centres = stats.means @ directions
    rows = getattr(stats, "row_products", None)
    if rows is not None:  # the binned path's Krylov passes formed (x - mu_c) . v already
        if rows.shape[0] != n:
            raise ValueError(f"X has {n} rows, the statistics' row_products {rows.shape[0]}: "
                             "X must be the table the statistics were estimated from")
        norm = max(float(np.linalg.norm(stats.teacher)), 1e-300)
        projected = np.column_stack([rows[:, -1] / norm, rows])
    else:  # one pass: (x - mu_c) . v = x . v - mu_c . v, no centred copy of X
        projected = _rows_times(X, directions)
        if stats.task == "classification":
            projected -= np.where((y == 1.0)[:, None], centres[0], centres[1])
        else:
            projected -= centres[0]
    kurt = _excess_kurtosis(projected[:, :-1])
    out = {
        "n": int(n),
        "d": int(d),
        "kurtosis_teacher": float(kurt[0]),
        "kurtosis_top": [float(v) for v in kurt[1:]],
        "kurtosis_max_abs": float(np.max(np.abs(kurt))),
        "kurtosis_standard_error": float(np.sqrt(24.0 / n)),
        "radius": stats.radius,
        "effective_dimension": effective_dimension(*_multiplicities(stats)),
    }
    if stats.task == "classification":
        out["class_covariance_mismatch"] = [float(v) for v in stats.class_mismatch]
        # what Gaussian classes of one covariance give: Cov_c - Sigma = pi_c' (Cov_c - Cov_c')
        # and E|S - K|_F^2 = (tr K^2 + (tr K)^2) / n_c for a sample covariance S of n_c rows
        lam, count = _multiplicities(stats)
        tr2 = float(np.sum(count * lam**2))
        v = tr2 + float(np.sum(count * lam)) ** 2
        counts = np.array([np.sum(y == 1.0), np.sum(y == -1.0)], np.float64)
        floor = [(1 - w) * np.sqrt(v / counts[i] + v / counts[1 - i])
                 / max(float(np.sqrt(tr2)), 1e-300)
                 for i, w in enumerate(stats.weights)]
        out["class_covariance_mismatch_gaussian"] = [float(f) for f in floor]
    else:
        fitted = projected[:, -1] + centres[0, -1]  # x . theta*
        out["residual_kurtosis"] = float(_excess_kurtosis((y - fitted)[:, None])[0])
    return out


# ----------------------------------------------------------------------------- binned spectrum
class SpectralStatistics(NamedTuple):
    """A data set's surrogate as Gauss quadrature of its covariance, without ``d x d`` matrices.

    Rayleigh-Ritz on the block Krylov space ``K_m(Sigma, [V, Z])`` (``m`` blocks) of the
    pooled covariance ``Sigma``, started from the reference vectors ``V`` (teacher direction,
    class means, optionally ``theta_0``) and ``k`` normalised Rademacher probes ``Z``
    (entries ``+/-1/sqrt(d)``), gives ``N`` nodes ``nu_j`` (Ritz values) and unit Ritz
    vectors ``r_j``. Every measure the theory integrates is a sum over these nodes:

    * a reference vector pair ``(a, b)``: ``sum_j (r_j . a)(r_j . b) delta(nu_j)``, the
      block Gauss quadrature of ``sum_i (u_i . a)(u_i . b) delta(lambda_i)`` (exact for
      polynomials of degree ``<= 2m - 1``, since ``a, b`` start the space);
    * the eigenvalue count (density): ``(d / k) sum_{probes} (r_j . z)^2`` per node, the
      Hutchinson estimate of ``#{i: lambda_i in a neighbourhood of nu_j}`` (its total is
      exactly ``d``; a spectral sum ``sum_i f(lambda_i)`` has relative standard deviation
      about ``sqrt(2 / (k d_eff))``); exactly 1 per node once the space is ``R^d`` (the
      Ritz vectors are then eigenvectors).

    Attributes
    ----------
    weights, labels, means, teacher, noise, class_mismatch, task
        As in `MixtureStatistics` (``class_mismatch`` a Hutchinson estimate from the probes).
    nodes : ndarray, shape (N,)
        Ritz values, ascending, clipped at 0.
    density : ndarray, shape (N,)
        Directions per node (sums to ``d``).
    projections : ndarray, shape (N, V)
        ``r_j . v`` for the reference vectors, columns in the order of `names`.
    names : tuple of str
        ``"teacher"``, ``"mean+"``/``"mean-"`` (classification) or ``"mean"``, and
        ``"theta0"`` when an initial iterate was given.
    top : ndarray, shape (d, TOP_DIRECTIONS)
        Ritz vectors of the largest nodes, largest first (for the diagnostics).
    probes, steps : int
        ``k`` and ``m``.
    products : {"float64", "float32"}
        The dtype of the Krylov passes' products with the rows: the table's
        (`spectral_statistics`).
    residual : float
        Regression: ``|M theta* - X^T y / n| / |X^T y / n|`` of the teacher (``M`` the
        second moment); 0 for classification.
    coarser : SpectralStatistics or None
        The same statistics from the first ``steps - 1`` blocks of the same Krylov basis:
        the quadrature one step (two polynomial degrees) lower, whose own ``coarser`` is
        the one two steps lower (or None); from the three a result's convergence in
        ``steps`` is estimated. None when one block was taken.
    row_products : ndarray, shape (n, TOP_DIRECTIONS + 1), or None
        ``(x_i - mu_c(i)) . [top, teacher]``: the class-centred rows' products with the top
        Ritz vectors and the teacher, from the products the Krylov passes formed (the
        diagnostics need no pass of their own); None on ``coarser``.
    """

    weights: np.ndarray
    labels: np.ndarray
    means: np.ndarray
    teacher: np.ndarray
    noise: float
    class_mismatch: np.ndarray
    task: str
    nodes: np.ndarray
    density: np.ndarray
    projections: np.ndarray
    names: tuple[str, ...]
    top: np.ndarray
    probes: int
    steps: int
    products: Literal["float64", "float32"]
    residual: float
    coarser: SpectralStatistics | None = None
    row_products: np.ndarray | None = None

    @property
    def radius(self) -> float:
        """As [`MixtureStatistics.radius`][advdyn.problem.data.MixtureStatistics.radius]."""
        return MixtureStatistics.radius.fget(self)  # type: ignore[attr-defined]

    @property
    def eigenvalues(self) -> np.ndarray:
        """The nodes (the eigenvalue of every node's directions)."""
        return self.nodes

    @property
    def method(self) -> str:
        """How the spectrum was obtained, e.g. ``"binned (Lanczos, 8 probes, 6 steps)"``
        (``", float32 products"`` added when they were)."""
        extra = ", float32 products" if self.products == "float32" else ""
        return f"binned (Lanczos, {self.probes} probes, {self.steps} steps{extra})"

    def measure(self, a: str, b: str) -> np.ndarray:
        """Masses ``(r_j . a)(r_j . b)`` per node of the reference vectors named ``a``, ``b``."""
        return self.projections[:, self.names.index(a)] * self.projections[:, self.names.index(b)]


def _rows_times(X: np.ndarray, V: np.ndarray) -> np.ndarray:
    """``X V`` (shape ``(n, V)``), float64, one pass over the rows in blocks (`row_chunks`)
    converted to float64 in cache: no float64 copy of a float32 table."""
    out = np.empty((X.shape[0], V.shape[1]))
    for block in row_chunks(*X.shape):
        out[block] = np.asarray(X[block], np.float64) @ V
    return out


def _first_pass(X: np.ndarray, W: np.ndarray, squares: bool = False) -> tuple[np.ndarray, float]:
    """``X^T W`` (shape ``(d, W)``, ``W`` of shape ``(n, W)``) and, with ``squares``,
    ``sum_i |x_i|^2`` (else 0), float64, one pass over the rows in blocks converted to
    float64 in cache, as `_rows_times`."""
    out, total = np.zeros((W.shape[1], X.shape[1])), 0.0  # (W^T X)^T: a faster BLAS shape
    for block in row_chunks(*X.shape):
        R = np.asarray(X[block], np.float64)
        out += W[block].T @ R
        if squares:
            flat = R.reshape(-1)
            total += float(flat @ flat)
    return out.T, total


def _gram_times(X: np.ndarray, Q: np.ndarray, masks: np.ndarray, centres: np.ndarray,
                coef: np.ndarray | None = None) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """``sum_i r_i r_i^T Q`` for the rows ``r_i = x_i - centres[c(i)]``, in one pass over the
    rows: each block of rows (`row_chunks`) gives ``R Q`` and then ``R^T (R Q)`` while it is
    in cache. The products are in the dtype of ``centres`` (each block converted, or centred,
    in cache: no copy of the table) and summed over blocks in float64; centring by the class
    means first leaves nothing large to cancel afterwards, so float32 products lose only
    float32's rounding of the centred rows. Zero ``centres`` take the rows as they are.
    Also returns ``R Q`` for every row (shape ``(n, Q)``, that dtype).

    ``masks`` (shape ``(n, C)``) are the rows' class indicators, ``centres`` (shape
    ``(C, d)``) what is subtracted from each class's rows. With ``coef`` (shape ``(Q, k)``),
    also ``sum_{i in c} r_i r_i^T (Q coef)`` for every class ``c`` in the same pass.
    """
    dtype = centres.dtype
    out = np.zeros(Q.shape)
    rows_q: np.ndarray = np.empty((X.shape[0], Q.shape[1]), dtype)
    Qd: np.ndarray = Q.astype(dtype)
    masks_d: np.ndarray = masks.astype(dtype)
    in_class = masks[:, :, None] != 0
    per_mask: list[np.ndarray] = []
    if coef is not None:
        per_mask = [np.zeros((X.shape[1], coef.shape[1])) for _ in range(masks.shape[1])]
        coef_d: np.ndarray = coef.astype(dtype)
    chunks = row_chunks(X.shape[0], X.shape[1], itemsize=dtype.itemsize)
    centre = bool(np.any(centres))
    # one block buffer, reused: a fresh block per step costs page faults, not arithmetic
    buffer = np.empty((chunks[0].stop - chunks[0].start, X.shape[1]) if centre else (0, 0),
                      dtype)
    for block in chunks:
        if not centre:
            R = np.asarray(X[block], dtype)
        elif len(centres) == 1:
            R = buffer[: block.stop - block.start]
            np.subtract(X[block], centres[0], out=R, casting="same_kind")
        else:  # every row minus its own class's centre (exact near the centre)
            R = buffer[: block.stop - block.start]
            for c, mean in enumerate(centres):
                np.subtract(X[block], mean, out=R, where=in_class[block, c],
                            casting="same_kind")
        P: np.ndarray = R @ Qd
        rows_q[block] = P
        out += R.T @ P
        if coef is not None:
            PZ = P @ coef_d
            for c, acc in enumerate(per_mask):
                acc += R.T @ (PZ * masks_d[block, c, None])
    return out, per_mask, rows_q


def _orthonormal(W: np.ndarray, floor: float) -> np.ndarray:
    """An orthonormal basis of the columns of ``W`` whose singular values exceed ``floor``
    (deflation: a block that the space already holds adds nothing)."""
    U, s, _ = np.linalg.svd(W, full_matrices=False)
    return U[:, s > floor]


def spectral_statistics(X: np.ndarray, y: np.ndarray, task: str, teacher_norm: float = 1.0, *,
                        probes: int = 8, steps: int = 10, seed: int = 0,
                        theta0: np.ndarray | None = None) -> SpectralStatistics:
    """The surrogate's moments from matrix-free products with the data (`SpectralStatistics`).

    Only products with ``X`` are formed, over blocks of rows (a float32 ``X`` is not
    copied): one pass for the class means and ``X^T y`` (in float64), then ``steps``
    passes, each ``R^T (R Q)`` of the rows ``R`` for a block ``Q`` of
    ``probes + C + 1`` columns (``+ 1`` with ``theta0``; classification: the per-class
    covariances of the first block in its pass), ``O(n d (probes + C))`` time per pass and
    ``O((n + d) N)`` memory (the Krylov basis and the rows' products with it, which give
    the diagnostics' projections ``row_products``); the orthogonalisation and Rayleigh-Ritz
    are float64. The passes' products are in the table's dtype. A float32 table's rows are
    centred by their class means first (unless every mean is below float32's rounding of
    the rows, ``|mu_c|^2 <= eps_32 tr(M) / d``), so that the mean terms (which are handled in
    float64) leave nothing large to cancel: its products carry float32's rounding of the
    centred rows and no more. A float64 table's rows are taken as they are (its mean terms
    cancel in float64). The regression teacher is the
    Galerkin solution ``theta* = Q (Q^T M Q)^+ Q^T b`` of the normal equations
    ``M theta = b = X^T y / n`` on the same space (``M = Sigma + sum_c pi_c mu_c mu_c^T``
    spans the same Krylov space as ``Sigma``, since the means start it), with the dense
    path's cutoff of small eigenvalues; started from ``b`` it is the minimum-norm solution
    within the space (block conjugate gradients). ``noise^2 = |y|^2/n - 2 b . theta* +
    theta*^T M theta*``.

    Parameters
    ----------
    X : ndarray, shape (n, d)
        Checked features, float32 or float64.
    y : ndarray, shape (n,)
        Targets (``+/-1`` with both classes for classification).
    task : {"regression", "classification"}
    teacher_norm : float
        Norm of the classification reference direction.
    probes : int
        Rademacher probes ``k`` of the eigenvalue count.
    steps : int
        Krylov blocks ``m``.
    seed : int
        Seed of the probes (``numpy.random.default_rng(seed)``).
    theta0 : ndarray, shape (d,), optional
        The initial iterate, whose measures the ODE needs
        ([`quadrature_instance`][advdyn.theory.spectral.quadrature_instance]).

    Returns
    -------
    SpectralStatistics
        NumPy float64 whatever JAX's settings (NumPy only), with ``coarser`` (from the
        first ``steps - 1`` blocks, and its own from ``steps - 2``) when two or more were
        taken.
    """
    X = np.asarray(X)  # float32 or float64: the products convert blocks of rows in cache
    y = np.asarray(y, np.float64)
    n, d = X.shape
    if task == "classification":
        labels = np.array([1.0, -1.0])
        masks = [(y == 1.0) * 1.0, (y == -1.0) * 1.0]
        names: tuple[str, ...] = ("teacher", "mean+", "mean-")
    else:
        labels = np.zeros(1)
        masks = [np.ones(n)]
        names = ("teacher", "mean")
    counts = np.array([float(m.sum()) for m in masks])
    weights = counts / n
    # the class sums, X^T y and tr(M)
    first, squares = _first_pass(X, np.column_stack([*masks, y]), squares=True)
    means = (first[:, :-1] / counts).T
    b = first[:, -1] / n
    # the products are in the table's dtype, of the rows centred by their class means
    # (rounded to that dtype) where the mean terms could cancel more than the dtype's
    # rounding: in float32 unless every mean is at that rounding (|mu_c|^2 <= eps32 tr(M)/d),
    # in float64 once a mean exceeds CENTRE_FLOAT64 tr(M)/d. sum_{i in c} r_i is then
    # n_c * rounding[c], whose part is subtracted exactly below
    single = X.dtype == np.float32
    product_dtype = np.float32 if single else np.float64
    products: Literal["float64", "float32"] = "float32" if single else "float64"
    column_moment = max(squares / (n * d), 1e-300)  # tr(M) / d
    mean_squares = np.sum(means**2, axis=1)  # |mu_c|^2
    threshold = float(np.finfo(np.float32).eps) if single else CENTRE_FLOAT64
    centre = float(mean_squares.max()) > threshold * column_moment
    centres = means.astype(product_dtype) if centre else np.zeros_like(means, product_dtype)
    rounding = means - centres
    mask_table = np.column_stack(masks)

    if task == "classification":
        diff = means[0] - means[1]
        teacher = teacher_norm * diff / max(float(np.linalg.norm(diff)), 1e-300)
        start_vectors = [teacher, means[0], means[1]]
    else:
        teacher = np.zeros(d)  # solved below
        start_vectors = [b, means[0]]
    if theta0 is not None:
        names = (*names, "theta0")
        start_vectors.append(np.asarray(theta0, np.float64))
    rng = np.random.default_rng(seed)
    Z = rng.choice(np.array([-1.0, 1.0]), size=(d, probes)) / np.sqrt(d)
    start = np.column_stack([*start_vectors, Z])
    # a class mean at the table's rounding of the rows (a centred table's) starts nothing;
    # the means are the start columns after the first
    at_rounding = mean_squares <= float(np.finfo(product_dtype).eps) * column_moment
    start[:, 1:1 + len(means)][:, at_rounding] = 0.0
    norms = np.linalg.norm(start, axis=0)
    start = start / np.where(norms > 0, norms, 1.0)  # unit columns: the floor is relative
    Q = _orthonormal(start, 1e-12)
    blocks, covariances, row_blocks = [], [], []  # Q_j, Sigma Q_j, R Q_j
    class_mismatch = np.zeros(len(masks))
    for j in range(steps):
        if Q.shape[1] == 0:
            break
        per_class = j == 0 and task == "classification"
        coef = Q.T @ Z if per_class else None  # Z = Q coef
        RRQ, class_products, RQ = _gram_times(X, Q, mask_table, centres, coef)
        SQ = RRQ / n - (rounding.T * weights) @ (rounding @ Q)  # Sigma Q
        row_blocks.append(RQ)
        if per_class:
            # per-class covariances on the first block: |Cov_c - Sigma|_F by Hutchinson
            SZ = SQ @ coef
            scale = np.sqrt(d / probes) * np.linalg.norm(SZ)  # |Sigma|_F estimate
            for c, RRZ in enumerate(class_products):
                CZ = RRZ / counts[c] - np.outer(rounding[c], rounding[c] @ Z)
                class_mismatch[c] = (np.sqrt(d / probes) * np.linalg.norm(CZ - SZ)
                                     / max(scale, 1e-300))
        blocks.append(Q)
        covariances.append(SQ)
        if j == steps - 1:
            break
        W = SQ
        basis = np.hstack(blocks)
        for _ in range(2):  # full reorthogonalisation, twice is enough
            W = W - basis @ (basis.T @ W)
        # deflation relative to the covariance's scale (not M's: large means would raise it)
        Q = _orthonormal(W, 1e-12 * max(float(np.linalg.norm(covariances[0], 2)), 1e-300))
    def ritz(nb: int, rows: bool) -> SpectralStatistics:  # Rayleigh-Ritz on nb blocks
        basis = np.hstack(blocks[:nb])
        SB = np.hstack(covariances[:nb])
        MB = SB + (means.T * weights) @ (means @ basis)  # M = Sigma + sum_c pi_c mu_c mu_c^T
        M_small = basis.T @ MB
        M_small = (M_small + M_small.T) / 2
        solved = teacher  # classification: the means' direction; regression: below
        if task == "regression":
            lam, S = np.linalg.eigh(M_small)
            keep = lam > max(n, d) * np.finfo(np.float64).eps * max(float(lam.max()), 1e-300)
            coef_b = S.T @ (basis.T @ b)
            sol = S @ np.where(keep, coef_b / np.where(keep, lam, 1.0), 0.0)
            solved = basis @ sol
            residual = float(np.linalg.norm(MB @ sol - b) / max(float(np.linalg.norm(b)),
                                                                1e-300))
            noise = float(np.sqrt(max(float(y @ y) / n - 2 * float(b @ solved)
                                      + float(sol @ M_small @ sol), 0.0)))
        else:
            residual, noise = 0.0, 0.0
        # Rayleigh-Ritz of Sigma on the space, from the Sigma Q_j (no mean terms to cancel)
        T = basis.T @ SB
        nodes, S = np.linalg.eigh((T + T.T) / 2)
        vectors = [solved, *means] + ([np.asarray(theta0, np.float64)]
                                       if theta0 is not None else [])
        projections = S.T @ (basis.T @ np.column_stack(vectors))
        if basis.shape[1] == d:  # the whole space: the Ritz vectors are eigenvectors
            density = np.ones(d)
        else:
            density = (d / probes) * np.sum((S.T @ (basis.T @ Z)) ** 2, axis=1)
        k = min(TOP_DIRECTIONS, S.shape[1])
        top = basis @ S[:, ::-1][:, :k]
        row_products = None
        if rows:  # (x_i - mu_c) . [top, teacher] from the R Q_j: both lie in the space
            directions = np.column_stack([top, solved])
            coords = basis.T @ directions
            row_products = -mask_table @ (rounding @ directions)
            offset = 0
            for RQ in row_blocks[:nb]:
                row_products += RQ @ coords[offset:offset + RQ.shape[1]].astype(RQ.dtype)
                offset += RQ.shape[1]
        return SpectralStatistics(weights, labels, means, solved, noise, class_mismatch, task,
                                  np.clip(nodes, 0.0, None), density, projections, names, top,
                                  int(probes), nb, products, residual,
                                  row_products=row_products)

    full = ritz(len(blocks), rows=True)
    if len(blocks) < 2:
        return full
    coarser = ritz(len(blocks) - 1, rows=False)
    if len(blocks) > 2:
        coarser = coarser._replace(coarser=ritz(len(blocks) - 2, rows=False))
    return full._replace(coarser=coarser)


@float64
def rows_basis_instance(stats: SpectralStatistics, loss: AbstractLoss, epsilon: float,
                        ridge: float, theta0: np.ndarray) -> ProblemInstance:
    """The vectors of a binned surrogate as a
    [`ProblemInstance`][advdyn.problem.instance.ProblemInstance] in the original basis, for SGD
    on the rows.

    The covariance is not diagonal in that basis, so it has no eigenvalues: they are NaN,
    which [`solve_ode`][advdyn.theory.solve_ode] and
    [`adversarial_optimum`][advdyn.theory.adversarial_optimum] refuse
    (`advdyn.checks.theory_instance`), so that it is not taken for a theory input. The loss,
    ``eps``, the ridge, ``theta*``, the means and ``theta_0`` are right and so is every
    basis-free quantity of them (``norm``, ``overlap``); `advdyn.simulate.data` records no
    surrogate risk on this path.

    Parameters
    ----------
    stats : SpectralStatistics
    loss : AbstractLoss
    epsilon, ridge : float
    theta0 : ndarray, shape (d,)
        Initial iterate in the original basis.

    Returns
    -------
    ProblemInstance
        float64.
    """
    return _instance(stats, np.full(stats.means.shape[1], np.nan), stats.teacher, stats.means,
                     theta0, loss, epsilon, ridge)
