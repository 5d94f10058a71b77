"""Stationary points of the dynamics: the adversarial optimum and the constant-rate limit.

THEORY section 7. Setting the ODE's velocity to zero gives, direction by direction,

    theta_i = -( H_i theta*_i + f_i ) / D_i                      (mean part)
    P_i     = theta_i^2 + gamma N_i / (2 d D_i)                   (plus fluctuations)

with ``D, H, f, N`` (`advdyn.theory.drift`) evaluated at the statistics of that same state.
In the error variables ``e = theta - theta*`` the mean part is

    e_i = alpha_i theta*_i + sum_c beta_ci mu_ci,
    alpha_i = -(D_i + H_i) / D_i,   beta_ci = -pi_c e_c / D_i,

so the whole stationary state is a function of a handful of scalars, and a fixed point in
the statistics ``(<e,K_c e>, <e,K_c theta*>, <e,mu_c>, |theta|^2, <theta,theta*>)``
(``3C + 2`` numbers) determines it. ``gamma = 0`` gives the adversarial optimum
``theta_eps^*`` (the minimiser of ``R_eps + delta/2 |theta|^2``); ``gamma > 0`` the limit
of the ODE under a constant learning rate. The fixed point is solved by Newton's method
(optimistix) from a damped-iteration start, and the result carries its own residual.

The optimum can sit exactly at ``theta = 0`` (the attack term ``eps |theta|`` has a kink
there): this happens when the gradient of the rest of the objective at 0 is no larger than
``eps * abar(0)``, and is detected before any iteration.
"""

from __future__ import annotations

import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Float

from advdyn import checks
from advdyn.precision import float64
from advdyn.problem.instance import AbstractInstance, ProblemInstance
from advdyn.theory.drift import DriftTerms, drift_terms
from advdyn.theory.statistics import (
    DirectionState,
    Statistics,
    direction_sum,
    observables,
    statistics,
    training_objective,
)
from advdyn.typing import Array

_DAMPED_STEPS = 200
_DAMPING = 0.5


class StationaryPoint(eqx.Module):
    """A stationary point of the dynamics (optimum for ``gamma = 0``, limit otherwise).

    Attributes
    ----------
    gamma : Array, scalar
        The constant learning rate (0 for the adversarial optimum).
    alpha : Array, shape (n,)
        Mean part of the stationary error: ``e_i = alpha_i theta*_i + sum_c beta_ci mu_ci``.
    beta : Array, shape (C, n)
        See ``alpha``.
    state : DirectionState
        Stationary per-direction state (including the fluctuation part when ``gamma > 0``).
    stats : Statistics
        Its statistics.
    terms : DriftTerms
        Drift coefficients at the stationary point.
    observables : dict of str to Array
        `observables` at the stationary point.
    objective : Array, scalar
        ``R_eps + delta/2 |theta|^2`` there (the quantity the optimum minimises).
    mean_sq_dist : Array, scalar
        ``|e_mean|^2 = sum_i (alpha_i theta*_i + sum_c beta_ci mu_ci)^2``.
    residual : Array, scalar
        Relative residual of the fixed point in the statistics (0 at an exact zero optimum).
    converged : Array, bool
        Whether the solve reached its tolerance with a finite, admissible state (all
        ``D_i > 0``, non-negative second moments and risk).
    at_zero : Array, bool
        Whether the optimum is exactly ``theta = 0``.
    """

    gamma: Array
    alpha: Array
    beta: Array
    state: DirectionState
    stats: Statistics
    terms: DriftTerms
    observables: dict
    objective: Array
    mean_sq_dist: Array
    residual: Array
    converged: Array
    at_zero: Array

    @property
    @float64
    def adv_risk(self) -> Array:
        """Adversarial risk ``R_eps`` at the stationary point (ridge excluded).

        Returns
        -------
        Array, scalar
        """
        return self.observables["adv_risk"]

    @property
    @float64
    def effective_ridge(self) -> Array:
        """Effective ridge ``lambda = rho / h_1`` (least squares with one class, THEORY 7).

        Returns
        -------
        Array, scalar
            ``rho / h_1``; NaN for an optimum exactly at ``theta = 0``, where ``rho`` is
            not defined.
        """
        return jnp.where(self.at_zero, jnp.nan, self.terms.rho / self.terms.expectations.h1[0])

    @float64
    def relaxation_time(self, gamma: float) -> float:
        """``1 / (gamma min_i D_i)``: the e-folding time of the slowest linear mode here.

        The one horizon rule for "run the ODE until it has reached this point": callers run
        to a multiple of it (``inf`` when no mode decays).

        Parameters
        ----------
        gamma : float
            The constant learning rate.

        Returns
        -------
        float
        """
        slowest = float(gamma * jnp.min(self.terms.D))
        return 1.0 / slowest if slowest > 0 else float("inf")

    @float64
    def distance2(self, state: DirectionState, instance: AbstractInstance) -> Float[Array, ""]:
        """``|theta - theta_mean|^2`` for the per-direction ``state`` (THEORY 7).

        ``theta_mean`` is the stationary mean iterate (``theta_eps^*`` for the optimum).
        The cross term ``sum_i e_i e_mean,i`` is a combination of the state's
        ``err_teacher`` and ``err_mean``, so the ODE state suffices.

        Parameters
        ----------
        state : DirectionState
            State of an iterate (SGD) or of the ODE; its own instance's layout.
        instance : AbstractInstance
            The instance the state belongs to.

        Returns
        -------
        Array, scalar
            Squared distance in float64.
        """
        cross = self.alpha * state.err_teacher + jnp.sum(self.beta * state.err_mean, axis=0)
        per_entry = state.err2 - 2 * cross
        return direction_sum(per_entry.astype(jnp.float64), instance) + self.mean_sq_dist


