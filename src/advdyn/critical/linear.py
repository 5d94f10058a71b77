"""Linear-regression theory of the paper's section 4 (Theorem 1) in float64.

Model: ``y = <theta0, x> + noise``, ``x ~ N(0, I_d)``, ``noise ~ N(0, sigma^2)``,
``|theta0| = 1``. For the square loss the inner maximisation of adversarial training has a
closed form: the worst residual under ``|delta| <= eps`` is ``|r| + eps |theta|_*`` with
``r = <theta, x> - y`` and the dual norm ``|theta|_2`` (l2 attack) or ``|theta|_1``
(l-infinity attack), so the empirical adversarial risk is

    R_n(theta, eps) = mean_i (|r_i| + eps |theta|_*)^2 .

Full-batch gradient descent from zero runs on it with the explicit (sub)gradient
``2 mean_i (|r_i| + eps |theta|_*) (sign(r_i) x_i + eps d|theta|_*)``, where
``d|theta|_2 = theta/|theta|`` and ``d|theta|_1 = sign(theta)`` (0 at ``theta = 0``).

Studies (each returns an ``xarray.Dataset``):

* `trajectory_study`: relative difference ``|theta_t(eps) - theta_t(0)| / |theta_t(0)|``
  on the same data (paper's figure 2, left), against ``log(eps/eps*)``, ``eps* = sqrt(d/n)``.
* `pvalue_study`: p-values that the adversarially trained estimator and its training
  loss come from the distribution of clean training, estimated from 300 clean repetitions
  (figures 2 right and 3). Tests used:

  - estimator: Hotelling's two-sample-type prediction test. With the clean mean ``m`` and
    sample covariance ``S`` of ``M`` clean estimators, a new draw ``theta`` from the same
    Gaussian law gives ``T2 = M/(M+1) (theta - m)' S^-1 (theta - m)`` and
    ``(M - d) / (d (M - 1)) T2 ~ F(d, M - d)``; the p-value is the F upper tail (needs
    ``d < M``).
  - training loss: the prediction t-test ``t = (L - mean) / (s sqrt(1 + 1/M))`` against
    Student's t with ``M - 1`` degrees of freedom, two-sided.

  Both assume the clean quantities are Gaussian (the paper's "asymptotic distribution").
* `critical_study`: converged estimators ``theta(eps)`` and ``theta(0)`` on the same
  data; the eps at which ``|theta(eps) - theta(0)| / |Std theta(0)|_F`` crosses 1
  (Theorem 1: it scales like ``sqrt(d/n)``), with ``|Std theta(0)|_F = sigma sqrt(d/(n-d-1))``
  (Lemma 1, exact for least squares with Gaussian design, ``d < n - 1``); and the surrogate
  eps* of the loss criterion ``sup{eps : R_n(theta(eps), eps) <= R(theta(0), 0)}`` with the
  exact clean test risk ``R(theta, 0) = sigma^2 + |theta - theta0|^2``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr
from scipy import stats

from advdyn.critical.estimators import crossing
from advdyn.precision import float64


@float64
def teacher(d: int, seed: int = 0) -> jax.Array:
    """Unit-norm teacher ``theta0`` (a uniform direction drawn from ``seed``)."""
    g = jax.random.normal(jax.random.key(seed), (d,), jnp.float64)
    return g / jnp.linalg.norm(g)


@float64
def draw_data(key, theta0: jax.Array, n: int, sigma: float):
    """Draw ``n`` samples ``x ~ N(0, I)``, ``y = <theta0, x> + sigma z`` (float64)."""
    kx, ke = jax.random.split(key)
    x = jax.random.normal(kx, (n, theta0.shape[0]), jnp.float64)
    return x, x @ theta0 + sigma * jax.random.normal(ke, (n,), jnp.float64)


def _dual(theta, norm):
    return jnp.linalg.norm(theta) if norm == "l2" else jnp.sum(jnp.abs(theta))


@float64
def adversarial_risk(theta, x, y, eps, norm: str = "l2"):
    """Empirical adversarial square loss ``mean (|r| + eps |theta|_*)^2`` (closed-form max).

    Parameters
    ----------
    theta : array, shape (d,)
        Weights.
    x : array, shape (n, d)
        Inputs.
    y : array, shape (n,)
        Targets.
    eps : float
        Attack radius.
    norm : {"l2", "linf"}
        Attack norm (dual norm ``|.|_2`` or ``|.|_1``).

    Returns
    -------
    scalar array
    """
    r = x @ theta - y
    return jnp.mean((jnp.abs(r) + eps * _dual(theta, norm)) ** 2)


@float64
def adversarial_gradient(theta, x, y, eps, norm: str = "l2"):
    """Subgradient of `adversarial_risk` (0 used for the kinks at ``theta = 0``)."""
    r = x @ theta - y
    if norm == "l2":
        nrm = jnp.linalg.norm(theta)
        ddual = jnp.where(nrm > 0, theta / jnp.where(nrm > 0, nrm, 1.0), 0.0)
    else:
        nrm = jnp.sum(jnp.abs(theta))
        ddual = jnp.sign(theta)
    w = jnp.abs(r) + eps * nrm
    return 2.0 * (x.T @ (w * jnp.sign(r)) / x.shape[0] + eps * jnp.mean(w) * ddual)


@float64
def gradient_descent(x, y, eps, norm: str, lr: float | jax.Array, steps: int,
                     record: bool = True):
    """Full-batch gradient descent on the adversarial risk from ``theta = 0``.

    Parameters
    ----------
    x, y : arrays
        Data ``(n, d)`` and ``(n,)``.
    eps : float
        Attack radius (0: clean least squares).
    norm : {"l2", "linf"}
        Attack norm.
    lr : float
        Step size.
    steps : int
        Number of steps ``T``.
    record : bool
        Return the whole trajectory ``(T + 1, d)`` instead of ``theta_T``.

    Returns
    -------
    array
    """
    theta0 = jnp.zeros(x.shape[1], x.dtype)

    def step(theta, _):
        new = theta - lr * adversarial_gradient(theta, x, y, eps, norm)
        return new, (new if record else None)

    last, traj = jax.lax.scan(step, theta0, None, length=steps)
    return jnp.concatenate([theta0[None], traj]) if record else last


def default_lr(d: int, n: int) -> float:
    """Step size ``0.5 / (1 + sqrt(d/n))^2``: half the inverse of the largest eigenvalue of
    ``X'X/n`` (Marchenko-Pastur edge), stable for both ``d < n`` and ``d > n``."""
    return 0.5 / (1.0 + np.sqrt(d / n)) ** 2


