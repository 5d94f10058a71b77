"""The deterministic-equivalent ODE (THEORY section 5), solved with diffrax in float64.

In the error variables of `advdyn.theory.statistics` (``e = theta - theta*``) and with the
drift coefficients ``D, H, N, f`` of `advdyn.theory.drift`, the per-direction system is

    d err2_i/dt        = -2 gamma ( D_i err2_i + (D_i+H_i) err_teacher_i
                                    + sum_c pi_c e_c err_mean_ci ) + gamma^2 N_i / d
    d err_teacher_i/dt =   -gamma ( D_i err_teacher_i + (D_i+H_i) theta*_i^2 + theta*_i f_i )
    d err_mean_ci/dt   =   -gamma ( D_i err_mean_ci + (D_i+H_i) theta*_i mu_ci + mu_ci f_i )

which is THEORY's ``(P, Q, M)`` system after the substitution ``theta = e + theta*``.
"""

from __future__ import annotations

import functools
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike, Float

from advdyn import checks
from advdyn.errors import ConfigError, DivergenceError
from advdyn.precision import as_float64, float64
from advdyn.problem.instance import AbstractInstance
from advdyn.solution import RESULTS, Solution, diffrax_code
from advdyn.theory.drift import flow
from advdyn.theory.rates import AbstractLearningRate
from advdyn.theory.recording import make_recorder
from advdyn.theory.spectral import RELAXED_EXPONENT, relaxed_eigenvalue
from advdyn.theory.stationary import StationaryPoint
from advdyn.theory.statistics import DirectionState, direction_sum
from advdyn.typing import Array


def initial_state(instance: AbstractInstance) -> DirectionState:
    """State of the initial iterate ``theta_0`` (float64).

    Parameters
    ----------
    instance : AbstractInstance
        Supplies ``theta_0``, ``theta*`` and ``mu_c``.

    Returns
    -------
    DirectionState
        Products of the coordinates of ``e_0 = theta_0 - theta*``.
    """
    return instance.initial_state()


def vector_field(t, state: DirectionState, args) -> DirectionState:
    """Right-hand side of the deterministic-equivalent ODE (the system in the module docstring).

    Parameters
    ----------
    t : scalar
        Time ``t = k/d``.
    state : DirectionState
        Current ``(err2, err_teacher, err_mean)``.
    args : tuple
        ``(instance, lr)``: the [`ProblemInstance`][advdyn.ProblemInstance] and the
        `AbstractLearningRate` giving ``gamma(t)``.

    Returns
    -------
    DirectionState
        The time derivatives of the three state fields.
    """
    instance, lr = args
    drift, noise = flow(state, instance)
    gamma = lr(t, state, instance)
    return jax.tree.map(lambda u, v: gamma * u + gamma**2 * v, drift, noise)


#: ``gamma lambda_max t_max`` above which the implicit solver pays (Tsit5 needs about one
#: step per ``3 / (gamma lambda_max)``; Kvaerno5 a few hundred steps whatever the stiffness)
STIFFNESS_THRESHOLD = 2e3
#: the implicit solver's absolute tolerance is ``IMPLICIT_ATOL * rtol / d`` (entries are of
#: order ``1/d``; measurements: ``docs/benchmarks.md``)
IMPLICIT_ATOL = 10.0
#: largest state (entries) for the implicit solver: its Newton steps factor the dense Jacobian
IMPLICIT_MAX_STATE = 1536
#: weight, in the step-size controller's error norm on the first recording interval, of the
#: modes relaxed before the first record (``solve_ode(relaxed_above=...)``): their tolerance
#: there is ``1 / RELAXED_WEIGHT`` times looser. Records see them only after ``t_1``, when
#: an error made during their transient has decayed with them (``e^-20``), and their pull on
#: the other modes is controlled at full tolerance in those modes' own errors
#: (measurements: ``docs/benchmarks.md``)
RELAXED_WEIGHT = 1e-3
SOLVERS = ("auto", "tsit5", "kvaerno5")


def stiffness(instance, lr: AbstractLearningRate, times) -> float:
    """Stiffness estimate ``gamma_0 lambda_max (t_end - t_0)`` of the ODE on ``times``.

    The fastest mode of the linearised system decays at about ``gamma D_max``, with
    ``D_max`` of the order of the largest eigenvalue; an explicit method needs steps below
    ``~3 / (gamma lambda_max)``, so this is about the number of explicit steps the
    stability limit alone forces.

    Parameters
    ----------
    instance : ProblemInstance or BinnedInstance
    lr : AbstractLearningRate
        Evaluated at the initial time and state.
    times : array_like
        Recording times.

    Returns
    -------
    float
    """
    times = np.asarray(times, dtype=np.float64)
    with jax.enable_x64(True):
        # a rule without state is evaluated without building the d-sized initial state
        state = initial_state(instance) if lr.needs_state else None
        gamma0 = float(lr(jnp.asarray(times[0]), state, instance))
    lam_max = float(np.max(np.asarray(instance.eigenvalues)))
    return abs(gamma0) * lam_max * float(times[-1] - times[0])