def _mean_state(terms: DriftTerms, instance) -> tuple[Array, Array, DirectionState]:
    """``alpha``, ``beta`` and the state of ``e = alpha theta* + sum_c beta_c mu_c``."""
    D = terms.D
    alpha = -(D + terms.H) / D
    beta = -terms.pe[:, None] / D[None, :]
    t2, tm, mm = instance.teacher2, instance.teacher_mean, instance.mean_mean
    b_tm = jnp.sum(beta * tm, axis=0)
    err_teacher = alpha * t2 + b_tm
    err_mean = alpha * tm + jnp.einsum("kn,ckn->cn", beta, mm)
    err2 = alpha**2 * t2 + 2 * alpha * b_tm + jnp.einsum("cn,kn,ckn->n", beta, beta, mm)
    return alpha, beta, DirectionState(err2, err_teacher, err_mean)


def _with_fluctuations(state: DirectionState, terms: DriftTerms, instance, gamma) -> DirectionState:
    return DirectionState(
        err2=state.err2 + gamma * terms.N / (2 * instance.d * terms.D),
        err_teacher=state.err_teacher,
        err_mean=state.err_mean,
    )


def _pack(s: Statistics) -> Array:
    return jnp.concatenate([s.qe, s.ge, s.me, jnp.stack([s.norm2, s.overlap])])


def _constants(instance) -> tuple[Array, Array]:
    """The statistics that do not depend on theta: ``<theta*, K_c theta*>``, ``<theta*, mu_c>``."""
    w = direction_sum(instance.eigenvalues * instance.teacher2, instance)
    return w, direction_sum(instance.teacher_mean, instance)


def _unpack(x: Array, instance) -> Statistics:
    C = instance.n_components
    w, mstar = _constants(instance)
    return Statistics(
        qe=x[:C], ge=x[C : 2 * C], w=w, me=x[2 * C : 3 * C], mstar=mstar,
        norm2=x[3 * C], overlap=x[3 * C + 1],
    )


def _stationary_state(x: Array, instance, gamma):
    """``alpha``, ``beta``, the mean state, the full state and the drift terms at ``x``."""
    terms = drift_terms(_unpack(x, instance), instance)
    alpha, beta, mean_state = _mean_state(terms, instance)
    return alpha, beta, mean_state, _with_fluctuations(mean_state, terms, instance, gamma), terms


def _fixed_point_map(x: Array, instance, gamma) -> Array:
    _, _, _, state, _ = _stationary_state(x, instance, gamma)
    return _pack(statistics(state, instance))