def common_lr(d: int, n: int, eps_max: float) -> float:
    """One step size for a whole eps range: ``0.5 / ((1 + sqrt(d/n))^2 + 2 eps_max^2)``.

    The adversarial risk adds curvature of order ``eps^2`` to ``X'X/n``; sharing the rate
    keeps clean and adversarial trajectories comparable step by step.
    """
    return 0.5 / ((1.0 + np.sqrt(d / n)) ** 2 + 2.0 * eps_max**2)


def _runs(d, n, eps, reps, steps, sigma, norm, seed, record, stream=1, lr=None):
    """theta for every eps (axis 0) and repetition (axis 1), the final adversarial training
    risks, and the teacher. The teacher depends on ``seed`` only, the datasets on
    ``(seed, stream)``; the step size is ``lr`` or ``default_lr(d, n) / (1 + eps)^2``."""
    th0 = teacher(d, seed)
    keys = jax.random.split(jax.random.fold_in(jax.random.key(seed), stream), reps)

    @jax.jit
    def run(eps_arr):
        def one_rep(key):
            x, y = draw_data(key, th0, n, sigma)
            def gd(e):
                rate = default_lr(d, n) / (1.0 + e) ** 2 if lr is None else lr
                return gradient_descent(x, y, e, norm, rate, steps, record)

            out = jax.vmap(gd)(eps_arr)
            risks = jax.vmap(
                lambda e, t: adversarial_risk(t if not record else t[-1], x, y, e, norm)
            )(eps_arr, out)
            return out, risks

        out, risks = jax.lax.map(one_rep, keys)
        return jnp.swapaxes(out, 0, 1), jnp.swapaxes(risks, 0, 1)

    out, risks = run(jnp.asarray(eps, jnp.float64))
    return np.asarray(out), np.asarray(risks), np.asarray(th0)


def _check_finite(a, where):
    if not np.all(np.isfinite(a)):
        raise FloatingPointError(f"{where}: gradient descent diverged (lower the step size)")


