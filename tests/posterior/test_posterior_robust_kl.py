"""The KL of the robust-training posterior in the Lanczos subspace: the full subspace
covariance (rotated noise with its off-diagonal part), against a dense Lyapunov solve."""

from __future__ import annotations

import numpy as np

from advdyn.posterior import gaussian_kl, gaussian_kl_diag, noise_matrix, transition_matrix
from advdyn.posterior.robust import subspace_kl


def _dense_kl(h, G, eta, m, batch, dist2, s0):
    # reference: vec(S) = (I - A kron A)^-1 vec(Q) for the 2k x 2k heavy-ball system in the
    # eigenbasis (H = diag h), then the Gaussian KL of the position block to N(0, s0 I)
    A = np.asarray(transition_matrix(np.diag(h), eta, m))
    Q = np.asarray(noise_matrix(G, eta, batch))
    n = A.shape[0]
    S = np.linalg.solve(np.eye(n * n) - np.kron(A, A), Q.reshape(-1)).reshape(n, n)
    k = len(h)
    P = 0.5 * (S[:k, :k] + S[:k, :k].T)
    return float(gaussian_kl(np.zeros(k), P, np.zeros(k), s0 * np.eye(k))) + 0.5 * dist2 / s0


def test_subspace_kl_uses_the_off_diagonal_noise():
    # strongly correlated noise in the subspace (correlations 0.9, 0.8, 0.85), distinct but
    # close curvatures (so the positions stay correlated); every direction stable
    h = np.array([2.0, 1.5, 1.0])
    sd = np.array([1.0, 0.7, 0.4])
    R = np.array([[1.0, 0.9, 0.8], [0.9, 1.0, 0.85], [0.8, 0.85, 1.0]])
    G = R * np.outer(sd, sd)
    eta, m, batch, dist2 = 0.05, 0.9, 16, 3.0
    s = np.array([1e-4, 1e-3, 1e-2])
    variance, kl = subspace_kl(h, G, eta, m, batch, dist2, s)
    dense = np.array([_dense_kl(h, G, eta, m, batch, dist2, s0) for s0 in s])
    # both are exact closed forms of the same linear system: agreement to rounding
    np.testing.assert_allclose(kl, dense, rtol=1e-10)
    # the per-direction variances are exact, but the product of their marginals (the
    # diagonal KL) misses the correlation: -1/2 ln det(correlation) > 0 nats
    diag_kl = np.array([float(gaussian_kl_diag(np.zeros(3), variance, 0.0, s0))
                        + 0.5 * dist2 / s0 for s0 in s])
    assert np.all(kl - diag_kl > 0.5), kl - diag_kl


def test_subspace_kl_skips_unstable_and_flat_directions():
    # a negative curvature and an unstable one stay at the prior (contribute 0 nats)
    h = np.array([2.0, -0.5, 500.0])
    G = np.array([[1.0, 0.5, 0.2], [0.5, 1.0, 0.3], [0.2, 0.3, 1.0]])
    eta, m, batch, dist2, s0 = 0.05, 0.9, 16, 1.0, 1e-3
    variance, kl = subspace_kl(h, G, eta, m, batch, dist2, [s0])
    assert variance[1] == 0.0 and variance[2] == 0.0
    ref = _dense_kl(h[:1], G[:1, :1], eta, m, batch, dist2, s0)
    np.testing.assert_allclose(kl, [ref], rtol=1e-10)
