"""Stochastic modified equations of SGD and their solution with diffrax (SME 2).

For SGD ``x_{k+1} = x_k - eta g_k`` on an objective ``f`` with gradient covariance
``Sigma(x) = F(x) F(x)^T`` (`advdyn.sme.objectives`), in the time ``tau = k eta``:

* order 1: ``dX = -grad f(X) dtau + sqrt(eta) F(X) dW``;
* order 2: ``dX = -grad (f + (eta/4) |grad f|^2)(X) dtau + sqrt(eta) F(X) dW``, i.e. the drift
  ``-(grad f + (eta/2) H grad f)`` with the Hessian-vector product by forward-mode autodiff.

``time_scale = c`` rescales time, ``tau = c t`` (drift times ``c``, diffusion times
``sqrt(c)``). advdyn's high-dimensional scaling (THEORY 3) is ``eta = gamma / d``,
``t = k / d``, i.e. ``c = gamma`` ([`core_scaling`][advdyn.sme.equations.core_scaling]): then the
order-1 SME is
``dX = -gamma grad f dt + gamma sqrt(Sigma / d) dB``, THEORY 8's homogenized SGD with its
noise ``I K`` replaced by the exact ``Sigma``.

Schemes
-------
``"euler"``
    Euler-Maruyama (diffrax ``Euler`` on a ``MultiTerm`` of an ``ODETerm`` and a
    ``ControlTerm``), weak order 1 in ``dt``.
``"extrapolated"``
    Talay-Tubaro extrapolation ``2 E phi(X^{dt/2}) - E phi(X^{dt})`` of two Euler-Maruyama
    solutions driven by the *same* Brownian path: weak order 2 in ``dt`` for expectations
    (the per-path combination is not a path, only its mean is meaningful), and much less
    Monte Carlo noise than two independent runs.

Randomness
----------
The Brownian path of replicate ``r`` is [`GridBrownianPath`][advdyn.sme.equations.GridBrownianPath]
with key
``fold_in(fold_in(key, SME_STREAM), r)``; the increment of fine step ``j`` is drawn from
``fold_in(path_key, j)``. Results depend only on ``(key, r, dt)`` (or on ``brownian_dt``
instead of ``dt`` when it is given: solves at several ``dt`` then share their Brownian
paths); adding replicates leaves the existing ones unchanged, as for the core's simulators
([`advdyn.simulate`][advdyn.simulate]).
"""


import abc
from typing import TYPE_CHECKING

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
from equinox import AbstractVar
from jaxtyping import Array, Float

from advdyn import checks
from advdyn.deprecation import renamed, renamed_keyword
from advdyn.errors import DivergenceError
from advdyn.precision import as_float64, float64
from advdyn.sme.objectives import AbstractObjective
from advdyn.solution import RESULTS, Solution
from advdyn.typing import AnyArray

SME_STREAM = 0x534D4532
"""``fold_in`` constant (ASCII ``"SME2"``) separating the SME's Brownian stream from SGD's."""

SCHEMES = ("euler", "extrapolated")


class GridBrownianPath(diffrax.AbstractBrownianPath):
    """Counter-based Brownian motion on the grid ``j dt`` (exact Gaussian increments).

    The increment over fine step ``j`` is ``sqrt(dt) N(0, I)`` drawn from ``fold_in(key, j)``;
    ``evaluate(t0, t1)`` sums the fine increments between the grid points nearest to ``t0``
    and ``t1`` (at most ``max_span`` of them), so Euler-Maruyama at ``dt`` and at
    ``max_span * dt`` see the same path.

    Attributes
    ----------
    key : Array
        Key of this path.
    dt : float
        Fine grid step.
    t0, t1 : float
        Time interval.
    shape : tuple of int
        Shape of one increment.
    max_span : int
        Largest number of fine steps one ``evaluate`` may cover.
    """

    key: Array  # type: ignore[misc]
    dt: Array  # type: ignore[misc]
    t0: Array  # type: ignore[misc]
    t1: Array  # type: ignore[misc]
    shape: tuple[int, ...] = eqx.field(static=True)  # type: ignore[misc]
    max_span: int = eqx.field(static=True, default=2)
    levy_area: type = eqx.field(static=True, default=diffrax.BrownianIncrement)

    def evaluate(self, t0, t1=None, left: bool = True, use_levy: bool = False):
        """Increment ``W(t1) - W(t0)`` on the grid (``t1`` is required)."""
        if t1 is None:
            raise NotImplementedError("GridBrownianPath only evaluates increments")
        j0 = jnp.round((t0 - self.t0) / self.dt).astype(jnp.int32)
        j1 = jnp.round((t1 - self.t0) / self.dt).astype(jnp.int32)
        total = jnp.zeros(self.shape)
        for q in range(self.max_span):
            j = j0 + q
            z = jax.random.normal(jax.random.fold_in(self.key, j), self.shape)
            total = total + jnp.where(j < j1, z, 0.0)
        return jnp.sqrt(self.dt) * total


