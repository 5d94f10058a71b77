"""SGD's posterior covariance near an optimum (POSTERIOR section 2, check 1 to 4).

Heavy-ball SGD near ``w*`` with ``x = w - w*``, minibatch ``B`` and per-sample gradient
covariance ``C``::

    v' = m v - eta (H x + xi),   x' = x + v',   Cov(xi) = C / B.

With ``z = (x, v)`` this is ``z' = A z + noise`` with

    A = [[I - eta H, m I], [-eta H, m I]],   Q = (eta^2 / B) [[C, C], [C, C]],

so the stationary covariance solves the discrete Lyapunov equation ``S = A S A^T + Q`` and
the covariance ``k`` steps after a rate change to ``eta`` is
``S_k = A^k S_0 (A^k)^T + sum_{j<k} A^j Q (A^j)^T`` ("propagation" plus "injected").

When ``H`` and ``C`` commute (eigenvalues ``h``, ``c``) the position variance is

    Var x = eta c (1 + m) / (B h (1 - m) (2 (1 + m) - eta h)),

stable iff ``0 < eta h < 2 (1 + m)``. For any ``C``, in the eigenbasis of ``H`` the equation
decouples into one equation per pair of eigen-directions
([`eigenbasis_covariance`][advdyn.posterior.covariance.eigenbasis_covariance]),
which [`stationary_covariance`][advdyn.posterior.covariance.stationary_covariance] solves by
default. This *additive* model freezes the
noise at the optimum; for least squares the exact noise is multiplicative,
``Cov(xi | x) = (K S K + tr(K S) K + sigma^2 K)`` for Gaussian inputs, and
[`least_squares_fixed_point`][advdyn.posterior.covariance.least_squares_fixed_point] solves that
linear fixed point exactly.

Everything is float64 ([`advdyn.precision.float64`][advdyn.precision.float64] on the entry points).
"""

from __future__ import annotations

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int

from advdyn import checks
from advdyn.errors import ConfigError
from advdyn.precision import float64


class UnstableRateError(ValueError):
    """The learning rate makes the linearised SGD dynamics unstable (no stationary law).

    Parameters
    ----------
    eta : float
        The learning rate.
    h_max : float
        The largest curvature (eigenvalue of ``H``).
    momentum : float
        Heavy-ball momentum ``m``.
    h_min : float
        The smallest curvature (a non-positive one has no stationary law at any rate).
    """

    def __init__(self, eta: float, h_max: float, momentum: float, h_min: float):
        self.eta = eta
        self.h_max = h_max
        self.momentum = momentum
        self.h_min = h_min
        if h_min <= 0:
            why = (f"the smallest curvature is {h_min:.4g} <= 0: no stationary covariance "
                   "(restrict to the positive-curvature subspace)")
        else:
            why = (f"eta * h_max = {eta:.4g} * {h_max:.4g} = {eta * h_max:.4g} must be below "
                   f"2 (1 + m) = {2 * (1 + momentum):.4g}; lower the rate below "
                   f"{2 * (1 + momentum) / h_max:.4g}")
        super().__init__(f"unstable learning rate eta = {eta:.4g} (largest curvature "
                         f"h_max = {h_max:.4g}, momentum m = {momentum:.4g}): {why}")


def check_stable(h: Float[ArrayLike, " p"] | np.ndarray, eta: float, momentum: float = 0.0) -> None:
    """Raise [`UnstableRateError`][advdyn.posterior.covariance.UnstableRateError] unless ``0 < eta h
    < 2 (1 + m)`` for every ``h``.

    Parameters
    ----------
    h : array, shape (p,)
        Curvatures (eigenvalues of ``H``); must be concrete (not traced).
    eta : float
        Learning rate.
    momentum : float
        Heavy-ball momentum ``m`` in ``[0, 1)``.

    Raises
    ------
    UnstableRateError
        Naming the rate and the largest curvature.
    """
    h = np.asarray(h, dtype=np.float64)
    eta = float(eta)
    m = float(momentum)
    if not 0.0 <= m < 1.0:
        raise ValueError(f"momentum must be in [0, 1), got {m}")
    h_max, h_min = float(h.max()), float(h.min())
    if eta <= 0 or h_min <= 0 or eta * h_max >= 2 * (1 + m):
        raise UnstableRateError(eta, h_max, m, h_min)


