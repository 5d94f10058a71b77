"""Offline classification data: scikit-learn's 8x8 digits and synthetic Gaussian mixtures.

Arrays are float32 inputs and int32 labels; every split and draw comes from an explicit seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ArrayData:
    """A train/test split.

    Attributes
    ----------
    x_train, y_train, x_test, y_test : numpy arrays
        Inputs ``(n, ...)`` (float32) and integer labels ``(n,)``.
    classes : int
        Number of classes.
    domain : tuple of float, optional
        Range of valid inputs ``(lo, hi)`` (attacks clip to it), or ``None``.
    name : str
        Short description.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: int
    domain: tuple[float, float] | None
    name: str

    @property
    def n_train(self) -> int:
        """Number of training samples."""
        return len(self.y_train)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input."""
        return tuple(self.x_train.shape[1:])


def load_digits(n_train: int | None = None, n_test: int = 500, seed: int = 0) -> ArrayData:
    """scikit-learn's 8x8 handwritten digits (1797 images), pixels scaled to ``[0, 1]``.

    Parameters
    ----------
    n_train : int, optional
        Training samples (default: all that remain after the test set).
    n_test : int
        Test samples.
    seed : int
        Seed of the stratified split (test set first, then a stratified subsample of the rest,
        so that runs with different ``n_train`` share one test set).

    Returns
    -------
    ArrayData
        Inputs of shape ``(n, 64)``, domain ``(0, 1)``.
    """
    from sklearn.datasets import load_digits as _load
    from sklearn.model_selection import train_test_split

    bunch = _load()
    x = (bunch.data / 16.0).astype(np.float32)
    y = bunch.target.astype(np.int32)
    if not 0 < n_test < len(y) - 10:
        raise ValueError(f"n_test must be in (0, {len(y) - 10}), got {n_test}")
    x_rest, x_test, y_rest, y_test = train_test_split(
        x, y, test_size=n_test, stratify=y, random_state=seed
    )
    if n_train is not None:
        if not 10 <= n_train <= len(y_rest):
            raise ValueError(f"n_train must be in [10, {len(y_rest)}], got {n_train}")
        if n_train < len(y_rest):
            x_rest, _, y_rest, _ = train_test_split(
                x_rest, y_rest, train_size=n_train, stratify=y_rest, random_state=seed + 1
            )
    return ArrayData(x_rest, y_rest, x_test, y_test, 10, (0.0, 1.0), "digits 8x8")


def gaussian_mixture(
    n_train: int,
    n_test: int,
    d: int,
    classes: int = 2,
    separation: float = 3.0,
    seed: int = 0,
) -> ArrayData:
    """Balanced mixture of isotropic Gaussians ``x = mu_c + z``, ``z ~ N(0, I_d)``.

    The class means are independent Gaussian directions scaled to ``|mu_c| = separation / 2``.

    Parameters
    ----------
    n_train, n_test : int
        Sample sizes.
    d : int
        Dimension.
    classes : int
        Number of components (labels ``0 .. classes-1``, uniform).
    separation : float
        Twice the norm of each mean.
    seed : int
        Seed of the means and samples.

    Returns
    -------
    ArrayData
        No input domain (attacks are not clipped).
    """
    rng = np.random.default_rng(seed)
    mu = rng.standard_normal((classes, d))
    mu *= separation / 2 / np.linalg.norm(mu, axis=1, keepdims=True)

    def draw(n):
        y = rng.integers(0, classes, n).astype(np.int32)
        return (mu[y] + rng.standard_normal((n, d))).astype(np.float32), y

    xtr, ytr = draw(n_train)
    xte, yte = draw(n_test)
    return ArrayData(xtr, ytr, xte, yte, classes, None, f"gaussian mixture d={d}, K={classes}")