class AbstractSME(eqx.Module):
    """The interface [`solve_sme`][advdyn.sme.equations.solve_sme] integrates.

    An Ito SDE ``dz = drift(z) dtau + diffusion(z) dW`` in the time ``tau`` of the
    equation, with a Brownian motion ``W`` of ``noise_dim`` components, approximating SGD
    with step ``eta`` to weak order ``order``.

    Attributes
    ----------
    eta : float
        The SGD step the equation approximates.
    order : {1, 2}
        Order of the modified drift.
    """

    if TYPE_CHECKING:  # mypy reads AbstractVar as a dataclass field; a property it is not
        @property
        def eta(self) -> Array | float:
            """The SGD step."""
            ...

        @property
        def order(self) -> int:
            """Order of the modified drift."""
            ...

    else:
        eta: AbstractVar[Array]
        order: AbstractVar[int]

    def __check_init__(self):
        """Every SME: ``order`` 1 or 2 and ``eta > 0`` (``ValueError`` otherwise)."""
        if self.order not in (1, 2):
            raise ValueError(f"order must be 1 or 2, got {self.order}")
        if not np.all(np.asarray(self.eta) > 0):
            raise ValueError(f"eta must be positive, got {self.eta}")

    @property
    @abc.abstractmethod
    def noise_dim(self) -> int:
        """Number of Brownian components ``m``."""

    @abc.abstractmethod
    def drift(self, z: Float[AnyArray, " n"]) -> Float[Array, " n"]:
        """The drift at ``z``."""

    @abc.abstractmethod
    def diffusion(self, z: Float[AnyArray, " n"]) -> Float[Array, "n m"]:
        """The diffusion at ``z`` as a dense matrix."""

    @abc.abstractmethod
    def diffusion_operator(self, z: Float[AnyArray, " n"]) -> lx.AbstractLinearOperator:
        """The diffusion at ``z`` as a lineax operator (for diffrax's ``ControlTerm``)."""

    @abc.abstractmethod
    def observables(self, z: Float[AnyArray, " n"]) -> dict[str, Array]:
        """Recorded scalars at ``z``."""


class SME(AbstractSME):
    """The stochastic modified equation of order 1 or 2 of SGD with step ``eta`` on ``objective``.

    Attributes
    ----------
    objective : AbstractObjective
        Drift and diffusion come from it.
    eta : float
        SGD learning rate.
    order : {1, 2}
        Order of the modified drift.
    time_scale : float
        ``c`` in ``tau = c t`` (1: SGD time ``tau = k eta``).
    """

    objective: AbstractObjective
    eta: Array | float = eqx.field(converter=as_float64)
    order: int = eqx.field(static=True, default=1)
    time_scale: Array | float = eqx.field(converter=as_float64, default=1.0)

    def drift(self, theta: Float[AnyArray, " p"]) -> Float[Array, " p"]:
        """``-c grad f`` (order 1) or ``-c (grad f + (eta/2) H grad f)`` (order 2)."""
        g = self.objective.gradient(theta)
        if self.order == 2:
            _, hg = jax.jvp(self.objective.gradient, (theta,), (g,))
            g = g + 0.5 * self.eta * hg
        return -self.time_scale * g

    @property
    def noise_dim(self) -> int:
        """Brownian dimension (the objective's)."""
        return self.objective.noise_dim

    def observables(self, theta: Float[AnyArray, " p"]) -> dict[str, Array]:
        """The objective's recorded scalars."""
        return self.objective.observables(theta)

    def diffusion(self, theta: Float[AnyArray, " p"]) -> Float[Array, "p m"]:
        """``sqrt(c eta) F(theta)`` as a dense matrix."""
        return jnp.sqrt(self.time_scale * self.eta) * self.objective.noise_factor(theta)

    def diffusion_operator(self, theta: Float[AnyArray, " p"]) -> lx.FunctionLinearOperator:
        """``sqrt(c eta) F(theta)`` as a lineax operator (``O(d)`` for structured ``F``)."""
        scale = jnp.sqrt(self.time_scale * self.eta)
        structure = jax.ShapeDtypeStruct((self.objective.noise_dim,), theta.dtype)
        return lx.FunctionLinearOperator(
            lambda z: scale * self.objective.noise_apply(theta, z), structure)