def choose_solver(instance, lr: AbstractLearningRate, times, solver: str = "auto") -> str:
    """The integrator for this problem: ``"tsit5"`` (explicit) or ``"kvaerno5"`` (implicit).

    Parameters
    ----------
    instance : ProblemInstance or BinnedInstance
    lr : AbstractLearningRate
    times : array_like
    solver : {"auto", "tsit5", "kvaerno5"}
        ``"auto"``: Kvaerno5 when `stiffness` exceeds `STIFFNESS_THRESHOLD` and
        the state has at most `IMPLICIT_MAX_STATE` entries (a binned ODE), else Tsit5.

    Returns
    -------
    str
    """
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
    if solver != "auto":
        return solver
    # shapes only: tracing, not computing, the initial state (no eager kernels to compile)
    shapes = eqx.filter_eval_shape(initial_state, instance)
    size = sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(shapes))
    if size <= IMPLICIT_MAX_STATE and stiffness(instance, lr, times) > STIFFNESS_THRESHOLD:
        return "kvaerno5"
    return "tsit5"


#: a Newton update whose size, in units of the tolerance, is below this has converged
SETTLED_UPDATE = 1e-3


@functools.cache
def _resumable():
    """A step-size controller class that resumes from the previous recording interval.

    It wraps diffrax's ``PIDController``: its first step is ``dt``, the step the controller
    proposed after the previous interval's last step (which diffrax had clipped to that
    interval's end, so the proposal is at most 10 times that clipped step), or, when
    ``dt <= 0``, the step diffrax selects. Its state carries the proposal, which
    ``SaveAt(controller_state=True)`` returns. With a freshly selected (small) first step on
    every interval, 101 records at ``d = 10^4`` took 204 Tsit5 steps where 46 cover the
    whole run; resumed, 107.
    """
    import diffrax

    class Resumed(diffrax.AbstractAdaptiveStepSizeController):
        controller: diffrax.PIDController
        dt: Array

        @property  # type: ignore[misc]  # (diffrax's AbstractVar, as its own wrappers do)
        def rtol(self):
            return self.controller.rtol

        @property  # type: ignore[misc]  # (diffrax's AbstractVar, as its own wrappers do)
        def atol(self):
            return self.controller.atol

        @property  # type: ignore[misc]  # (diffrax's AbstractVar, as its own wrappers do)
        def norm(self):
            return self.controller.norm

        def wrap(self, direction):
            return Resumed(self.controller.wrap(direction), self.dt)

        def init(self, terms, t0, t1, y0, dt0, args, func, error_order):
            def given():
                return self.controller.init(terms, t0, t1, y0, self.dt, args, func, error_order)

            def selected():
                return self.controller.init(terms, t0, t1, y0, None, args, func, error_order)

            tnext, state = jax.lax.cond(self.dt > 0, given, selected)
            return tnext, (state, tnext - t0)

        def adapt_step_size(self, t0, t1, y0, y1_candidate, args, y_error, error_order,
                            controller_state):
            keep, next_t0, next_t1, jump, state, result = self.controller.adapt_step_size(
                t0, t1, y0, y1_candidate, args, y_error, error_order, controller_state[0])
            return keep, next_t0, next_t1, jump, (state, next_t1 - next_t0), result

    return Resumed


@functools.cache
def _chord():
    """Diffrax's ``VeryChord``, which also stops when an update is below
    `SETTLED_UPDATE` of the tolerance.

    ``VeryChord`` judges convergence by the ratio of successive updates. Near a stationary
    state the predictor is already exact to rounding, both updates are rounding noise, and
    their ratio is noise: it reads as divergence (ratio > 2) or never as convergence, and
    the step is rejected. On a power law with exponent 2 at ``d = 10^6`` (32 log bins, rtol
    1e-7) half the steps after ``t = 5`` were rejected that way: 4,172 steps, against 638
    with this rule; the power law with exponent 1 takes the same steps either way.
    """
    import diffrax
    import optimistix as optx

    class SettledChord(diffrax.VeryChord):
        def terminate(self, fn, y, args, options, state, tags):
            stop, result = super().terminate(fn, y, args, options, state, tags)
            settled = (state.step >= 1) & (state.diffsize < SETTLED_UPDATE)
            return stop | settled, optx.RESULTS.where(settled, optx.RESULTS.successful, result)

    return SettledChord