def _is_concrete(*xs) -> bool:
    return not any(isinstance(x, jax.core.Tracer) for x in xs)


def _check_stable_matrix(H, eta, momentum) -> None:
    """`check_stable` on the eigenvalues of the symmetric ``H``, skipped under tracing."""
    if _is_concrete(H, eta, momentum):
        check_stable(np.linalg.eigvalsh(np.asarray(H)), eta, momentum)


def _phase_space(initial, p: int):
    """``initial`` as a ``(2p, 2p)`` covariance of ``(x, v)``: a ``(p, p)`` one is the
    position block, with zero velocity."""
    S0 = jnp.asarray(initial, jnp.float64)
    if S0.shape == (p, p):
        S0 = jnp.zeros((2 * p, 2 * p)).at[:p, :p].set(S0)
    return S0


@float64
def transition_matrix(H: Float[ArrayLike, "p p"], eta, momentum=0.0) -> Float[Array, "2*p 2*p"]:
    """``A = [[I - eta H, m I], [-eta H, m I]]`` of heavy-ball SGD on ``z = (x, v)``.

    Parameters
    ----------
    H : array, shape (p, p)
        Hessian at the optimum.
    eta : float
        Learning rate.
    momentum : float
        Heavy-ball momentum ``m``.

    Returns
    -------
    array, shape (2p, 2p)
    """
    H = jnp.asarray(H)
    p = H.shape[0]
    eye = jnp.eye(p, dtype=H.dtype)
    top = jnp.concatenate([eye - eta * H, momentum * eye], axis=1)
    bottom = jnp.concatenate([-eta * H, momentum * eye], axis=1)
    return jnp.concatenate([top, bottom], axis=0)


@float64
def noise_matrix(C: Float[ArrayLike, "p p"], eta, batch=1) -> Float[Array, "2*p 2*p"]:
    """``Q = (eta^2 / B) [[C, C], [C, C]]``: the covariance injected per step into ``(x, v)``.

    Parameters
    ----------
    C : array, shape (p, p)
        Per-sample gradient covariance.
    eta : float
        Learning rate.
    batch : int
        Minibatch size ``B``.

    Returns
    -------
    array, shape (2p, 2p)
    """
    C = jnp.asarray(C)
    return (eta**2 / batch) * jnp.block([[C, C], [C, C]])


@float64
@functools.partial(jax.jit, static_argnames=("method", "iterations"))
def solve_discrete_lyapunov(
    A: Float[ArrayLike, "n n"],
    Q: Float[ArrayLike, "n n"],
    method: str = "auto",
    iterations: int = 64,
) -> Float[Array, "n n"]:
    """Solve ``S = A S A^T + Q`` (spectral radius of ``A`` below 1).

    Parameters
    ----------
    A, Q : arrays, shape (n, n)
        Transition and injected covariance.
    method : {"auto", "kron", "doubling"}
        ``"kron"``: the linear system ``(I - A (x) A) vec S = vec Q`` (exact, ``O(n^6)``,
        for ``n <= 40``); ``"doubling"``: Smith's doubling ``S <- S + A_j S A_j^T``,
        ``A_j <- A_j^2`` (``O(n^3)`` per doubling, error ``rho(A)^(2^iterations)``).
        ``"auto"`` picks ``kron`` for ``n <= 24``.
    iterations : int
        Doublings (64 covers any ``rho(A) < 1 - 1e-17``).

    Returns
    -------
    array, shape (n, n)
        Symmetric solution.
    """
    A = jnp.asarray(A)
    Q = jnp.asarray(Q)
    n = A.shape[0]
    if method == "auto":
        method = "kron" if n <= 24 else "doubling"
    if method == "kron":
        lhs = jnp.eye(n * n, dtype=A.dtype) - jnp.kron(A, A)
        S = jnp.linalg.solve(lhs, Q.reshape(-1)).reshape(n, n)
    elif method == "doubling":

        def body(_, carry):
            S, Aj = carry
            return S + Aj @ S @ Aj.T, Aj @ Aj

        S, _ = jax.lax.fori_loop(0, iterations, body, (Q, A))
    else:
        raise ValueError(f"method must be auto, kron or doubling, got {method!r}")
    return 0.5 * (S + S.T)