@float64
def core_scaling(objective: AbstractObjective, gamma: float, d: int, order: int = 1) -> SME:
    """The SME in advdyn's scaling: ``eta = gamma / d``, time ``t = k / d`` (``c = gamma``).

    Parameters
    ----------
    objective : AbstractObjective
        Problem (its ``d`` coordinates in the eigenbasis).
    gamma : float
        The core's learning rate ``gamma`` (SGD step ``gamma / d``).
    d : int
        Dimension.
    order : {1, 2}
        SME order.

    Returns
    -------
    SME
    """
    return SME(objective, eta=gamma / d, order=order, time_scale=gamma)


def step_grid(t_max: float, dt: float, n_times: int) -> tuple[np.ndarray, int, int]:
    """Step-aligned recording grid: ``n_steps`` steps of ``dt``, a record every ``stride``.

    Parameters
    ----------
    t_max : float
        Horizon.
    dt : float
        Step.
    n_times : int
        Requested number of records (including 0).

    Returns
    -------
    ts : ndarray
        Recording times ``j stride dt``.
    stride, n_steps : int
        Steps between records and the total number of steps.
    """
    n_steps = max(1, round(t_max / dt))
    stride = max(1, n_steps // max(1, n_times - 1))
    n_rec = n_steps // stride
    return np.arange(n_rec + 1) * stride * dt, stride, n_rec * stride


def _euler_path(sme: AbstractSME, theta0, bm, dt, ts):
    terms: diffrax.MultiTerm = diffrax.MultiTerm(
        diffrax.ODETerm(lambda t, y, args: sme.drift(y)),
        diffrax.ControlTerm(lambda t, y, args: sme.diffusion_operator(y), bm),
    )
    sol = diffrax.diffeqsolve(
        terms, diffrax.Euler(), ts[0], ts[-1], dt0=dt, y0=theta0,
        saveat=diffrax.SaveAt(ts=ts), max_steps=None,
    )
    return sol.ys


def _paths(sme: AbstractSME, theta0, base, rs, ts, dt, scheme: str, chunk: int, span: int):
    """Every path's records and the [`RESULTS`][advdyn.solution.RESULTS] code (pure).

    ``span``: Brownian grid steps per Euler step (per fine step for ``"extrapolated"``).
    From the first record where any path has a non-finite observable on, every record is
    NaN and the code is ``diverged``.
    """
    shape = (sme.noise_dim,)
    obs = jax.vmap(sme.observables)

    def one(r):
        k = jax.random.fold_in(base, r)
        if scheme == "euler":
            bm = GridBrownianPath(k, dt / span, ts[0], ts[-1], shape, max_span=span)
            return obs(_euler_path(sme, theta0, bm, dt, ts))
        # one path: the coarse solve sums twice as many grid increments as the fine one
        h = dt / (2 * span)
        coarse_bm = GridBrownianPath(k, h, ts[0], ts[-1], shape, max_span=2 * span)
        fine_bm = GridBrownianPath(k, h, ts[0], ts[-1], shape, max_span=span)
        coarse = obs(_euler_path(sme, theta0, coarse_bm, dt, ts))
        fine = obs(_euler_path(sme, theta0, fine_bm, dt / 2, ts))
        return jax.tree.map(lambda f, c: 2 * f - c, fine, coarse)

    ys = jax.lax.map(one, rs, batch_size=chunk)
    bad = jnp.zeros(ts.shape, bool)
    for v in jax.tree.leaves(ys):  # (paths, T)
        bad = bad | ~jnp.all(jnp.isfinite(v), axis=0)
    failed = jnp.cumsum(bad) > 0
    ys = jax.tree.map(lambda v: jnp.where(failed, jnp.nan, v), ys)
    code = jnp.where(jnp.any(bad), RESULTS.diverged, RESULTS.successful).astype(jnp.int32)
    return ys, code


_solve_paths = eqx.filter_jit(_paths)


def _base_key(key: Array) -> Array:
    return jax.random.fold_in(key, SME_STREAM)


def _check_scheme(scheme: str) -> None:
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")


def _span(scheme: str, dt: float, brownian_dt: float | None) -> int:
    """Brownian grid steps per smallest solver step (checked)."""
    _check_scheme(scheme)
    smallest = dt if scheme == "euler" else dt / 2
    span = 1 if brownian_dt is None else round(smallest / brownian_dt)
    if span < 1 or abs(span * (brownian_dt or smallest) - smallest) > 1e-9 * smallest:
        raise ValueError(f"brownian_dt = {brownian_dt} must divide the solver step {smallest}")
    return span


@float64
def integrate_sme(
    sme: AbstractSME,
    theta0: Float[Array, " p"],
    key: Array,
    ts: Float[Array, " T"],
    dt: float | Array,
    *,
    replicates: int = 100,
    scheme: str = "euler",
    chunk: int | None = None,
    span: int = 1,
    throw: bool = True,
) -> Solution:
    """The SME over many Brownian paths as a pure function: ``jit``, ``vmap``, ``grad``.

    The same solve as [`solve_sme`][advdyn.sme.equations.solve_sme] with no host work: the
    recording times come in (``step_grid(t_max, dt, n_times)[0]``), only the static
    arguments are checked (up front), and no Python exception is raised from inside. The
    SME's array leaves (e.g. ``eta``, ``time_scale`` or the objective's parameters, set with
    ``equinox.tree_at``), ``theta0`` and ``dt`` may be traced: ``jax.vmap`` over them solves a
    grid at once, and ``jax.grad`` of a record differentiates through the Euler-Maruyama
    steps (fixed Brownian increments).

    Parameters
    ----------
    sme : AbstractSME
        As in [`solve_sme`][advdyn.sme.equations.solve_sme].
    theta0 : Array, shape (p,)
        Initial condition.
    key : jax.random key
        Path ``r`` uses ``fold_in(fold_in(key, SME_STREAM), r)``.
    ts : Array, shape (T,)
        Step-aligned recording times.
    dt : float or Array
        Step (the coarse one for ``"extrapolated"``).
    replicates : int
        Number of Brownian paths (static).
    scheme : {"euler", "extrapolated"}
        Static.
    chunk : int, optional
        Paths per vmapped batch (static; all at once when omitted).
    span : int
        Brownian grid steps per smallest solver step (static; 1: the grid is the solver's).
    throw : bool
        Raise (``equinox.error_if``) when a record is not finite; under ``vmap`` pass
        ``False`` for failure as data.

    Returns
    -------
    Solution
        ``ys[name]`` of shape ``(replicates, T)`` (JAX arrays), NaN from the first record where
        any path is not finite; ``result`` a [`RESULTS`][advdyn.solution.RESULTS] code;
        ``method = "sme1"`` or ``"sme2"``.

    Raises
    ------
    ValueError
        If ``scheme`` is not one of `SCHEMES`, or ``replicates``, ``span`` or ``chunk`` is
        not a positive integer (a ``ConfigError`` naming it).
    """
    _check_scheme(scheme)  # static Python values: checked before tracing, at no JAX cost
    checks.integer(replicates, "replicates", 1)
    checks.integer(span, "span", 1)
    if chunk is not None:
        checks.integer(chunk, "chunk", 1)
    ts = jnp.asarray(ts, jnp.float64)
    ys, code = _paths(sme, jnp.asarray(theta0, jnp.float64), _base_key(key),
                      jnp.arange(replicates), ts, jnp.asarray(dt, jnp.float64), scheme,
                      int(chunk or replicates), span)
    if throw:
        ys = eqx.error_if(ys, code != RESULTS.successful,
                          "the SME diverged: a record is not finite (see Solution.result)")
    return Solution(ts, ys, f"sme{sme.order}", replicated=True,
                    stats={"scheme": scheme, "replicates": int(replicates)}, result=code)


@float64
def solve_sme(
    sme: AbstractSME,
    theta0: Float[AnyArray, " p"],
    key: Array,
    *,
    t_max: float,
    dt: float,
    n_times: int = 21,
    replicates: int | None = None,
    scheme: str = "euler",
    chunk: int | None = None,
    brownian_dt: float | None = None,
    paths: int | None = None,  # rename29: keep (deprecated: replicates)
) -> Solution:
    """Solve the SME for many Brownian paths (vmapped) and record the objective's observables.

    Parameters
    ----------
    sme : AbstractSME
        The equation ([`SME`][advdyn.sme.equations.SME] or
        [`GameSME`][advdyn.sme.game.GameSME]).
    theta0 : Array, shape (p,)
        Deterministic initial condition.
    key : jax.random key
        Seed key (e.g. ``jax.random.key(seed)``); path ``r`` uses
        ``fold_in(fold_in(key, SME_STREAM), r)``.
    t_max : float
        Horizon (in the equation's time; for an [`SME`][advdyn.sme.equations.SME],
        ``tau / time_scale``).
    dt : float
        Step (for ``"extrapolated"``: the coarse step; the fine one is ``dt / 2``).
    n_times : int
        Requested number of records (step-aligned, see
        [`step_grid`][advdyn.sme.equations.step_grid]).
    replicates : int, optional
        Number of Brownian paths (default 100).
    scheme : {"euler", "extrapolated"}
        Euler-Maruyama or its Talay-Tubaro extrapolation (weak order 2).
    chunk : int, optional
        Paths per vmapped batch (memory bound); all at once when omitted.
    brownian_dt : float, optional
        Step of the Brownian grid ([`GridBrownianPath`][advdyn.sme.equations.GridBrownianPath]); it
        must divide the solver's
        smallest step (``dt``, or ``dt / 2`` for ``"extrapolated"``), which is the default.
        Solves with different ``dt`` and the same ``brownian_dt`` and key see the same
        Brownian paths (for measuring the discretisation error with common noise).
    paths : int, optional
        Deprecated name of ``replicates`` (until advdyn 0.2); passing both is a
        ``TypeError``.

    Returns
    -------
    Solution
        ``ys[name]`` of shape ``(replicates, T)`` for every observable, ``method = "sme1"`` or
        ``"sme2"``, ``replicated = True``; ``stats`` names the scheme, ``dt`` and ``eta``.

    Raises
    ------
    DivergenceError
        If a recorded observable of a path is not finite (the SME blew up at this ``dt``);
        it names the first such time and ``eta``.
    """
    replicates = renamed_keyword("advdyn.sme.solve_sme", "paths", paths,  # rename29: keep
                                 "replicates", replicates, 100)
    span = _span(scheme, dt, brownian_dt)
    smallest = dt if scheme == "euler" else dt / 2
    ts, _, _ = step_grid(t_max, dt, n_times)
    theta0 = jnp.asarray(theta0, jnp.float64)
    ys, code = _solve_paths(sme, theta0, _base_key(key), jnp.arange(replicates),
                            jnp.asarray(ts), jnp.asarray(dt, jnp.float64), scheme,
                            int(chunk or replicates), span)
    ys = {k: np.asarray(v) for k, v in ys.items()}
    if int(code) != RESULTS.successful:
        first = int(np.argmax(np.isnan(next(iter(ys.values()))[0])))
        raise DivergenceError(f"sme{sme.order}", float(ts[first]), float(sme.eta),
                              "a recorded observable of a Brownian path was not finite",
                              advice="Lower eta or dt.")
    stats = {"scheme": scheme, "dt": float(dt), "brownian_dt": float(smallest / span),
             "eta": float(sme.eta), "order": sme.order, "replicates": int(replicates),
             "stream": f"fold_in(key, {SME_STREAM:#x})"}
    if isinstance(sme, SME):
        stats["time_scale"] = float(sme.time_scale)
    return Solution(np.asarray(ts), ys, f"sme{sme.order}", replicated=True, stats=stats)


@eqx.filter_jit
def recorded_replicates(step, observe, model, state0, key, rs, stride, n_rec: int, chunk: int):
    """Independent runs of a stochastic recursion, recorded every ``stride`` steps.

    Run ``r`` uses ``fold_in(key, r)`` and its step ``k`` ``fold_in(fold_in(key, r), k)``,
    so a run's numbers depend only on the key, ``r`` and ``k`` (not on ``chunk``).

    Parameters
    ----------
    step, observe : callable
        ``step(model, state, key) -> state`` and ``observe(model, state) -> dict``;
        module-level functions (static under ``jit``).
    model, state0 : pytree
        What ``step`` reads (e.g. ``(objective, eta)``) and the initial state.
    key : jax.random key
    rs : Array, shape (R,)
        Run indices.
    stride : Array
        Steps per record.
    n_rec : int
        Records after the initial one.
    chunk : int
        Runs per vmapped batch.

    Returns
    -------
    dict
        ``observe``'s values, each of shape ``(R, n_rec + 1)``.
    """
    def one(r):
        k_r = jax.random.fold_in(key, r)

        def interval(state, j):
            def body(i, st):
                return step(model, st, jax.random.fold_in(k_r, j * stride + i))

            state = jax.lax.fori_loop(0, stride, body, state)
            return state, state

        _, states = jax.lax.scan(interval, state0, jnp.arange(n_rec))
        states = jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), state0, states)
        return jax.vmap(lambda s: observe(model, s))(states)

    return jax.lax.map(one, rs, batch_size=chunk)