def _scale(x: Array) -> Array:
    return 1.0 + jnp.max(jnp.abs(x))


def _solve_fixed_point(instance, gamma, x0, rtol, active=True):
    """Newton on ``map(x) = x`` from a damped-iteration start; ``(x, relative residual)``.

    Where ``active`` is False (a kink of `optimum` holds instead) the map is replaced by the
    constant ``x0``, whose root is ``x0``: the point there can be a degenerate fixed point
    (singular Jacobian, infinite entries) whose derivatives, although multiplied by zero
    after the selection, would otherwise poison the gradient with NaN.
    """
    import optimistix as optx  # on tracing only: a stored program does not need it

    active = jax.lax.stop_gradient(jnp.asarray(active))

    def fixed_point_map(x):
        safe = jnp.where(active, x, x0)  # inactive: never evaluate the map at a singular x
        return jnp.where(active, _fixed_point_map(safe, instance, gamma), x0)

    def damped(_, x):
        return (1 - _DAMPING) * x + _DAMPING * fixed_point_map(x)

    x1 = jax.lax.fori_loop(0, _DAMPED_STEPS, damped, x0)
    # only a starting point: the derivative is Newton's, by the implicit function theorem
    x1 = jax.lax.stop_gradient(jnp.where(jnp.all(jnp.isfinite(x1)), x1, x0))
    sol = optx.root_find(
        lambda x, args: fixed_point_map(x) - x,
        optx.Newton(rtol=rtol, atol=rtol),
        x1,
        max_steps=200,
        throw=False,
        adjoint=optx.ImplicitAdjoint(),
    )
    x = jnp.where(jnp.all(jnp.isfinite(sol.value)), sol.value, x1)
    residual = jnp.max(jnp.abs(fixed_point_map(x) - x)) / _scale(x)
    return x, residual


def _zero_optimum_test(instance) -> tuple[Array, Statistics, DriftTerms]:
    """Whether ``theta = 0`` is optimal, and the statistics and drift terms of ``theta = 0``."""
    w, mstar = _constants(instance)
    # e = -theta*: <e,K_c e> = w_c, <e,K_c theta*> = -w_c, <e,mu_c> = -m*_c, |theta| = 0
    s0 = Statistics(qe=w, ge=-w, w=w, me=-mstar, mstar=mstar,
                    norm2=jnp.zeros(()), overlap=jnp.zeros(()))
    terms = drift_terms(s0, instance)
    # gradient of the smooth part at 0: g_i = H_i theta*_i + f_i (the D_i theta_i term vanishes)
    H, pe = terms.H, terms.pe
    g2 = direction_sum(
        H**2 * instance.teacher2
        + 2 * H * (pe @ instance.teacher_mean)
        + jnp.einsum("c,k,ckn->n", pe, pe, instance.mean_mean),
        instance,
    )
    abar0 = instance.weights @ terms.expectations.a
    return jnp.sqrt(jnp.maximum(g2, 0.0)) <= instance.epsilon * abar0, s0, terms


def _noiseless_regression(instance) -> Array:
    """Whether the labels are exact (``y = <theta*, x>``): the residual has a kink at ``theta*``."""
    return jnp.asarray(instance.task == "regression") & (instance.noise == 0)


def _teacher_optimum_test(instance) -> Array | None:
    """Whether ``theta = theta*`` is optimal (noiseless least squares, one centred class).

    With exact labels the adversarial square loss ``(|u| + eps |theta|)^2 / 2`` has a
    kink at ``u = 0``: along ``theta = theta* + t v`` its one-sided derivative at ``t = 0``
    is ``eps |theta*| E|<x, v>| + (eps^2 + delta) <theta*, v>`` with
    ``E|<x, v>| = sqrt(2/pi) |K^(1/2) v|``, non-negative for every ``v`` iff

        (eps^2 + delta)^2 sum_i theta*_i^2 / lambda_i <= (2/pi) eps^2 |theta*|^2.

    Elsewhere (other losses, mixtures: ``None``, known when tracing, so the program has no
    such branch; means: False) the fixed point decides.
    """
    from advdyn.problem.losses import LeastSquares

    if not isinstance(instance.loss, LeastSquares) or instance.n_components != 1:
        return None
    lam = instance.eigenvalues[0]
    t2 = instance.teacher2
    inv = jnp.where(lam > 0, t2 / jnp.where(lam > 0, lam, 1.0), jnp.where(t2 > 0, jnp.inf, 0.0))
    eps, ridge = instance.epsilon, instance.ridge
    lhs = (eps**2 + ridge) ** 2 * direction_sum(inv, instance)
    rhs = (2 / jnp.pi) * eps**2 * direction_sum(t2, instance)
    centred = jnp.all(instance.teacher_mean == 0) & jnp.all(instance.mean_mean == 0)
    return _noiseless_regression(instance) & centred & (lhs <= rhs)