class Integrator(eqx.Module):
    """How the ODE is integrated: a diffrax solver, its step-size controller and a budget.

    Build one with [`make_integrator`][advdyn.theory.ode.make_integrator] (or, from a config's
    ``run.solver`` string,
    `advdyn.config.build.integrator_for`); the solvers take it as an argument, the way
    ``diffrax.diffeqsolve`` takes its solver and controller. Its tolerances are array
    leaves: new values reuse a compiled solve.

    Attributes
    ----------
    solver : diffrax.AbstractSolver
        E.g. ``diffrax.Tsit5()`` or ``diffrax.Kvaerno5(...)``.
    controller : diffrax.PIDController
        Adaptive step-size control (``rtol``, ``atol``, gains).
    max_steps : int
        Step budget per recording interval.
    resume : bool
        Whether each recording interval starts from the step the controller proposed last
        on the one before (the explicit solver), rather than selecting one afresh.
    dense : bool
        Record from the solver's interpolant in one pass of steps (`_integrate_dense`)
        instead of integrating from record to record: no step is cut at a record, so
        records closer than the step the tolerance allows cost no steps; the records then
        carry the interpolant's error, of the order of the tolerance. Forward only: ``jit``
        and ``vmap`` go through it, reverse-mode ``grad`` does not; ``max_steps`` then
        bounds the whole solve. For batched studies (`advdyn.workflows.phase`).
    """

    solver: Any
    controller: Any
    max_steps: int = eqx.field(static=True, default=1_000_000)
    resume: bool = eqx.field(static=True, default=True)
    dense: bool = eqx.field(static=True, default=False)

    @property
    def name(self) -> str:
        """The solver's name in lower case (``"tsit5"``, ``"kvaerno5"``, ...)."""
        return type(self.solver).__name__.lower()


@float64
def make_integrator(
    kind: str = "tsit5", *, rtol: float | Array = 1e-8, atol: float | Array = 1e-20,
    max_steps: int = 1_000_000, dense: bool = False,
) -> Integrator:
    """The `Integrator` of a solver name, as [`solve_ode`][advdyn.theory.ode.solve_ode] uses it.

    Parameters
    ----------
    kind : {"tsit5", "kvaerno5"}
        Explicit Tsit5 (resuming its step across records), or implicit Kvaerno5 with the
        chord root finder of `_chord` and PID gains ``pcoeff = icoeff = 0.3``.
    rtol, atol : float
        Tolerances of the step-size controller, used as given (see
        [`solve_ode`][advdyn.theory.ode.solve_ode] for the
        absolute tolerance it passes for the implicit solver).
    max_steps : int
        Step budget per recording interval (of the whole solve with ``dense``).
    dense : bool
        Records from the solver's interpolant in one pass of steps (`Integrator.dense`;
        forward only).

    Returns
    -------
    Integrator

    Raises
    ------
    ValueError
        For another ``kind`` (``"auto"`` is resolved by `choose_solver`, which needs
        the problem).
    """
    import diffrax

    if kind not in SOLVERS[1:]:
        raise ValueError(f"kind must be one of {SOLVERS[1:]}, got {kind!r}")
    r, a = as_float64(rtol), as_float64(atol)  # float64 whatever JAX's settings
    if kind == "kvaerno5":
        solver = diffrax.Kvaerno5(root_finder=diffrax.with_stepsize_controller_tols(_chord())())
        return Integrator(solver, diffrax.PIDController(rtol=r, atol=a, pcoeff=0.3, icoeff=0.3),
                          int(max_steps), resume=False, dense=dense)
    return Integrator(diffrax.Tsit5(), diffrax.PIDController(rtol=r, atol=a), int(max_steps),
                      dense=dense)


def _divergence_bound(y0: DirectionState, instance, blowup):
    """``blowup (|theta_0 - theta*|^2 + |theta*|^2 + 1)``: the solve stops when
    ``|theta - theta*|^2`` (the direction sum of ``err2``) exceeds it."""
    return blowup * (
        direction_sum(y0.err2, instance) + direction_sum(instance.teacher2, instance) + 1.0
    )


def _finite(tree) -> Array:
    """Whether every entry of every leaf of ``tree`` is finite (a scalar bool)."""
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(a)) for a in jax.tree.leaves(tree)]))


def _root_finder_tols(solver, controller):
    """``solver`` with the tolerances its root finder leaves to the step-size controller
    (diffrax's ``use_stepsize_tol``: ``rtol``, ``atol``, ``norm``) taken from ``controller``,
    as ``diffeqsolve`` sets them; an explicit solver as it is. For solvers stepped by hand
    (`_integrate_dense`), which ``diffeqsolve`` does not see."""
    import diffrax

    if not isinstance(solver, diffrax.AbstractImplicitSolver):
        return solver
    # the sentinel that diffeqsolve replaces, as diffrax's public constructor of a root finder
    # "with the step-size controller's tolerances" sets it
    use_stepsize_tol = diffrax.with_stepsize_controller_tols(diffrax.VeryChord)().rtol
    unset = [a for a in ("rtol", "atol", "norm")
             if getattr(solver.root_finder, a) is use_stepsize_tol]
    return eqx.tree_at(lambda s: tuple(getattr(s.root_finder, a) for a in unset), solver,
                       tuple(getattr(controller, a) for a in unset))


