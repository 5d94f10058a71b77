"""eps* made exact: the critical radius of *streaming* adversarial least squares from the
core's deterministic-equivalent ODE ([`advdyn.theory.solve_ode`][advdyn.theory.solve_ode]), as a
function of the
number of samples ``n = t d``, next to finite-``d`` streaming SGD
([`advdyn.simulate.simulate_sgd`][advdyn.simulate.simulate_sgd]).

Model (THEORY): ``x ~ N(0, I_d)``, ``y = <theta*, x> + sigma z``, ``|theta*| = 1``, one fresh
sample per step, ``theta <- theta - (gamma_t/d) grad`` of the l2-adversarial square loss
``(|<theta, x> - y| + eps |theta|)^2 / 2``, from ``theta_0 = 0``. ``t = k/d`` is the number
of samples per dimension, ``n = t d``.

In streaming every sample is fresh, so the adversarial *training* loss of the paper's
definition is the population adversarial risk of the current iterate. The critical radius at
time ``t`` is

    eps*(t) = sup{eps : R_eps(theta_eps(t)) <= R_0(theta_0(t))},

with ``theta_eps(t)`` the iterate trained at radius ``eps``: the adversarial risk of the
adversarially trained iterate against the clean risk of the clean one (the ODE gives both
exactly as ``d -> inf``). Since the risk is ``((|u| + a)^2)/2`` averaged over the Gaussian
residual ``u``, with ``a = eps |theta|``, the adversarial risk exceeds the clean one by
``a E|u| + a^2/2``: to first order eps* is set by how much *more* excess risk the clean
iterate still has than the adversarial one, divided by ``|theta| E|u|``.

**Result (ours): by the paper's definition streaming eps* is 0 for every n.** The
adversarial iterate's adversarial risk exceeds the clean iterate's clean risk at every
``eps > 0`` and every ``t`` (ODE and SGD agree): with fresh samples there is no gap between a
training and a test loss for adversarial training to use up, and the clean iterate does not
have more excess risk than the adversarial one. The paper's criterion lives entirely on the
finite-sample generalisation gap. To obtain an exact *scaling* we therefore also compute the
gap-matched analogue (``margin = 1``):

    eps*_m(t) = sup{eps : R_eps(theta_eps(t)) <= R_0(theta_0(t)) + m E_0(t)},

``E_0(t) = R_0(theta_0(t)) - sigma^2/2`` the clean iterate's excess risk, which plays the role
of the offline gap ``Delta`` (both are the clean estimator's sampling noise, of order
``d/n``). ``m = 0`` is the paper's definition.
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import xarray as xr

from advdyn.critical.estimators import crossing
from advdyn.precision import float64
from advdyn.problem.instance import AbstractInstance, ProblemInstance, stream_key
from advdyn.problem.losses import LeastSquares
from advdyn.solution import RESULTS
from advdyn.theory.rates import AbstractLearningRate, Decay


def teacher_direction(d: int, seed: int = 0) -> np.ndarray:
    """A unit teacher ``theta*`` (uniform direction from ``seed``)."""
    g = np.random.default_rng(seed).standard_normal(d)
    return g / np.linalg.norm(g)


@float64
def least_squares_instance(d: int, eps: float, sigma: float = 1.0,
                           seed: int = 0) -> ProblemInstance:
    """Isotropic streaming adversarial least squares, ``theta_0 = 0`` (module docstring).

    Parameters
    ----------
    d : int
        Dimension.
    eps : float
        Attack radius (l2).
    sigma : float
        Label-noise standard deviation.
    seed : int
        Seed of the teacher direction.

    Returns
    -------
    ProblemInstance
    """
    f64 = lambda a: jnp.asarray(a, jnp.float64)  # noqa: E731
    return ProblemInstance(
        eigenvalues=f64(np.ones((1, d))), theta_star=f64(teacher_direction(d, seed)),
        means=f64(np.zeros((1, d))), weights=f64([1.0]), labels=f64([0.0]),
        theta0=f64(np.zeros(d)), noise=f64(sigma), epsilon=f64(eps), ridge=f64(0.0),
        loss=LeastSquares(), task="regression",
    )


@float64
def default_rate() -> AbstractLearningRate:
    """``gamma_t = 1/(1 + t)``: the excess risk of clean SGD then decays like ``d/n``."""
    return Decay(1.0, 1.0, 1.0)


@float64
def critical_curve(eps, adv_risk, clean_risk, margin: float = 0.0,
                   floor: float = 0.0) -> np.ndarray:
    """``eps*(t)`` from risks on a radius grid.

    Parameters
    ----------
    eps : array, shape (E,)
        Increasing radii, ``eps[0] = 0``.
    adv_risk : array, shape (E, T)
        Adversarial risk of the iterate trained at each radius.
    clean_risk : array, shape (T,)
        Clean risk of the clean iterate.
    margin : float
        ``m`` of the gap-matched analogue (0: the paper's definition).
    floor : float
        The Bayes risk ``sigma^2/2`` (the excess risk is ``clean_risk - floor``).

    Returns
    -------
    array, shape (T,)
        Interpolated crossings (``inf`` beyond the grid; 0 when only ``eps = 0`` qualifies).
    """
    level = clean_risk + margin * (clean_risk - floor)
    return np.asarray([crossing(eps, adv_risk[:, j], level[j])
                       for j in range(adv_risk.shape[1])])


@float64
def ode_critical_radius(d: int, times, eps_grid, lr: AbstractLearningRate | None = None,
                        sigma: float = 1.0, seed: int = 0, margin: float = 1.0) -> xr.Dataset:
    """eps*(t) of streaming adversarial least squares from the exact ODE.

    Parameters
    ----------
    d : int
        Dimension of the instance (the ODE is exact as ``d -> inf``; ``d`` only sets the
        teacher draw, which does not matter for an isotropic problem).
    times, eps_grid, lr, margin
        As for [`instance_critical_radius`][advdyn.critical.exact.instance_critical_radius].
    sigma : float
        Label noise.
    seed : int
        Teacher seed.

    Returns
    -------
    xarray.Dataset
        As [`instance_critical_radius`][advdyn.critical.exact.instance_critical_radius] with
        the floor ``sigma^2 / 2``; attributes add ``sigma``.
    """
    ds = instance_critical_radius(least_squares_instance(d, 0.0, sigma, seed), times, eps_grid,
                                  lr, margin, floor=sigma**2 / 2)
    return ds.assign_attrs(sigma=sigma)


@float64
def instance_critical_radius(instance: AbstractInstance, times, eps_grid,
                             lr: AbstractLearningRate | None = None, margin: float = 1.0,
                             floor: float | None = None, **ode_options) -> xr.Dataset:
    """eps*(t) from the exact ODE of any problem: the radius of ``instance`` replaced by each
    of ``0`` and ``eps_grid`` in turn (module docstring's definitions).

    A data problem's surrogate ([`advdyn.data_problem`][advdyn.data_problem]``(...).instance``,
    dense or binned) gives the critical radius the theory predicts for adversarial training
    on those data; any loss is accepted (the criterion compares the adversarial risk of the
    adversarially trained iterate with the clean risk of the clean one).

    Parameters
    ----------
    instance : AbstractInstance
        A [`ProblemInstance`][advdyn.problem.ProblemInstance] or
        [`BinnedInstance`][advdyn.theory.BinnedInstance]; its own ``epsilon`` is ignored.
    times : array
        Recording times ``t = n/d`` (increasing, from 0).
    eps_grid : array
        Positive increasing radii.
    lr : AbstractLearningRate, optional
        Default `default_rate`.
    margin : float
        ``m`` of ``eps_star_margin``.
    floor : float, optional
        The clean risk an iterate can reach (``E_0 = R_0 - floor`` is the clean iterate's
        excess risk); default: the clean risk of the clean optimum
        ([`adversarial_optimum`][advdyn.theory.adversarial_optimum] at ``eps = 0``).
    **ode_options
        Keyword arguments of every [`solve_ode`][advdyn.theory.solve_ode] (``rtol``,
        ``atol``, ``solver``, ``divergence_factor``, ...).

    Returns
    -------
    xarray.Dataset
        ``adv_risk(eps, t)`` (``eps = 0`` first; ``inf`` at a positive radius from where
        its ODE diverged, NaN after another failure or at ``eps = 0``), ``clean_risk(t)``
        of the clean iterate, ``norm(eps, t)``, ``result(eps)`` (each solve's
        [`RESULTS`][advdyn.solution.RESULTS] code: a divergence is data, not an
        exception), ``eps_star(t)`` (the paper's definition) and
        ``eps_star_margin(t)`` (gap-matched analogue); attributes ``d``, ``floor``,
        ``margin``, ``method = "ode"``.
    """
    from advdyn.theory.ode import solve_ode
    from advdyn.theory.stationary import adversarial_optimum

    lr = default_rate() if lr is None else lr
    eps = np.concatenate([[0.0], np.asarray(eps_grid, np.float64)])
    at = [eqx.tree_at(lambda i: i.epsilon, instance, jnp.asarray(e, jnp.float64)) for e in eps]
    if floor is None:
        floor = float(adversarial_optimum(at[0]).observables["clean_risk"])
    sols = [solve_ode(inst, lr, times, throw=False, **ode_options) for inst in at]
    result = np.asarray([int(s.result) for s in sols], np.int32)
    # a radius whose ODE diverged: its records from the divergence on are NaN, and its
    # adversarial risk there is infinite (eps* lies below that radius); another failure
    # (the step budget) leaves them NaN, and the clean risk of a failed clean run stays
    # NaN: eps* is undefined where it would need them
    adv = np.stack([np.where(np.isnan(s["adv_risk"]) & (r == RESULTS.diverged), np.inf,
                             s["adv_risk"]) for s, r in zip(sols, result, strict=True)])
    adv[0] = sols[0]["adv_risk"]
    clean = sols[0]["clean_risk"]
    return xr.Dataset(
        {"adv_risk": (("eps", "t"), adv), "clean_risk": ("t", clean),
         "norm": (("eps", "t"), np.stack([s["norm"] for s in sols])),
         "result": ("eps", result),
         "eps_star": ("t", critical_curve(eps, adv, clean)),
         "eps_star_margin": ("t", critical_curve(eps, adv, clean, margin, floor))},
        coords={"eps": eps, "t": np.asarray(times, np.float64)},
        attrs={"d": round(float(instance.d)), "floor": floor, "method": "ode",
               "margin": margin},
    )


@float64
def problem_radius(instance: AbstractInstance) -> float:
    """The problem-scaled attack radius of a surrogate or synthetic instance: half the
    distance between the means of the first ``+1`` and first ``-1`` component
    (classification), or ``sigma / |theta*|`` (regression: the attack then moves a
    prediction by as much as the label noise); the definition of
    [`MixtureStatistics.radius`][advdyn.problem.data.MixtureStatistics.radius] for a data
    set, read from the instance's per-direction (or per-bin) sums.

    Parameters
    ----------
    instance : AbstractInstance
        A [`ProblemInstance`][advdyn.problem.ProblemInstance] or
        [`BinnedInstance`][advdyn.theory.BinnedInstance].

    Returns
    -------
    float
        The radius, ``nan`` where it is undefined (a classification without both labels,
        or coinciding means; a regression without noise or without a teacher).
    """
    from advdyn.theory.statistics import direction_sum

    if instance.task == "classification":
        labels = np.asarray(instance.labels)
        pos, neg = np.flatnonzero(labels > 0), np.flatnonzero(labels < 0)
        if pos.size == 0 or neg.size == 0:
            return float("nan")
        a, b = int(pos[0]), int(neg[0])
        mm = instance.mean_mean
        dist2 = float(direction_sum(mm[a, a] + mm[b, b] - 2 * mm[a, b], instance))
        radius = float(np.sqrt(max(dist2, 0.0)) / 2)
    else:
        teacher = float(np.sqrt(direction_sum(instance.teacher2, instance)))
        noise = float(instance.noise)
        radius = noise / teacher if teacher > 0 else float("nan")
    return radius if radius > 0 else float("nan")


@float64
def sgd_critical_radius(d: int, t_max: float, n_times: int, eps_grid,
                        lr: AbstractLearningRate | None = None, sigma: float = 1.0,
                        replicates: int = 8, seed: int = 0, margin: float = 1.0) -> xr.Dataset:
    """eps*(t) of finite-``d`` streaming SGD, per replicate (common sample streams across
    radii, so the clean and adversarial iterates of a replicate see the same samples).

    Parameters
    ----------
    d : int
        Dimension.
    t_max : float
        Horizon ``n/d``.
    n_times : int
        Recording times.
    eps_grid : array
        Positive increasing radii.
    lr : AbstractLearningRate, optional
        Default `default_rate`.
    sigma : float
        Label noise.
    replicates : int
        Independent streams.
    seed : int
        Teacher and stream seed.
    margin : float
        ``m`` of ``eps_star_margin``.

    Returns
    -------
    xarray.Dataset
        ``adv_risk(eps, replicate, t)``, ``clean_risk(replicate, t)``,
        ``eps_star(replicate, t)``, ``eps_star_margin(replicate, t)``; coordinate ``t``.
    """
    from advdyn.simulate.sgd import simulate_sgd

    lr = default_rate() if lr is None else lr
    eps = np.concatenate([[0.0], np.asarray(eps_grid, np.float64)])
    key = stream_key(seed)
    sols = [simulate_sgd(least_squares_instance(d, float(e), sigma, seed), lr, key,
                         t_max=t_max, n_times=n_times, replicates=replicates,
                         dtype="float64") for e in eps]
    adv = np.stack([s["adv_risk"] for s in sols])  # (E, R, T)
    clean = sols[0]["clean_risk"]  # (R, T)
    star = np.stack([critical_curve(eps, adv[:, r], clean[r]) for r in range(replicates)])
    star_m = np.stack([critical_curve(eps, adv[:, r], clean[r], margin, sigma**2 / 2)
                       for r in range(replicates)])
    return xr.Dataset(
        {"adv_risk": (("eps", "replicate", "t"), adv),
         "clean_risk": (("replicate", "t"), clean),
         "eps_star": (("replicate", "t"), star),
         "eps_star_margin": (("replicate", "t"), star_m)},
        coords={"eps": eps, "t": np.asarray(sols[0].ts), "replicate": np.arange(replicates)},
        attrs={"d": d, "sigma": sigma, "method": "sgd", "margin": margin},
    )


@float64
def scaling_slope(t, eps_star, t_min: float) -> float:
    """Log-log slope of ``eps*`` against ``n/d = t`` over ``t >= t_min`` (finite values)."""
    t = np.asarray(t, np.float64)
    e = np.asarray(eps_star, np.float64)
    keep = (t >= t_min) & np.isfinite(e) & (e > 0)
    return float(np.polyfit(np.log(t[keep]), np.log(e[keep]), 1)[0])