def _build(instance, gamma, x, residual, tol) -> StationaryPoint:
    alpha, beta, mean_state, state, terms = _stationary_state(x, instance, gamma)
    stats = statistics(state, instance)
    obs = observables(stats, instance)
    objective = training_objective(obs["adv_risk"], stats.norm2, instance.ridge)
    # a fixed point of the algebra can be unphysical: e.g. least squares with gamma above
    # 2 d / tr K solves s^2 (1 - gamma tr K / 2d) = ... with s^2 < 0
    admissible = (
        jnp.all(terms.D > 0)
        & jnp.all(jnp.isfinite(_pack(stats)))
        & jnp.all(state.err2 >= 0)
        & jnp.all(stats.qe >= 0)
        & (stats.norm2 >= 0)
        & jnp.isfinite(obs["adv_risk"])
        & (obs["adv_risk"] >= 0)
    )
    return StationaryPoint(
        gamma=jnp.asarray(gamma, jnp.float64),
        alpha=alpha,
        beta=beta,
        state=state,
        stats=stats,
        terms=terms,
        observables=obs,
        objective=objective,
        mean_sq_dist=direction_sum(mean_state.err2, instance),
        residual=residual,
        converged=admissible & (residual <= tol),
        at_zero=jnp.asarray(False),
    )


def _zero_point(instance, s0: Statistics, terms: DriftTerms) -> StationaryPoint:
    C, n = instance.n_components, instance.teacher2.shape[-1]
    state = DirectionState(
        err2=instance.teacher2, err_teacher=-instance.teacher2, err_mean=-instance.teacher_mean
    )
    obs = observables(s0, instance)
    return StationaryPoint(
        gamma=jnp.zeros(()),
        alpha=-jnp.ones(n),
        beta=jnp.zeros((C, n)),
        state=state,
        stats=s0,
        terms=terms,
        observables=obs,
        objective=obs["adv_risk"],
        mean_sq_dist=direction_sum(instance.teacher2, instance),
        residual=jnp.zeros(()),
        converged=jnp.asarray(True),
        at_zero=jnp.asarray(True),
    )


def _teacher_point(instance) -> StationaryPoint:
    """The stationary point ``theta = theta*`` (``e = 0``), exactly."""
    C, n = instance.n_components, instance.teacher2.shape[-1]
    w, mstar = _constants(instance)
    ts2 = direction_sum(instance.teacher2, instance)
    zeros = jnp.zeros_like(w)
    stats = Statistics(qe=zeros, ge=zeros, w=w, me=jnp.zeros_like(mstar), mstar=mstar,
                       norm2=ts2, overlap=ts2)
    terms = drift_terms(stats, instance)
    obs = observables(stats, instance)
    state = DirectionState(err2=jnp.zeros(n), err_teacher=jnp.zeros(n),
                           err_mean=jnp.zeros((C, n)))
    return StationaryPoint(
        gamma=jnp.zeros(()),
        alpha=jnp.zeros(n),
        beta=jnp.zeros((C, n)),
        state=state,
        stats=stats,
        terms=terms,
        observables=obs,
        objective=training_objective(obs["adv_risk"], ts2, instance.ridge),
        mean_sq_dist=jnp.zeros(()),
        residual=jnp.zeros(()),
        converged=jnp.asarray(True),
        at_zero=jnp.asarray(False),
    )


