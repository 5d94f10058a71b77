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

from typing import NamedTuple

import jax
import numpy as np

from advdyn.precision import as_float64, float64
from advdyn.problem.instance import ProblemInstance
from advdyn.problem.losses import AbstractLoss

#: Top eigendirections whose projections the diagnostics examine.
TOP_DIRECTIONS = 5


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


@float64
def mixture_statistics(X: np.ndarray, y: np.ndarray, task: str,
                       teacher_norm: float = 1.0) -> MixtureStatistics:
    """The surrogate's moments of a checked data set (module docstring).

    Parameters
    ----------
    X : ndarray, shape (n, d)
        Features, finite (see `advdyn.checks.data_features`).
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
    X = np.asarray(X, np.float64)
    y = np.asarray(y, np.float64)
    n = X.shape[0]
    if task == "classification":
        labels = np.array([1.0, -1.0])
        masks = [y == 1.0, y == -1.0]
        weights = np.array([m.mean() for m in masks])
        means = np.stack([X[m].mean(axis=0) for m in masks])
        covs = []
        for m, mu in zip(masks, means, strict=True):
            Z = X[m] - mu
            covs.append(Z.T @ Z / max(int(m.sum()), 1))
        sigma = sum(w * c for w, c in zip(weights, covs, strict=True))
        scale = max(float(np.linalg.norm(sigma)), 1e-300)
        mismatch = np.array([np.linalg.norm(c - sigma) / scale for c in covs])
        del covs
        diff = means[0] - means[1]
        teacher = teacher_norm * diff / max(float(np.linalg.norm(diff)), 1e-300)
        noise = 0.0
    else:
        labels = np.zeros(1)
        weights = np.ones(1)
        means = X.mean(axis=0)[None]
        Z = X - means[0]
        sigma = Z.T @ Z / n
        del Z
        mismatch = np.zeros(1)
    lam, basis = np.linalg.eigh(sigma)
    if task == "regression":
        teacher = _least_squares(X, y, means[0], lam, basis)
        noise = float(np.sqrt(np.mean((y - X @ teacher) ** 2)))
    return MixtureStatistics(weights, labels, means, np.clip(lam, 0.0, None), basis, teacher,
                             noise, mismatch, task)


def _least_squares(X, y, mean, lam, basis) -> np.ndarray:
    """Minimum-norm ``argmin |y - X theta|`` from the normal equations ``M theta = X^T y / n``
    with ``M = Sigma + mu mu^T`` (the second moment), solved in the eigenbasis of ``M``: that of
    ``Sigma`` when the columns are centred, else one more eigendecomposition. Eigenvalues of
    ``M`` below ``max(n, d) eps lambda_max`` (``eps`` of float64) count as zero: since
    ``lambda = s^2 / n`` for the singular values ``s`` of ``X``, directions with
    ``s < sqrt(max(n, d) eps) s_max`` are dropped (a looser cutoff than ``lstsq``'s
    ``max(n, d) eps s_max``: forming ``M`` already rounds its eigenvalues at ``eps lambda_max``)."""
    n, d = X.shape
    b = X.T @ y / n
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
    f64 = lambda x: jax.device_put(np.asarray(x, dtype=np.float64))  # noqa: E731
    C = stats.weights.shape[0]
    return ProblemInstance(
        eigenvalues=f64(np.repeat(stats.eigenvalues[None], C, axis=0)),
        theta_star=f64(U.T @ stats.teacher),
        means=f64(stats.means @ U),
        weights=f64(stats.weights),
        labels=f64(stats.labels),
        theta0=f64(theta0),
        noise=as_float64(stats.noise),
        epsilon=as_float64(epsilon),
        ridge=as_float64(ridge),
        loss=loss,
        task=stats.task,
    )


def effective_dimension(eigenvalues: np.ndarray) -> float:
    """``(tr K)^2 / tr K^2``: the number of directions that carry the variance.

    It equals ``d`` for an isotropic covariance and is much smaller for a spectrum with a few
    large eigenvalues (random features share a common mode). An SGD run's relative
    fluctuations around the ``d -> inf`` limit are of order ``effective_dimension^-1/2``
    rather than ``d^-1/2`` when the two differ.
    """
    lam = np.asarray(eigenvalues, np.float64)
    return float(np.sum(lam) ** 2 / max(float(np.sum(lam**2)), 1e-300))


def _excess_kurtosis(z: np.ndarray) -> np.ndarray:
    """``E z^4 / (E z^2)^2 - 3`` per column of centred projections ``z``, shape ``(n, k)``."""
    m2 = np.mean(z**2, axis=0)
    m4 = np.mean(z**4, axis=0)
    return m4 / np.maximum(m2, 1e-300) ** 2 - 3.0


@float64
def surrogate_diagnostics(X: np.ndarray, y: np.ndarray, stats: MixtureStatistics) -> dict:
    """How far a data set is from its Gaussian-mixture surrogate.

    For a Gaussian mixture every projection of a class-centred row is Gaussian (excess
    kurtosis 0, up to the sampling error ``sqrt(24 / n)``) and every class shares the
    covariance. The numbers here say where the data depart.

    Parameters
    ----------
    X : ndarray, shape (n, d)
        The features the statistics were estimated from (original basis).
    y : ndarray, shape (n,)
        Their targets (``+/-1`` for classification).
    stats : MixtureStatistics

    Returns
    -------
    dict
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
    """
    X = np.asarray(X, np.float64)
    n, d = X.shape
    if stats.task == "classification":
        centred = X - np.where((y == 1.0)[:, None], stats.means[0], stats.means[1])
    else:
        centred = X - stats.means[0]
    k = min(TOP_DIRECTIONS, d)
    t = stats.teacher / max(float(np.linalg.norm(stats.teacher)), 1e-300)
    directions = np.concatenate([t[:, None], stats.basis[:, ::-1][:, :k]], axis=1)
    kurt = _excess_kurtosis(centred @ directions)
    out = {
        "n": int(n),
        "d": int(d),
        "kurtosis_teacher": float(kurt[0]),
        "kurtosis_top": [float(v) for v in kurt[1:]],
        "kurtosis_max_abs": float(np.max(np.abs(kurt))),
        "kurtosis_standard_error": float(np.sqrt(24.0 / n)),
        "radius": stats.radius,
        "effective_dimension": effective_dimension(stats.eigenvalues),
    }
    if stats.task == "classification":
        out["class_covariance_mismatch"] = [float(v) for v in stats.class_mismatch]
        # what Gaussian classes of one covariance give: Cov_c - Sigma = pi_c' (Cov_c - Cov_c')
        # and E|S - K|_F^2 = (tr K^2 + (tr K)^2) / n_c for a sample covariance S of n_c rows
        lam = stats.eigenvalues
        v = float(np.sum(lam**2) + np.sum(lam) ** 2)
        counts = np.array([np.sum(y == 1.0), np.sum(y == -1.0)], np.float64)
        floor = [(1 - w) * np.sqrt(v / counts[i] + v / counts[1 - i])
                 / max(float(np.sqrt(np.sum(lam**2))), 1e-300)
                 for i, w in enumerate(stats.weights)]
        out["class_covariance_mismatch_gaussian"] = [float(f) for f in floor]
    else:
        out["residual_kurtosis"] = float(_excess_kurtosis((y - X @ stats.teacher)[:, None])[0])
    return out