#: the most records `_integrate_dense` writes through a mask over the record axis (above, by
#: an indexed update into equinox's buffers): the mask costs the record axis per record, which
#: outweighs the scatter it avoids beyond about 200 records (docs/benchmarks.md)
MASKED_RECORDS = 128


def _integrate_dense(instance, lr, recorder, times, integrator: Integrator, blowup):
    """The ODE in one pass of adaptive steps, each record read off the solver's
    interpolant on the step that covers it (`Integrator.dense`).

    diffrax's manual-stepping interface (``solver.init``/``solver.step``, the controller's
    ``init``/``adapt_step_size``, ``solver.interpolation_cls``) in a while loop. Up to
    `MASKED_RECORDS` records, each is written through a mask over the record axis in
    ``jax.lax.while_loop`` (under ``vmap`` the record index differs from point to point,
    which makes an indexed update a scatter, and a scatter keeps XLA's CPU backend from
    compiling the loop into one kernel); beyond, by an indexed update into the buffers of
    equinox's while loop (in place; a mask would cost the whole record axis per record):
    the steps are those of one ``diffeqsolve`` from ``times[0]`` to
    ``times[-1]``, none cut at a record, and the records are what ``diffeqsolve``'s
    ``SaveAt(ts=times)`` would save, without its checks of ``ts`` (host callbacks, which
    keep JAX's persistent cache from storing the program; the callers check ``times`` on
    the host). Failures as in
    `_integrate`: a vector field that is not finite at the start, or a state beyond the
    divergence bound after an accepted step, is ``diverged`` (the records from that step on
    NaN); ``max_steps`` steps, accepted or rejected, without reaching ``times[-1]``:
    ``max_steps_reached``. Forward only: ``jit`` and ``vmap`` go through it, reverse-mode
    ``grad`` does not.

    Returns
    -------
    records, result, steps
        As `_integrate`.
    """
    import diffrax  # on tracing only

    # up to MASKED_RECORDS records, each is written through a mask over the record axis in
    # jax.lax.while_loop (no scatter under vmap: XLA can compile the loop into one kernel);
    # beyond, where a mask's cost per record (the whole record axis) would dominate, by an
    # indexed update into equinox's buffers (in place, a scatter under vmap)
    masked = times.shape[0] <= MASKED_RECORDS
    if masked:
        def loop(cond, body, init, buffers):
            return jax.lax.while_loop(cond, body, init)
    else:
        import equinox.internal as eqxi

        def loop(cond, body, init, buffers):
            return eqxi.while_loop(cond, body, init, buffers=buffers, kind="lax")

    term = _ode_term()
    controller = integrator.controller
    solver = _root_finder_tols(integrator.solver, controller)
    args = (instance, lr)
    y0 = initial_state(instance)
    bound = _divergence_bound(y0, instance, blowup)
    t_start, t_end = times[0], times[-1]
    order = solver.error_order(term)
    tnext, c_state = controller.init(term, t_start, t_end, y0, None, args, solver.func, order)
    tnext = jnp.minimum(tnext, t_end)
    s_state = solver.init(term, t_start, tnext, y0, args)
    first = recorder(t_start, y0, instance, lr)
    recs = {name: jnp.full((times.shape[0], *a.shape), jnp.nan, a.dtype).at[0].set(a)
            for name, a in first.items()}
    # a vector field that is not finite at the start (e.g. gamma^2 overflowing float64) is a
    # divergence: the controller would otherwise reject every step until the budget runs out
    code = jnp.where(_finite(vector_field(t_start, y0, args)), RESULTS.successful,
                     RESULTS.diverged).astype(jnp.int32)

    def going(carry):
        t, _, _, _, _, _, _, steps, code = carry
        return (t < t_end) & (code == RESULTS.successful) & (steps < integrator.max_steps)

    def step(carry):
        t, tnext, y, s_state, c_state, k, recs, steps, code = carry
        y1, y_err, dense, s_state1, s_result = solver.step(
            term, t, tnext, y, args, s_state, made_jump=False)
        # a NaN error estimate (e.g. an overflow on a step too long) rejects the step
        y_err = jax.tree.map(lambda e: jnp.where(jnp.isnan(e), jnp.inf, e), y_err)
        keep, t_new, tnext_new, _, c_state1, c_result = controller.adapt_step_size(
            t, tnext, y, y1, args, y_err, order, c_state)
        failed = ((s_result != diffrax.RESULTS.successful)
                  | (c_result != diffrax.RESULTS.successful))
        keep = keep & ~failed
        blown = keep & (direction_sum(y1.err2, instance) > bound)
        record = keep & ~blown
        interpolant = solver.interpolation_cls(t0=t, t1=tnext, **dense)

        def due(inner):  # a record this accepted step covers
            k, _ = inner
            return record & (k < times.shape[0]) & (times[jnp.minimum(k, times.shape[0] - 1)]
                                                    <= tnext)

        def save(inner):
            k, recs = inner
            tk = times[k]
            yk = interpolant.evaluate(tk)
            out = recorder(tk, yk, instance, lr)
            if masked:
                at_k = jnp.arange(times.shape[0]) == k
                return k + 1, {name: jnp.where(at_k.reshape(at_k.shape + (1,) * out[name].ndim),
                                               out[name], recs[name]) for name in recs}
            return k + 1, {name: recs[name].at[k].set(out[name]) for name in recs}

        k, recs = loop(due, save, (k, recs), lambda c: c[1])
        code = jnp.where(failed, RESULTS.solver_failed,
                         jnp.where(blown, RESULTS.diverged, code)).astype(jnp.int32)
        # the next step ends at times[-1] when it would end within rounding of it
        t_new = jnp.minimum(t_new, t_end)
        tnext_new = jnp.where(tnext_new > t_end - 100 * jnp.finfo(times.dtype).eps * t_end,
                              t_end, tnext_new)
        new = (jnp.where(keep, t_new, t), tnext_new,
               jax.tree.map(lambda a, b: jnp.where(keep, a, b), y1, y),
               jax.tree.map(lambda a, b: jnp.where(keep, a, b), s_state1, s_state),
               c_state1, k, recs, steps + 1, code)
        return new

    init = (t_start, tnext, y0, s_state, c_state, jnp.asarray(1), recs,
            jnp.asarray(0, jnp.int64), code)
    t, _, _, _, _, _, recs, steps, code = loop(going, step, init, lambda c: c[6])
    code = jnp.where((code == RESULTS.successful) & (t < t_end), RESULTS.max_steps_reached,
                     code)
    # a record that is not finite (e.g. an overflow below the bound) is a divergence
    code = jnp.where((code == RESULTS.successful) & ~jnp.all(jnp.isfinite(recs["adv_risk"])),
                     RESULTS.diverged, code)
    return recs, code.astype(jnp.int32), steps