def _start(instance) -> Array:
    """Starting statistics of the optimum's solve.

    ``theta = theta*`` (``e = 0``) in general; with exact labels ``e = 0`` is a degenerate
    fixed point of the map for every ``eps`` (the residual's spread vanishes and ``D`` with
    it diverges), so there the solve starts from ``theta = theta* / 2``.
    """
    w, mstar = _constants(instance)
    ts2 = direction_sum(instance.teacher2, instance)
    k = jnp.where(_noiseless_regression(instance), 0.5, 0.0)
    return jnp.concatenate([k**2 * w, -k * w, -k * mstar,
                            jnp.stack([(1 - k) ** 2 * ts2, (1 - k) * ts2])])


def _select(flag: Array, a: StationaryPoint, b: StationaryPoint) -> StationaryPoint:
    return jax.tree.map(lambda u, v: jnp.where(flag, u, v), a, b)


@eqx.filter_jit
def _optimum(instance, rtol, tol) -> StationaryPoint:
    """The optimum's one program: the fixed point and the two kinks, selected."""
    is_zero, s0, terms0 = _zero_optimum_test(instance)
    is_teacher = _teacher_optimum_test(instance)
    kink = is_zero if is_teacher is None else is_zero | is_teacher
    x, residual = _solve_fixed_point(instance, 0.0, _start(instance), rtol, active=~kink)
    point = _build(instance, 0.0, x, residual, tol)
    if is_teacher is not None:
        point = _select(is_teacher, _teacher_point(instance), point)
    return _select(is_zero, _zero_point(instance, s0, terms0), point)


@eqx.filter_jit
def _limit(instance, gamma, x0, rtol, tol) -> StationaryPoint:
    """The constant-rate limit's one program (``x0``: packed starting statistics or None)."""
    if x0 is None:
        x0 = _pack(_optimum(instance, rtol, tol).stats)
    # the optimum can sit at theta = 0 where rho is singular: start from |theta|^2 > 0
    floor = 1e-2 * direction_sum(instance.teacher2, instance) + 1e-6
    x0 = x0.at[-2].set(jnp.maximum(x0[-2], floor))
    x, residual = _solve_fixed_point(instance, gamma, x0, rtol)
    return _build(instance, gamma, x, residual, tol)


@float64
def optimum(instance: AbstractInstance, *, rtol: float = 1e-12,
            tol: float = 1e-9) -> StationaryPoint:
    """The adversarial optimum as a pure function: ``jit``, ``vmap`` and ``grad`` go through.

    The one computation of the optimum
    ([`adversarial_optimum`][advdyn.theory.stationary.adversarial_optimum] calls it), without
    a host decision: the fixed point and the two exact kinks of THEORY 7
    (``theta = 0`` when the attack dominates; ``theta = theta*`` for least squares with
    exact labels and a small attack, where the residual vanishes) are all computed and their
    tests select one, so a batch of instances needs one program. Its derivatives are those of
    the selected point: the fixed point's by the implicit function theorem (optimistix's
    ``ImplicitAdjoint``), not of the iterations that found it.

    Parameters
    ----------
    instance : AbstractInstance
    rtol, tol : float
        Newton tolerance and the largest relative residual accepted as ``converged``.

    Returns
    -------
    StationaryPoint
        As [`adversarial_optimum`][advdyn.theory.stationary.adversarial_optimum]; ``converged`` says
        whether it is trustworthy (no
        warning is issued).
    """
    return _optimum(instance, rtol, tol)