@float64
def trajectory_study(
    d: int, n: int, log_ratio, reps: int = 20, steps: int = 100, sigma: float = 1.0,
    norm: str = "l2", seed: int = 0,
) -> xr.Dataset:
    """Relative trajectory difference ``|theta_t(eps) - theta_t(0)| / |theta_t(0)|``.

    Parameters
    ----------
    d, n : int
        Dimension and sample size.
    log_ratio : array
        Values of ``log(eps/eps*)``, ``eps* = sqrt(d/n)``.
    reps : int
        Independent datasets (the difference is taken on the same data, then averaged).
    steps : int
        Gradient-descent steps ``T``.
    sigma : float
        Label-noise standard deviation.
    norm : {"l2", "linf"}
        Attack norm.
    seed : int
        Seed of the teacher and data.

    Notes
    -----
    Every run uses the step size `common_lr` of the largest eps.

    Returns
    -------
    xarray.Dataset
        ``rel_diff(log_ratio, step)`` (mean over repetitions), attributes ``d``, ``n``,
        ``eps_star``.
    """
    log_ratio = np.asarray(log_ratio, np.float64)
    eps_star = np.sqrt(d / n)
    eps = np.concatenate([[0.0], eps_star * np.exp(log_ratio)])
    lr = common_lr(d, n, float(eps.max()))
    traj, _, _ = _runs(d, n, eps, reps, steps, sigma, norm, seed, True, 1, lr)
    _check_finite(traj, "trajectory_study")
    clean = traj[0]  # (reps, T+1, d)
    diff = np.linalg.norm(traj[1:] - clean[None], axis=-1)
    rel = diff[:, :, 1:] / np.linalg.norm(clean[None, :, 1:], axis=-1)
    return xr.Dataset(
        {"rel_diff": (("log_ratio", "step"), rel.mean(axis=1))},
        coords={"log_ratio": log_ratio, "step": np.arange(1, steps + 1)},
        attrs={"d": d, "n": n, "eps_star": eps_star, "norm": norm, "sigma": sigma},
    )


def hotelling_pvalue(samples: np.ndarray, clean: np.ndarray) -> np.ndarray:
    """p-values that each row of ``samples`` is a new draw from the law of ``clean``.

    Parameters
    ----------
    samples : array, shape (k, d)
        Estimators to test.
    clean : array, shape (M, d)
        Reference draws (``M > d``).

    Returns
    -------
    array, shape (k,)
        Upper tail of ``F(d, M - d)`` at ``(M - d)/(d (M - 1)) * M/(M + 1) * D2``, ``D2`` the
        squared Mahalanobis distance to the clean mean under the clean sample covariance.
    """
    m, d = clean.shape
    if m <= d:
        raise ValueError(f"the Hotelling test needs more clean draws than dimensions ({m} <= {d})")
    mean = clean.mean(axis=0)
    cov = np.cov(clean, rowvar=False).reshape(d, d)
    dev = samples - mean
    d2 = np.einsum("ki,ki->k", dev, np.linalg.solve(cov, dev.T).T)
    f = (m - d) / (d * (m - 1)) * m / (m + 1) * d2
    return stats.f.sf(f, d, m - d)


def t_pvalue(values: np.ndarray, clean: np.ndarray) -> np.ndarray:
    """Two-sided prediction t-test p-values that ``values`` come from the law of ``clean``.

    Parameters
    ----------
    values : array, shape (k,)
        Values to test.
    clean : array, shape (M,)
        Reference draws.

    Returns
    -------
    array, shape (k,)
        ``2 P(|t_{M-1}| > |v - mean| / (s sqrt(1 + 1/M)))``.
    """
    m = len(clean)
    t = (values - clean.mean()) / (clean.std(ddof=1) * np.sqrt(1 + 1 / m))
    return 2 * stats.t.sf(np.abs(t), m - 1)