def _ode_term():
    """diffrax's term of `vector_field` (imported on tracing only)."""
    import diffrax

    return diffrax.ODETerm(vector_field)


def _integrate(instance, lr, recorder, times, integrator: Integrator, blowup,
               relaxed_above=None):
    """The ODE from record to record: one ``diffeqsolve`` per interval under ``lax.scan``.

    Pure: ``jit``, ``vmap`` and ``grad`` go through it. Each interval saves only its end
    state (no ``SaveAt(ts=...)``: its ``ts`` checks are host callbacks, which keep JAX's
    persistent cache from storing the solve, and its output buffer is carried through every
    step); the records are the scan's outputs. With ``integrator.resume`` each interval
    starts with the step its controller proposed last on the one before
    (`_resumable`); otherwise the first step is selected afresh on every interval.
    After a failed interval the state is NaN and later intervals are skipped. With
    ``relaxed_above``, the modes above it weigh `RELAXED_WEIGHT` in the error norm of
    the first interval.

    Returns
    -------
    records : dict of str to Array, shape (T,)
    result : Array of int
        A [`RESULTS`][advdyn.solution.RESULTS] code.
    steps : Array of int
        Steps taken over all intervals.
    """
    import diffrax  # on tracing only: a run that loads the stored program does not need it

    if integrator.dense:
        if relaxed_above is not None:
            raise ValueError("relaxed_above needs the record-to-record integration "
                             "(Integrator.dense = False)")
        return _integrate_dense(instance, lr, recorder, times, integrator, blowup)
    y0 = initial_state(instance)
    bound = _divergence_bound(y0, instance, blowup)

    def blown_up(t, y, args, **kw):
        return direction_sum(y.err2, instance) > bound

    term = _ode_term()
    event = diffrax.Event(blown_up)

    if relaxed_above is not None:  # the modes above it, by their largest eigenvalue
        eigenvalues = jnp.asarray(instance.eigenvalues)
        relaxed = jnp.max(eigenvalues.reshape(-1, eigenvalues.shape[-1]), axis=0) > relaxed_above

    resume = integrator.resume

    def controller(first, dt):
        pid = integrator.controller
        if relaxed_above is not None:
            import optimistix as optx

            weight = jnp.where(first & relaxed, RELAXED_WEIGHT, 1.0)

            def norm(scaled_error):  # RMS (diffrax's default) of the weighted errors
                return optx.rms_norm(jax.tree.map(lambda e: e * weight, scaled_error))

            pid = type(pid)(rtol=pid.rtol, atol=pid.atol, pcoeff=pid.pcoeff,
                            icoeff=pid.icoeff, dcoeff=pid.dcoeff, norm=norm)
        return _resumable()(pid, dt) if resume else pid

    def interval(carry, ts):
        y, dt, code, steps = carry
        t0, t1 = ts
        # a vector field that is not finite where the interval starts (e.g. gamma^2 or the
        # radius overflowing float64) is a divergence now: the controller would otherwise
        # reject every step until the step budget runs out
        going = code == RESULTS.successful
        start = jax.tree.map(lambda a, b: jnp.where(going, a, b), y, y0)
        finite_field = _finite(vector_field(t0, start, (instance, lr)))
        code = jnp.where((code == RESULTS.successful) & ~finite_field, RESULTS.diverged, code)
        ok = code == RESULTS.successful
        # after a failure: an empty interval from a finite state (no branch, so that a
        # batch under vmap does not run both sides of a cond)
        sol = diffrax.diffeqsolve(
            term, integrator.solver, t0=t0, t1=jnp.where(ok, t1, t0), dt0=None,
            y0=jax.tree.map(lambda a, b: jnp.where(ok, a, b), y, y0), args=(instance, lr),
            saveat=diffrax.SaveAt(t1=True, controller_state=resume),
            stepsize_controller=controller(t0 == times[0], dt),
            max_steps=integrator.max_steps, event=event, throw=False,
        )
        y1 = jax.tree.map(lambda a: a[-1], sol.ys)
        dt1 = jnp.where(ok, sol.controller_state[1], dt) if resume else dt
        code1 = jnp.where(ok, diffrax_code(sol.result), code)
        n = jnp.where(ok, sol.stats["num_steps"], 0).astype(jnp.int64)
        y1 = jax.tree.map(lambda a: jnp.where(code1 == RESULTS.successful, a, jnp.nan), y1)
        return (y1, dt1, code1, steps + n), recorder(t1, y1, instance, lr)

    # dt <= 0: the first interval selects its first step as diffrax does
    init = (y0, jnp.asarray(-1.0, times.dtype), jnp.asarray(RESULTS.successful, jnp.int32),
            jnp.asarray(0, jnp.int64))
    (_, _, code, steps), recs = jax.lax.scan(interval, init, (times[:-1], times[1:]))
    first = recorder(times[0], y0, instance, lr)
    out = jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), first, recs)
    # a record that is not finite (e.g. an overflow below the bound) is a divergence
    finite = jnp.all(jnp.isfinite(out["adv_risk"]))
    code = jnp.where((code == RESULTS.successful) & ~finite, RESULTS.diverged, code)
    return out, code.astype(jnp.int32), steps