@float64
def eigenbasis_variance(h, c, eta, momentum=0.0, batch=1):
    """Stationary position variance per eigen-direction when ``H`` and ``C`` commute.

    ``Var x = eta c (1 + m) / (B h (1 - m) (2 (1 + m) - eta h))``.

    Parameters
    ----------
    h, c : arrays, shape (p,)
        Curvatures and gradient-noise variances along the common eigenvectors.
    eta : float
        Learning rate.
    momentum : float
        Heavy-ball momentum ``m``.
    batch : int
        Minibatch size ``B``.

    Returns
    -------
    array, shape (p,)
        Variances (no stability check: see
        [`check_stable`][advdyn.posterior.covariance.check_stable]).
    """
    h = jnp.asarray(h)
    m = momentum
    return eta * jnp.asarray(c) * (1 + m) / (batch * h * (1 - m) * (2 * (1 + m) - eta * h))


@float64
def eigenbasis_covariance(h, C, eta, momentum=0.0, batch=1):
    """Stationary covariance of ``(x, v)`` in the eigenbasis of ``H`` for any ``C``.

    With ``H = U diag(h) U^T`` the transition matrix is block diagonal in ``U``, so the
    Lyapunov equation decouples into one 4-unknown equation per pair ``(i, j)`` of
    eigen-directions, linear in ``c_ij = (U^T C U)_ij``. Its solution, element-wise::

        Cov(x_i, x_j) = eta c_ij (1 - m^2) / (B D_ij)
        Cov(x_i, v_j) = eta^2 c_ij (h_i - m h_j) / (B D_ij)
        Cov(v_i, v_j) = eta^2 c_ij (1 - m) (h_i + h_j) / (B D_ij)
        D_ij = (1 - m)^2 ((1 + m)(h_i + h_j) - eta h_i h_j) + eta m (h_i - h_j)^2.

    No assumption on ``C``: a repeated eigenvalue of ``H``, or a ``C`` that does not commute
    with ``H``, only makes ``c`` non-diagonal. The diagonal ``i = j`` is
    [`eigenbasis_variance`][advdyn.posterior.covariance.eigenbasis_variance].

    Parameters
    ----------
    h : array, shape (p,)
        Eigenvalues of ``H``.
    C : array, shape (p, p)
        Per-sample gradient covariance in the same eigenbasis, ``U^T C U``.
    eta, momentum, batch
        As in [`eigenbasis_variance`][advdyn.posterior.covariance.eigenbasis_variance].

    Returns
    -------
    array, shape (2p, 2p)
        ``[[Cov(x, x), Cov(x, v)], [Cov(v, x), Cov(v, v)]]`` in the eigenbasis (no stability
        check: see [`check_stable`][advdyn.posterior.covariance.check_stable]).
    """
    h = jnp.asarray(h)
    hi, hj = h[:, None], h[None, :]
    m = momentum
    D = (1 - m) ** 2 * ((1 + m) * (hi + hj) - eta * hi * hj) + eta * m * (hi - hj) ** 2
    scaled = jnp.asarray(C) / (batch * D)
    xx = eta * (1 - m**2) * scaled
    xv = eta**2 * (hi - m * hj) * scaled
    vv = eta**2 * (1 - m) * (hi + hj) * scaled
    return jnp.block([[xx, xv], [xv.T, vv]])


class StationaryCovariance(eqx.Module):
    """Stationary law of linearised heavy-ball SGD.

    Attributes
    ----------
    position : array, shape (p, p)
        ``Cov x`` (the posterior covariance of the weights).
    full : array, shape (2p, 2p)
        Covariance of ``(x, v)``.
    method : str
        ``"eigen"``, ``"kron"`` or ``"doubling"``.
    """

    position: Float[Array, "p p"]
    full: Float[Array, "n n"]
    method: str = eqx.field(static=True)