def _sgd_step(model, theta, key):
    objective, eta = model
    return theta - eta * objective.stochastic_gradient(theta, key)


def _sgd_observe(model, theta):
    return model[0].observables(theta)


@float64
def simulate_objective_sgd(
    objective: AbstractObjective,
    eta: float,
    theta0: Float[AnyArray, " p"],
    key: Array,
    *,
    t_max: float,
    n_times: int = 21,
    replicates: int | None = None,
    time_scale: float = 1.0,
    chunk: int | None = None,
    paths: int | None = None,  # rename29: keep (deprecated: replicates)
) -> Solution:
    """SGD ``x_{k+1} = x_k - eta g_k`` on ``objective``, many independent runs (vmapped).

    Parameters
    ----------
    objective : AbstractObjective
        Supplies [`stochastic_gradient`][advdyn.sme.AbstractObjective.stochastic_gradient].
    eta : float
        Learning rate.
    theta0 : Array, shape (p,)
        Initial iterate.
    key : jax.random key
        Seed key; run ``r`` uses ``fold_in(key, r)`` and step ``k`` of it
        ``fold_in(fold_in(key, r), k)``.
    t_max : float
        Horizon in the time ``t = k eta / time_scale``.
    n_times : int
        Requested number of records (step-aligned).
    replicates : int, optional
        Number of runs (default 100).
    time_scale : float
        ``c``: one step advances time by ``eta / c`` (``c = gamma``, ``eta = gamma/d`` gives
        ``t = k/d``).
    chunk : int, optional
        Runs per vmapped batch.
    paths : int, optional
        Deprecated name of ``replicates`` (until advdyn 0.2); passing both is a
        ``TypeError``.

    Returns
    -------
    Solution
        ``ys[name]`` of shape ``(replicates, T)``, ``method = "sgd"``.
    """
    replicates = renamed_keyword("advdyn.sme.simulate_objective_sgd",  # rename29: keep
                                 "paths", paths, "replicates", replicates, 100)  # rename29: keep
    dt = eta / time_scale
    ts, stride, _ = step_grid(t_max, dt, n_times)
    ys = recorded_replicates(_sgd_step, _sgd_observe,
                             (objective, jnp.asarray(eta, jnp.float64)),
                             jnp.asarray(theta0, jnp.float64), key, jnp.arange(replicates),
                             jnp.asarray(stride), len(ts) - 1, int(chunk or replicates))
    ys = {k: np.asarray(v) for k, v in ys.items()}
    stats = {"eta": float(eta), "time_scale": float(time_scale), "replicates": int(replicates),
             "stream": "fold_in(key, r), fold_in(., k)"}
    return Solution(np.asarray(ts), ys, "sgd", replicated=True, stats=stats)

#: old names (advdyn 0.1), served with a DeprecationWarning until 0.2
__getattr__ = renamed(__name__, {
    "simulate_sgd": "simulate_objective_sgd",  # rename29: keep
    "recording_grid": "step_grid",  # rename29: keep
    "recorded_paths": "recorded_replicates",  # rename29: keep
})