@eqx.filter_jit
def _solve(
    instance, lr, recorder, times, rtol, atol, max_steps: int, blowup, kind: str,
    relaxed_above=None,
):
    """`_integrate` with the integrator of ``kind`` (built on tracing, so that a run
    that loads a stored program imports no diffrax). Tolerances, times and the divergence
    factor are traced, so new values reuse the compiled solve."""
    integrator = make_integrator(kind, rtol=rtol, atol=atol, max_steps=max_steps)
    return _integrate(instance, lr, recorder, times, integrator, blowup, relaxed_above)


@float64
def integrate_ode(
    instance: AbstractInstance,
    lr: AbstractLearningRate,
    times: Float[ArrayLike, " T"],
    integrator: Integrator,
    *,
    optimum: StationaryPoint | None = None,
    divergence_factor: float | Array = 1e6,
    relaxed_above: float | Array | None = None,
    throw: bool = True,
) -> Solution:
    """The deterministic-equivalent ODE as a pure function: ``jit``, ``vmap``, ``grad``.

    The same integration as [`solve_ode`][advdyn.theory.ode.solve_ode] (one recording interval after
    another), with
    no host work: no checks of ``times``, no solver chosen from the problem, no Python
    exception from inside. Every argument that is an array may be traced, so a batch of
    instances (e.g. ``eqx.tree_at`` of ``instance.epsilon``) and rates solves as one
    ``jax.vmap``, and ``jax.grad`` of a record differentiates through the integrator
    (diffrax's default ``RecursiveCheckpointAdjoint``; not with ``integrator.dense``).

    Parameters
    ----------
    instance : AbstractInstance
        Per-direction or binned problem.
    lr : AbstractLearningRate
        Learning-rate rule.
    times : array_like, shape (T,)
        Increasing recording times (not checked here; see
        [`solve_ode`][advdyn.theory.ode.solve_ode]).
    integrator : Integrator
        Solver, controller and step budget ([`make_integrator`][advdyn.theory.ode.make_integrator]).
    optimum : StationaryPoint, optional
        The adversarial optimum for ``dist_to_opt``; computed by the pure
        [`optimum`][advdyn.theory.stationary.optimum] when omitted.
    divergence_factor : float
        The solve stops when ``|theta - theta*|^2`` exceeds this factor times
        ``|theta_0 - theta*|^2 + |theta*|^2 + 1``.
    relaxed_above : float, optional
        Modes above this eigenvalue weigh `RELAXED_WEIGHT` in the error norm of the
        first interval (see [`solve_ode`][advdyn.theory.ode.solve_ode]; not checked here).
    throw : bool
        Raise (through ``equinox.error_if``, also under ``jit``) when the result is not
        successful. Under ``vmap`` a single failing element raises: pass ``False`` to get
        failure as data.

    Returns
    -------
    Solution
        ``ts`` and ``ys`` as JAX arrays (shape ``(T,)`` each, ``(..., T)`` under ``vmap``);
        ``result`` a [`RESULTS`][advdyn.solution.RESULTS] code (NaN records from a failure on);
        ``steps`` the integrator's steps; ``stats`` the solver's name.
    """
    from advdyn.theory.stationary import optimum as pure_optimum

    times = jnp.asarray(times, jnp.float64)
    if optimum is None:
        optimum = pure_optimum(instance)
    recorder = make_recorder(instance, optimum)
    blowup = jnp.asarray(divergence_factor, jnp.float64)
    above = None if relaxed_above is None else jnp.asarray(relaxed_above, jnp.float64)
    out, code, steps = _integrate(instance, lr, recorder, times, integrator, blowup, above)
    if throw:
        out = eqx.error_if(out, code != RESULTS.successful,
                           "the ODE diverged or its integrator failed (see Solution.result)")
    return Solution(times, out, "ode", stats={"solver": integrator.name}, result=code,
                    steps=steps)