@float64
def stationary_covariance(
    H: Float[ArrayLike, "p p"],
    C: Float[ArrayLike, "p p"],
    eta: float,
    momentum: float = 0.0,
    batch: int = 1,
    method: str = "auto",
) -> StationaryCovariance:
    """Stationary covariance of heavy-ball minibatch SGD near an optimum (additive noise).

    ``H`` and ``C`` enter through their symmetric parts ``(H + H^T) / 2`` and
    ``(C + C^T) / 2`` in every method.

    Parameters
    ----------
    H : array, shape (p, p)
        Hessian (symmetric positive definite).
    C : array, shape (p, p)
        Per-sample gradient covariance at the optimum.
    eta : float
        Learning rate.
    momentum : float
        Heavy-ball momentum ``m`` in ``[0, 1)``.
    batch : int
        Minibatch size ``B``.
    method : {"auto", "eigen", "kron", "doubling"}
        ``"eigen"``: diagonalise ``H``, rotate ``C`` into its eigenbasis and solve the
        decoupled pair equations there
        ([`eigenbasis_covariance`][advdyn.posterior.covariance.eigenbasis_covariance]; exact for any
        ``C``,
        ``O(p^3)``); ``"kron"``, ``"doubling"``: the dense Lyapunov solve of
        [`solve_discrete_lyapunov`][advdyn.posterior.covariance.solve_discrete_lyapunov] on ``(x,
        v)``. ``"auto"`` is ``"eigen"``.

    Returns
    -------
    StationaryCovariance

    Raises
    ------
    UnstableRateError
        If some ``eta h`` lies outside ``(0, 2 (1 + m))`` (checked when inputs are concrete).
    ConfigError
        If ``H`` is not square, ``C`` not of its shape, ``eta`` not a positive number or
        ``batch`` not an integer ``>= 1`` (the last two when concrete).
    """
    H = jnp.asarray(H)
    C = jnp.asarray(C)
    if H.ndim != 2 or H.shape[0] != H.shape[1]:
        raise ConfigError("H", f"must be a square matrix, got shape {H.shape}")
    if C.shape != H.shape:
        raise ConfigError("C", f"must have the shape of H {H.shape}, got {C.shape}")
    if _is_concrete(eta, batch):
        checks.positive(eta, "eta")
        checks.integer(batch, "batch", 1)
    H = 0.5 * (H + H.T)
    C = 0.5 * (C + C.T)
    h, U = jnp.linalg.eigh(H)
    if _is_concrete(h, eta, momentum):
        check_stable(np.asarray(h), eta, momentum)
    if method == "auto":
        method = "eigen"
    if method == "eigen":
        G = eigenbasis_covariance(h, U.T @ C @ U, eta, momentum, batch)
        V = jax.scipy.linalg.block_diag(U, U)
        S = V @ G @ V.T
    elif method in ("kron", "doubling"):
        A = transition_matrix(H, eta, momentum)
        Q = noise_matrix(C, eta, batch)
        S = solve_discrete_lyapunov(A, Q, method)
    else:
        raise ValueError(f"method must be auto, eigen, kron or doubling, got {method!r}")
    S = 0.5 * (S + S.T)
    p = H.shape[0]
    return StationaryCovariance(S[:p, :p], S, method)


class Transient(eqx.Module):
    """Covariance after a learning-rate change, split into its two parts.

    Attributes
    ----------
    steps : int array, shape (K,)
        Steps ``k`` since the change.
    propagation : array, shape (K, p, p)
        ``[A^k S_0 (A^k)^T]_xx``: the old covariance carried forward.
    injected : array, shape (K, p, p)
        ``[sum_{j<k} A^j Q (A^j)^T]_xx``: gradient noise injected at the new rate.
    total : array, shape (K, p, p)
        Their sum, the position covariance ``k`` steps after the change.
    stationary : array, shape (p, p)
        The limit ``k -> infinity`` at the new rate.
    """

    steps: Int[Array, " K"]
    propagation: Float[Array, "K p p"]
    injected: Float[Array, "K p p"]
    total: Float[Array, "K p p"]
    stationary: Float[Array, "p p"]


def _mpow(A, k):
    # A^k for a traced integer k by binary exponentiation (32 bits)
    def body(i, carry):
        result, base = carry
        bit = (k >> i) & 1
        result = jnp.where(bit == 1, result @ base, result)
        return result, base @ base

    eye = jnp.eye(A.shape[0], dtype=A.dtype)
    result, _ = jax.lax.fori_loop(0, 32, body, (eye, A))
    return result