@float64
def adversarial_optimum(
    instance: AbstractInstance, *, rtol: float = 1e-12, tol: float = 1e-9
) -> StationaryPoint:
    """The adversarial optimum ``theta_eps^*`` and the minimum risk (THEORY section 7).

    [`optimum`][advdyn.theory.stationary.optimum] at the host boundary: it warns when the fixed
    point did not converge.

    Parameters
    ----------
    instance : AbstractInstance
        The problem (any built-in or custom loss, regression or classification; for a
        custom loss the fixed point is as accurate as the loss's quadrature, which for
        non-smooth losses can stop it at a residual of ~1e-3; for classes far apart at a
        small ``epsilon`` the optimum lies at a very large norm and the fixed point may not
        converge: a ``RuntimeWarning`` says so in both cases).
    rtol : float
        Tolerance of the Newton solve.
    tol : float
        Largest relative fixed-point residual accepted as ``converged``.

    Returns
    -------
    StationaryPoint
        With ``gamma = 0``: ``adv_risk`` is ``R_eps(theta_eps^*)``, ``objective`` the
        minimum of ``R_eps + delta/2 |theta|^2``; for least squares with one class
        ``effective_ridge`` is ``lambda^*`` and ``theta_eps^* = (K + lambda^* I)^{-1} K theta*``.

    Examples
    --------
    >>> import advdyn
    >>> cfg = advdyn.default_config()
    >>> opt = advdyn.adversarial_optimum(advdyn.instantiate(cfg.problem))
    >>> bool(opt.converged)
    True
    """
    checks.theory_instance(instance)
    point = optimum(instance, rtol=rtol, tol=tol)
    if not bool(point.converged):
        warnings.warn(
            f"adversarial optimum: the fixed point stopped at relative residual "
            f"{float(point.residual):.2g} (> {tol:g}); the minimum risk, dist_to_opt and the "
            "Polyak rate are only as accurate as that (classes far apart for this eps put the "
            "optimum at a very large norm; a non-smooth custom loss's quadrature limits the "
            "accuracy)",
            RuntimeWarning,
            stacklevel=2,
        )
    return point


@float64
def constant_rate_limit(
    instance, gamma: float | Array, *, start: StationaryPoint | None = None, rtol: float = 1e-12,
    tol: float = 1e-9,
) -> StationaryPoint:
    """Stationary state of the ODE under a constant learning rate ``gamma`` (THEORY 7).

    The limit has ``Q_i = tbar_i theta*_i``, ``M_ci = tbar_i mu_ci`` and
    ``P_i = tbar_i^2 + gamma N_i / (2 d D_i)``, with every coefficient evaluated at the
    limit's own statistics. Whether the ODE actually converges there is a separate
    question: see [`advdyn.workflows.limits.limit_report`][advdyn.workflows.limit_report].

    A pure function, like [`optimum`][advdyn.theory.stationary.optimum]: ``jit``, ``vmap``
    and ``grad`` (in ``gamma`` and the instance's parameters) go through; the derivatives
    are the fixed point's, by the implicit function theorem. No warning is issued:
    ``converged`` is the verdict.

    Parameters
    ----------
    instance : AbstractInstance
        The problem.
    gamma : float or Array, scalar
        Constant learning rate (> 0).
    start : StationaryPoint, optional
        Starting point of the solve (default: the adversarial optimum, shifted off 0). Only
        a starting point: the result and its derivatives do not depend on it.
    rtol, tol : float
        Newton tolerance and the largest residual accepted as ``converged``.

    Returns
    -------
    StationaryPoint
        ``converged`` is False when no admissible fixed point was found (for instance when
        ``gamma`` is so large that the fluctuations have no stationary level).

    Raises
    ------
    ConfigError
        If ``gamma`` is not a positive finite number (when concrete; a traced rate is
        the caller's to check).
    """
    if not isinstance(gamma, jax.core.Tracer):
        checks.positive(gamma, "gamma")
    x0 = None if start is None else jax.lax.stop_gradient(_pack(start.stats))
    return _limit(instance, jnp.asarray(gamma, jnp.float64), x0, rtol, tol)


@float64
def optimum_vector(instance: ProblemInstance, point: StationaryPoint) -> Float[np.ndarray, " d"]:
    """The stationary mean iterate as a vector in the eigenbasis (per-direction instances).

    Parameters
    ----------
    instance : ProblemInstance
        A per-direction instance (with ``theta_star`` and ``means``).
    point : StationaryPoint
        E.g. from [`adversarial_optimum`][advdyn.theory.stationary.adversarial_optimum].

    Returns
    -------
    numpy.ndarray, shape (d,)
        ``theta* + alpha theta* + sum_c beta_c mu_c``.
    """
    ts, mu = np.asarray(instance.theta_star), np.asarray(instance.means)
    alpha, beta = np.asarray(point.alpha), np.asarray(point.beta)
    return ts + alpha * ts + np.sum(beta * mu, axis=0)