def _relaxed_above(value, instance, lr: AbstractLearningRate, times: np.ndarray) -> float:
    """``value`` checked against the eigenvalue where relaxation before ``t_1`` is proven."""
    value = checks.positive(value, "relaxed_above")
    bound = relaxed_eigenvalue(lr, times, instance.loss)
    if bound is None:
        raise ConfigError("relaxed_above", "needs the least-squares loss and a rule without "
                          "state (constant or decay), where modes provably relax by the first "
                          "record; leave it unset")
    if value < bound * (1 - 1e-12):
        raise ConfigError("relaxed_above", f"must be at least {bound:.6g} = "
                          f"{RELAXED_EXPONENT:g} / int_t0^t1 gamma (modes below it have not "
                          f"relaxed by the first record), got {value:.6g}")
    return value


def _arguments(instance, lr, times_np, t_dev, rtol, atol, max_steps, divergence_factor,
               optimum, solver, relaxed_above):
    """The arguments of `_solve` for [`solve_ode`][advdyn.theory.ode.solve_ode]'s, with the solver
    chosen and
    the absolute tolerance and ``relaxed_above`` as used."""
    if relaxed_above is not None:
        relaxed_above = _relaxed_above(relaxed_above, instance, lr, times_np)
    kind = choose_solver(instance, lr, times_np, solver)
    if kind != "kvaerno5":  # the stability limit, not the tolerance, sets explicit steps
        relaxed_above = None
    d = float(instance.d)
    atol_used = max(atol, IMPLICIT_ATOL * rtol / d) if kind == "kvaerno5" else atol
    recorder = make_recorder(instance, optimum)
    f64 = jnp.float64
    args = (
        instance, lr, recorder, t_dev, jnp.asarray(rtol, f64), jnp.asarray(atol_used, f64),
        int(max_steps), jnp.asarray(divergence_factor, f64), kind,
        None if relaxed_above is None else jnp.asarray(relaxed_above, f64),
    )
    return args, kind, atol_used, relaxed_above