@float64
def transient_covariance(
    H: Float[ArrayLike, "p p"],
    C: Float[ArrayLike, "p p"],
    eta: float,
    initial: Float[ArrayLike, "n n"],
    steps,
    momentum: float = 0.0,
    batch: int = 1,
) -> Transient:
    """Covariance ``k`` steps after switching to rate ``eta`` (additive noise model).

    ``S_k = A^k S_0 (A^k)^T + (S_inf - A^k S_inf (A^k)^T)``: the second part equals
    ``sum_{j<k} A^j Q (A^j)^T``.

    Parameters
    ----------
    H, C : arrays, shape (p, p)
        Hessian and per-sample gradient covariance.
    eta : float
        The new learning rate.
    initial : array, shape (2p, 2p) or (p, p)
        Covariance of ``(x, v)`` at the change (e.g. ``stationary_covariance(...).full`` at
        the old rate); a ``(p, p)`` matrix is taken as the position block with zero velocity.
    steps : array of int, shape (K,)
        Steps after the change.
    momentum : float
        Heavy-ball momentum.
    batch : int
        Minibatch size.

    Returns
    -------
    Transient
    """
    H = jnp.asarray(H, jnp.float64)
    C = jnp.asarray(C, jnp.float64)
    p = H.shape[0]
    S0 = _phase_space(initial, p)
    A = transition_matrix(H, eta, momentum)
    Q = noise_matrix(C, eta, batch)
    _check_stable_matrix(H, eta, momentum)
    S_inf = solve_discrete_lyapunov(A, Q)
    ks = jnp.asarray(steps, jnp.int32)
    Ak = jax.vmap(lambda k: _mpow(A, k))(ks)
    prop = jnp.einsum("kij,jl,kml->kim", Ak, S0, Ak)
    inj = S_inf[None] - jnp.einsum("kij,jl,kml->kim", Ak, S_inf, Ak)
    x = slice(0, p)
    return Transient(
        jnp.asarray(steps), prop[:, x, x], inj[:, x, x], (prop + inj)[:, x, x], S_inf[x, x]
    )


def _ls_noise(K, S_xx, sigma):
    """Exact gradient-noise covariance of least squares with Gaussian inputs at ``Cov x``."""
    return K @ S_xx @ K + jnp.trace(K @ S_xx) * K + sigma**2 * K


def _ls_map(K, sigma, eta, momentum, batch):
    """The affine one-step map of the full ``(x, v)`` covariance with multiplicative noise."""
    A = transition_matrix(K, eta, momentum)
    p = K.shape[0]

    def step(S):
        N = _ls_noise(K, S[:p, :p], 0.0)
        return A @ S @ A.T + noise_matrix(N, eta, batch)

    Q0 = noise_matrix(sigma**2 * K, eta, batch)
    return step, Q0


@float64
def least_squares_fixed_point(
    K: Float[ArrayLike, "p p"], sigma: float, eta: float, momentum: float = 0.0, batch: int = 1
) -> StationaryCovariance:
    """Exact stationary covariance of SGD on clean least squares (multiplicative noise).

    Inputs ``x ~ N(0, K)``, labels ``y = <w*, x> + sigma z``. The per-sample gradient noise
    at ``Cov x = S`` is ``K S K + tr(K S) K + sigma^2 K`` (Isserlis), so the stationary
    covariance solves the *linear* fixed point (``m = 0``, ``B = 1``)::

        S = (I - eta K) S (I - eta K) + eta^2 (K S K + tr(K S) K + sigma^2 K),

    generalised here to momentum and minibatches; solved as one linear system in
    ``vec S`` (exact; ``(2p)^2`` unknowns, so for ``p`` up to about 20). The additive
    formula ([`stationary_covariance`][advdyn.posterior.covariance.stationary_covariance] with ``C =
    sigma^2 K``) is its leading order in
    ``eta``.

    Parameters
    ----------
    K : array, shape (p, p)
        Input covariance (the Hessian).
    sigma : float
        Label-noise standard deviation.
    eta : float
        Learning rate.
    momentum : float
        Heavy-ball momentum.
    batch : int
        Minibatch size.

    Returns
    -------
    StationaryCovariance
        ``method = "multiplicative"``.

    Raises
    ------
    UnstableRateError
        If the additive dynamics are already unstable.
    ValueError
        If the multiplicative noise makes the second moments diverge (``eta`` too large).
    """
    K = jnp.asarray(K, jnp.float64)
    p = K.shape[0]
    _check_stable_matrix(K, eta, momentum)
    step, Q0 = _ls_map(K, sigma, eta, momentum, batch)
    n = 2 * p
    L = jax.jacfwd(lambda s: step(s.reshape(n, n)).reshape(-1))(jnp.zeros(n * n))
    if _is_concrete(L):
        rho = float(np.max(np.abs(np.linalg.eigvals(np.asarray(L)))))
        if rho >= 1.0:
            raise ValueError(
                f"the second moments of SGD diverge at eta = {eta:.4g} (multiplicative noise, "
                f"spectral radius {rho:.4g} >= 1); lower the rate"
            )
    S = jnp.linalg.solve(jnp.eye(n * n) - L, Q0.reshape(-1)).reshape(n, n)
    S = 0.5 * (S + S.T)
    return StationaryCovariance(S[:p, :p], S, "multiplicative")