@float64
def pvalue_study(
    d: int, n: int, log_ratio, clean_reps: int = 300, adv_reps: int = 50, steps: int = 100,
    sigma: float = 1.0, norm: str = "l2", seed: int = 0,
) -> xr.Dataset:
    """p-values of adversarial training against the distribution of clean training.

    ``clean_reps`` clean runs on independent datasets give the reference distribution of
    ``theta_T(0)`` and of its training loss ``R_n(theta_T(0), 0)``; ``adv_reps`` adversarial
    runs on further independent datasets are tested with `hotelling_pvalue` (estimator)
    and `t_pvalue` (training loss ``R_n(theta_T(eps), eps)``).
    Every run (clean and adversarial) uses the same ``T`` and the step size
    `common_lr` of the largest eps.

    Parameters
    ----------
    d, n : int
        Dimension (``d < clean_reps``) and sample size.
    log_ratio : array
        Values of ``log(eps/eps*)``, ``eps* = sqrt(d/n)``.
    clean_reps, adv_reps : int
        Repetitions.
    steps : int
        Gradient-descent steps ``T``.
    sigma : float
        Label-noise standard deviation.
    norm : {"l2", "linf"}
        Attack norm.
    seed : int
        Seed (the adversarial datasets use a different stream from the clean ones).

    Returns
    -------
    xarray.Dataset
        ``p_theta`` and ``p_loss`` (mean over adversarial repetitions) and their medians
        ``p_theta_median``, ``p_loss_median``, on ``log_ratio``; attributes ``d``, ``n``.
    """
    log_ratio = np.asarray(log_ratio, np.float64)
    eps = np.sqrt(d / n) * np.exp(log_ratio)
    lr = common_lr(d, n, float(eps.max()))  # clean and adversarial runs: same T, same rate
    th_c, loss_c, _ = _runs(d, n, [0.0], clean_reps, steps, sigma, norm, seed, False, 1, lr)
    th_a, loss_a, _ = _runs(d, n, eps, adv_reps, steps, sigma, norm, seed, False, 2, lr)
    _check_finite(th_a, "pvalue_study")
    p_theta = np.stack([hotelling_pvalue(th_a[i], th_c[0]) for i in range(len(eps))])
    p_loss = np.stack([t_pvalue(loss_a[i], loss_c[0]) for i in range(len(eps))])
    return xr.Dataset(
        {
            "p_theta": ("log_ratio", p_theta.mean(axis=1)),
            "p_loss": ("log_ratio", p_loss.mean(axis=1)),
            "p_theta_median": ("log_ratio", np.median(p_theta, axis=1)),
            "p_loss_median": ("log_ratio", np.median(p_loss, axis=1)),
        },
        coords={"log_ratio": log_ratio},
        attrs={"d": d, "n": n, "eps_star": np.sqrt(d / n), "clean_reps": clean_reps,
               "adv_reps": adv_reps, "steps": steps, "norm": norm},
    )