@float64
def solve_ode(
    instance: AbstractInstance,
    lr: AbstractLearningRate,
    times: Float[ArrayLike, " T"],
    *,
    rtol: float = 1e-8,
    atol: float = 1e-20,
    max_steps: int = 1_000_000,
    divergence_factor: float = 1e6,
    optimum: StationaryPoint | None = None,
    attrs: dict | None = None,
    solver: str = "auto",
    relaxed_above: float | None = None,
    throw: bool = True,
) -> Solution:
    """Integrate the deterministic-equivalent ODE and record THEORY section 11 quantities.

    Parameters
    ----------
    instance : AbstractInstance
        The problem; the initial state is built from ``instance.theta0``.
    lr : AbstractLearningRate
        Learning-rate rule ``gamma_t``.
    times : array_like, shape (T,)
        Increasing recording times starting at 0 (the initial state is placed at
        ``times[0]``). To compare with
        `simulate_sgd`, pass ``time_grid(d, t_max, n_times).times``: the
        SGD grid is aligned to whole steps and can end slightly before ``t_max``.
    rtol, atol : float
        Tolerances of the adaptive solver (``atol`` tiny, so that exponentially decaying
        quantities keep their relative accuracy; THEORY 10). The implicit solver uses
        ``max(atol, IMPLICIT_ATOL rtol / d)`` (`IMPLICIT_ATOL` = 10) instead:
        per-direction entries are of order ``1/d``, a tiny ``atol`` stalls its Newton
        iterations and makes it resolve the transients of relaxed modes near zero.
    max_steps : int
        Step budget of the solver per recording interval.
    divergence_factor : float
        The solve stops when ``|theta - theta*|^2`` exceeds this factor times
        ``|theta_0 - theta*|^2 + |theta*|^2 + 1``.
    optimum : StationaryPoint, optional
        The adversarial optimum for ``dist_to_opt`` (computed when omitted).
    attrs : dict, optional
        Extra entries for ``Solution.stats``.
    solver : {"auto", "tsit5", "kvaerno5"}
        The integrator (see `choose_solver`): explicit Tsit5, or implicit Kvaerno5
        with a PID controller (``pcoeff = icoeff = 0.3``) for stiff spectra (e.g. power laws
        with ``tr K = d``, whose top eigenvalue grows with ``d``).
    relaxed_above : float, optional
        The eigenvalue above which modes have relaxed before the first record: at least
        [`relaxed_eigenvalue`][advdyn.theory.spectral.relaxed_eigenvalue] of ``lr``, ``times`` and
        the
        instance's loss (least squares and a rule without state only). On the first
        recording interval those modes weigh `RELAXED_WEIGHT` in the implicit solver's
        error norm (its step-size control and Newton iterations): their transients, which
        records never see, are then followed at a looser tolerance, which saves steps that
        grow with ``ln lambda_max`` (none for the explicit solver, whose steps the stability
        limit sets; it is ignored there). Runs pass it where their bins are relaxed.
    throw : bool
        Whether a divergence or a solver failure raises `DivergenceError`; with ``False``
        it is data: ``result`` holds the code and the records from the failure on are NaN.

    Returns
    -------
    Solution
        ``ys`` on the time grid: those of `Recorder`
        (observables, ``lr``, ``dist_to_opt``, and the least-squares equivalence
        quantities where they apply); ``method = "ode"``; ``stats`` holds ``solver``,
        ``stiffness``, ``rtol``, ``atol`` (as used) and ``steps``; ``result`` a
        [`RESULTS`][advdyn.solution.RESULTS] code (``diverged`` where a record is not
        finite).

    Raises
    ------
    ConfigError
        If ``times`` are not increasing recording times, or ``relaxed_above`` is not a
        positive number at least [`relaxed_eigenvalue`][advdyn.theory.spectral.relaxed_eigenvalue]
        (or that
        bound does not apply to the loss or the rule).
    DivergenceError
        If the trajectory blows up (``adv_risk`` not finite or the bound above is
        crossed) or the solver fails (e.g. runs out of ``max_steps``), with ``throw``; it
        names the time and the learning rate.
    """
    checks.recording_times(times, "times")
    checks.learning_rate(lr, "lr")
    checks.theory_instance(instance)
    times_np = np.asarray(times, dtype=np.float64)
    t_dev = jax.device_put(times_np)  # (jnp.asarray would compile a copy kernel)
    args, kind, atol_used, relaxed_above = _arguments(
        instance, lr, times_np, t_dev, rtol, atol, max_steps, divergence_factor, optimum,
        solver, relaxed_above,
    )
    out, code, steps = _solve(*args)
    out = {k: np.asarray(v) for k, v in out.items()}
    finite = np.isfinite(out["adv_risk"])
    code = int(code)
    if code == RESULTS.successful and not finite.all():
        code = int(RESULTS.diverged)
    if throw and code != RESULTS.successful:
        i = int(np.argmin(finite)) if not finite.all() else len(finite) - 1
        # the rate at the last finite record (state-dependent rules need a finite state)
        lr_at = float(out["lr"][max(i - 1, 0)]) if lr.needs_state else float(lr(t_dev[i]))
        raise DivergenceError(
            "ode", float(times_np[i]), lr_at, "|theta|^2 grew without bound or the solver failed"
        )
    info = {
        "solver": kind,
        "stiffness": stiffness(instance, lr, times_np),
        "rtol": float(rtol),
        "atol": float(atol_used),
        "steps": int(steps),
    }
    if relaxed_above is not None:
        info["relaxed_above"] = float(relaxed_above)
    return Solution(np.asarray(times_np), out, "ode", stats={**info, **(attrs or {})},
                    result=np.asarray(code, np.int32))