@float64
def least_squares_transient(
    K: Float[ArrayLike, "p p"],
    sigma: float,
    eta: float,
    initial: Float[ArrayLike, "n n"],
    steps,
    momentum: float = 0.0,
    batch: int = 1,
) -> Transient:
    """Exact covariance of SGD on clean least squares ``k`` steps after a rate change.

    Iterates the exact (multiplicative-noise) one-step map of the ``(x, v)`` covariance
    from ``initial``. ``propagation`` is the homogeneous part (the map without label noise
    applied to ``initial``, which still carries multiplicative noise fed by the old
    covariance), ``injected`` the part driven by the label noise from zero.

    Parameters
    ----------
    K : array, shape (p, p)
        Input covariance.
    sigma : float
        Label-noise standard deviation.
    eta : float
        The new rate.
    initial : array, shape (2p, 2p) or (p, p)
        Covariance at the change (position block only: zero velocity).
    steps : array of int, shape (K,)
        Steps after the change (at most a few thousand: the map is iterated).
    momentum : float
        Heavy-ball momentum.
    batch : int
        Minibatch size.

    Returns
    -------
    Transient
    """
    K = jnp.asarray(K, jnp.float64)
    p = K.shape[0]
    S0 = _phase_space(initial, p)
    step, Q0 = _ls_map(K, sigma, eta, momentum, batch)
    steps_np = np.asarray(steps, dtype=np.int64)
    k_max = int(steps_np.max()) if steps_np.size else 0

    def body(carry, _):
        prop, inj = carry
        return (step(prop), step(inj) + Q0), (prop[:p, :p], inj[:p, :p])

    _, (props, injs) = jax.lax.scan(body, (S0, jnp.zeros_like(S0)), None, length=k_max + 1)
    props = props[steps_np]
    injs = injs[steps_np]
    fixed = least_squares_fixed_point(K, sigma, eta, momentum, batch).position
    return Transient(jnp.asarray(steps_np), props, injs, props + injs, fixed)


@float64
def curvature_trace(H: Float[ArrayLike, "p p"], Sigma: Float[ArrayLike, "p p"]) -> Float[Array, ""]:
    """``tr(H Sigma)``: twice the curvature term of the expected quadratic loss.

    Parameters
    ----------
    H, Sigma : arrays, shape (p, p)

    Returns
    -------
    scalar
    """
    return jnp.sum(jnp.asarray(H) * jnp.asarray(Sigma).T)


@float64
def leading_curvature_trace(trace_C, eta, momentum=0.0, batch=1):
    """Leading order in ``eta`` of ``tr(H S_inf) = eta tr(C) / (2 B (1 - m))``.

    Independent of ``H``: the curvature term barely sees the Hessian at small rates.

    Parameters
    ----------
    trace_C : float
        ``tr(C)``.
    eta : float
        Learning rate.
    momentum : float
        Heavy-ball momentum.
    batch : int
        Minibatch size.

    Returns
    -------
    float
    """
    return eta * trace_C / (2 * batch * (1 - momentum))