@float64
def critical_study(
    pairs, eps_grid=None, reps: int = 10, steps: int = 1500, sigma: float = 1.0,
    norm: str = "l2", seed: int = 0,
) -> xr.Dataset:
    """Where the converged adversarial estimator leaves the clean one, for several ``(d, n)``.

    For each pair, ``reps`` datasets; on each, gradient descent (``steps`` steps from zero,
    step ``0.5 / ((1 + sqrt(d/n))^2 (1 + eps)^2)``) gives ``theta(eps)`` for every eps of the
    grid and ``theta(0)`` on the same data.

    Parameters
    ----------
    pairs : sequence of (int, int)
        ``(d, n)`` with ``d < n - 1``.
    eps_grid : array, optional
        Common grid of radii (default ``geomspace(1e-4, 1, 49)``).
    reps : int
        Datasets per pair.
    steps : int
        Gradient-descent steps (enough to converge; see the tests).
    sigma : float
        Label noise.
    norm : {"l2", "linf"}
        Attack norm.
    seed : int
        Seed.

    Returns
    -------
    xarray.Dataset
        On ``pair`` and ``eps``: ``std_diff`` (mean over datasets of
        ``|theta(eps) - theta(0)| / (sigma sqrt(d/(n-d-1)))``), ``adv_train_risk`` (mean
        ``R_n(theta(eps), eps)``); on ``pair``: ``d``, ``n``, ``clean_test_risk`` (mean
        ``sigma^2 + |theta(0) - theta0|^2``), ``eps_cross`` (the eps where ``std_diff`` crosses
        1, linear interpolation) and ``eps_surrogate`` (``sup{eps : adv_train_risk <=
        clean_test_risk}``): the *pooled* estimators (crossings of curves averaged over
        datasets). Per dataset (``pair``, ``rep``): ``eps_cross_each``,
        ``eps_surrogate_each`` (``nan`` where the dataset's training risk already exceeds its
        test risk, i.e. a negative gap) and ``gap_each``; their finite means
        ``eps_cross_per_dataset``, ``eps_surrogate_per_dataset``;
        ``eps_surrogate_first_order`` (mean gap over ``2 |theta(0)| sqrt(2/pi) sqrt(R_n)``)
        and ``negative_gap_fraction``.
    """
    eps_grid = np.geomspace(1e-4, 1.0, 49) if eps_grid is None else np.asarray(eps_grid)
    eps = np.concatenate([[0.0], eps_grid])
    std_diff, adv_risk, clean_test, cross, surrogate = [], [], [], [], []
    cross_each, sur_each, gap_each, first = [], [], [], []
    for d, n in pairs:
        if not d < n - 1:
            raise ValueError(f"critical_study needs d < n - 1, got (d, n) = ({d}, {n})")
        th, risk, th0 = _runs(d, n, eps, reps, steps, sigma, norm, seed, False, 1)
        _check_finite(th, "critical_study")
        std = sigma * np.sqrt(d / (n - d - 1))
        sd_each = np.linalg.norm(th[1:] - th[:1], axis=-1) / std  # (eps, rep)
        sd = sd_each.mean(axis=1)
        ar = risk[1:].mean(axis=1)
        test_each = sigma**2 + np.sum((th[0] - th0) ** 2, axis=-1)  # (rep,)
        ct = float(test_each.mean())
        std_diff.append(sd)
        adv_risk.append(ar)
        clean_test.append(ct)
        cross.append(crossing(eps_grid, sd, 1.0))
        surrogate.append(crossing(eps, np.concatenate([[risk[0].mean()], ar]), ct))
        cross_each.append([crossing(eps_grid, sd_each[:, k], 1.0) for k in range(reps)])
        sur_each.append([crossing(eps, risk[:, k], test_each[k]) for k in range(reps)])
        gap_each.append(test_each - risk[0])
        # first order (envelope theorem): dR_n(theta(eps), eps)/deps = 2 |theta| mean|r| at
        # eps = 0, so the pooled crossing is near Delta / (2 |theta(0)| E|r|), E|r| the clean
        # training residuals' mean absolute value (about sigma sqrt(2/pi))
        slope0 = 2 * np.linalg.norm(th[0], axis=-1) * np.sqrt(2 / np.pi) * np.sqrt(risk[0])
        first.append(float((test_each - risk[0]).mean() / slope0.mean()))
    pairs = np.asarray(pairs)
    cross_each_a = np.asarray(cross_each)
    sur_each_a = np.asarray(sur_each)

    def finite_mean(a):
        return np.asarray([np.mean(r[np.isfinite(r)]) if np.any(np.isfinite(r)) else np.nan
                           for r in a])

    return xr.Dataset(
        {
            "std_diff": (("pair", "eps"), np.asarray(std_diff)),
            "adv_train_risk": (("pair", "eps"), np.asarray(adv_risk)),
            "clean_test_risk": ("pair", np.asarray(clean_test)),
            "eps_cross": ("pair", np.asarray(cross)),
            "eps_surrogate": ("pair", np.asarray(surrogate)),
            "eps_cross_each": (("pair", "rep"), cross_each_a),
            "eps_surrogate_each": (("pair", "rep"), sur_each_a),
            "gap_each": (("pair", "rep"), np.asarray(gap_each)),
            "eps_cross_per_dataset": ("pair", finite_mean(cross_each_a)),
            "eps_surrogate_per_dataset": ("pair", finite_mean(sur_each_a)),
            "eps_surrogate_first_order": ("pair", np.asarray(first)),
            "negative_gap_fraction": ("pair", (np.asarray(gap_each) < 0).mean(axis=1)),
            "d": ("pair", pairs[:, 0]),
            "n": ("pair", pairs[:, 1]),
        },
        coords={"pair": np.arange(len(pairs)), "eps": eps_grid, "rep": np.arange(reps)},
        attrs={"reps": reps, "steps": steps, "sigma": sigma, "norm": norm, "seed": seed},
    )


def loglog_slope(ratio, values) -> float:
    """Least-squares slope of ``log(values)`` against ``log(ratio)``."""
    return float(np.polyfit(np.log(ratio), np.log(values), 1)[0])
