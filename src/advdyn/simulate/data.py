"""Streaming adversarial SGD on the rows of a data set (THEORY sections 2-3, real data).

The same step as [`simulate_sgd`][advdyn.simulate.simulate_sgd] (the exact l2 attack of a
linear model, ``theta <- theta - (gamma_t / d) grad``), on a row of the data drawn uniformly
with replacement at every step instead of a Gaussian sample: the only difference from the
theory is the data. The row of replicate ``r`` at step ``k`` is ``floor(u n)`` with ``u`` the
step's uniform of the Philox stream (`advdyn.simulate.streams`, counter ``(r, k)``), so a
trajectory depends on the seed, ``r`` and ``k`` only, never on the recording grid, the
replicate count or the block size. The uniform is ``(m + 1/2) / 2^32`` in float64 for a 32-bit
word ``m`` (whatever ``dtype``), so row ``j`` is drawn with probability ``c_j / 2^32``,
``c_j`` the number of words it receives, ``floor(2^32 / n)`` or one more: uniform to a
relative ``n / 2^32`` (``2.3e-4`` at ``n = 10^6``).

Records: the risks a user measures on the data, ``adv_risk``, ``clean_risk`` (and
``clean_error``, ``robust_error`` for classification), are averages over every row (the
data's empirical distribution is the distribution SGD samples); the surrogate's values of
the same iterate keep their names with a ``surrogate_`` prefix, and the order parameters
(``norm``, ``overlap``, ``dist_to_opt``, ``lr``) are those of the surrogate instance. On
a binned surrogate (no eigenbasis, ``measured_only``) the rows stay in the original basis
and only the measured risks, ``norm``, ``overlap`` and ``lr`` are recorded. Divergence is
judged on the records kept ([`diverged`][advdyn.simulate.driver.diverged]): the iterate's
distance to ``theta*`` from ``norm`` and ``overlap``, and the measured ``adv_risk``.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike
from jaxtyping import Key

from advdyn import checks
from advdyn.errors import ConfigError
from advdyn.precision import float64
from advdyn.problem.instance import ProblemInstance
from advdyn.simulate.driver import Progress, TimeGrid, integrate_replicates, run_replicates
from advdyn.simulate.sgd import scan_steps
from advdyn.simulate.streams import step_scalars, stream_words
from advdyn.solution import Solution
from advdyn.theory.rates import AbstractLearningRate
from advdyn.theory.stationary import StationaryPoint
from advdyn.typing import Array

#: Recorded quantities that are measured on the data rows (the surrogate's keep a prefix).
DATA_QUANTITIES = ("adv_risk", "clean_risk", "clean_error", "robust_error")
#: What a record keeps of the recorder's on a binned surrogate (true in any basis).
BASIS_FREE = ("norm", "overlap", "lr")


class _RowBlock(eqx.Module):
    """One block of SGD steps on sampled rows (the ``block_fn`` of
    [`run_replicates`][advdyn.simulate.driver.run_replicates])."""

    rows: Array
    targets: Array

    def __call__(self, theta, words, r, k0, n_valid, instance, lr, block):
        offsets = jnp.arange(block)
        ks = k0 + offsets
        n = self.rows.shape[0]
        u, _ = jax.vmap(lambda k: step_scalars(words, r, k, theta.dtype))(ks)
        idx = jnp.minimum(jnp.floor(u * n).astype(jnp.int64), n - 1)
        x = self.rows[idx].astype(theta.dtype)
        y = self.targets[idx].astype(theta.dtype)
        return scan_steps(theta, x, y, ks, offsets < n_valid, instance, lr)


@eqx.filter_jit
def data_risks(thetas: Array, rows: Array, targets: Array, instance: ProblemInstance):
    """Risks of iterates averaged over every row of the data (float64; the predictions
    ``<theta, x_j>`` in the rows' dtype).

    Parameters
    ----------
    thetas : Array, shape (R, d)
        Iterates in the eigenbasis of ``rows``.
    rows : Array, shape (n, d)
    targets : Array, shape (n,)
    instance : ProblemInstance
        Supplies the loss, ``eps`` and the task.

    Returns
    -------
    dict of str to Array, shape (R,)
        ``adv_risk`` (``mean_j l_eps(<theta, x_j>, y_j)``, ridge excluded), ``clean_risk``
        and, for classification, ``clean_error`` (``y <theta, x> <= 0``) and
        ``robust_error`` (``y <theta, x> <= eps |theta|``).
    """
    y = targets.astype(jnp.float64)

    def one(theta):
        # the predictions in the rows' dtype (no float64 copy of the table), then float64
        r = (rows @ theta.astype(rows.dtype)).astype(jnp.float64)
        theta = theta.astype(jnp.float64)
        a = instance.epsilon * jnp.sqrt(jnp.sum(theta * theta))
        out = {"adv_risk": jnp.mean(instance.loss.adversarial(r, a, y)[0]),
               "clean_risk": jnp.mean(instance.loss(r, y))}
        if instance.task == "classification":
            out["clean_error"] = jnp.mean(y * r <= 0)
            out["robust_error"] = jnp.mean(y * r - a <= 0)
        return out

    return jax.lax.map(one, thetas)


class _Measurement(eqx.Module):
    """The ``measure(thetas, rec)`` of a record: the risks measured on the rows, the
    surrogate's as ``surrogate_*`` (or only `BASIS_FREE` ones when ``measured_only``).
    A module, so that the compiled record interval takes the rows as traced arrays."""

    rows: Array
    targets: Array
    instance: ProblemInstance
    measured_only: bool = eqx.field(static=True)

    def __call__(self, thetas, rec):
        measured = data_risks(thetas, self.rows, self.targets, self.instance)
        if self.measured_only:
            out = {k: rec[k] for k in BASIS_FREE}
        else:
            out = {(f"surrogate_{k}" if k in measured else k): v for k, v in rec.items()}
        out.update(measured)
        return out


def integrate_data_sgd(
    instance: ProblemInstance,
    lr: AbstractLearningRate,
    key: Key[Array, ""],
    grid: TimeGrid,
    *,
    rows: Array,
    targets: Array,
    replicates: int = 4,
    dtype: str = "float32",
    divergence_factor: float | Array = 1e6,
    optimum: StationaryPoint | None = None,
    throw: bool = True,
    measured_only: bool = False,
) -> Solution:
    """SGD on the rows of a data set as a pure function: ``jit`` and ``vmap`` go through it.

    The trajectories and records of
    [`simulate_data_sgd`][advdyn.simulate.data.simulate_data_sgd] on the same key and grid,
    with no host work, as
    [`integrate_sgd`][advdyn.simulate.integrate_sgd] is to ``simulate_sgd``: the instance's
    and the rate's array leaves may be traced (grid points x replicates as one ``vmap``),
    ``rows`` and ``targets`` are shared by every point.

    Parameters
    ----------
    instance, lr, key, grid, replicates, dtype, divergence_factor, optimum, throw
        As for [`integrate_sgd`][advdyn.simulate.integrate_sgd].
    rows : Array, shape (n, d)
        The rows in the eigenbasis of ``instance``, or in the basis of a binned surrogate's
        rows instance (``measured_only``), in their own dtype (float32 or float64): the
        rows a step samples are cast to ``dtype``, never the table.
    targets : Array, shape (n,)
    measured_only : bool
        As for ``simulate_data_sgd`` (static): only the risks measured on the rows,
        ``norm``, ``overlap`` and ``lr`` are recorded, and no optimum is used (``optimum``
        is ignored). The caller refuses a rate that reads the iterate's statistics.

    Returns
    -------
    Solution
        Method ``"data_sgd"``, ``ys`` of shape ``(replicate, time)``: the risks measured on
        the rows and the surrogate's as ``surrogate_*`` (module docstring); divergence is
        judged on the measured records.
    """
    rows = jnp.asarray(rows)  # as they are: each step casts its sampled rows to ``dtype``
    targets = jnp.asarray(targets, jnp.float64)
    return integrate_replicates(
        "data_sgd", _RowBlock(rows, targets), instance, lr, stream_words(key), grid,
        replicates, dtype=dtype, optimum=optimum, divergence_factor=divergence_factor,
        throw=throw, measure=_Measurement(rows, targets, instance, measured_only),
        record_optimum=not measured_only)


@float64(keep=("rows",))
def simulate_data_sgd(
    instance: ProblemInstance,
    rows: ArrayLike,
    targets: ArrayLike,
    lr: AbstractLearningRate,
    key: Key[Array, ""],
    *,
    t_max: float,
    n_times: int = 51,
    replicates: int = 4,
    dtype: str = "float32",
    block_size: int = 64,
    divergence_factor: float = 1e6,
    progress: Progress | None = None,
    optimum: StationaryPoint | None = None,
    measured_only: bool = False,
) -> Solution:
    """Run streaming adversarial SGD on rows of a data set, a new row per step.

    Parameters
    ----------
    instance : ProblemInstance
        The data's surrogate ([`advdyn.config.build.data_problem`][advdyn.config.build.data_problem]
        or `advdyn.problem.data.surrogate_instance`): loss, ``eps``, ridge, ``theta_0`` and
        the order parameters' reference vectors, in the eigenbasis of ``rows``.
    rows : array, shape (n, d)
        The data's rows in the same eigenbasis, float32 or float64 (other dtypes are
        converted to float64). They are used as they are, not widened nor narrowed (one
        table on the device, in its own dtype): the rows each step samples are cast to
        ``dtype``, and the risks measured over every row take the predictions in the rows'
        dtype and average them in float64.
    targets : array, shape (n,)
        Their targets (``+/-1`` for classification).
    lr, key, t_max, n_times, replicates, dtype, block_size, divergence_factor, progress, optimum
        As for [`simulate_sgd`][advdyn.simulate.simulate_sgd].
    measured_only : bool
        ``instance`` is only right up to its covariance (the rows' basis is not its
        eigenbasis: [`rows_basis_instance`][advdyn.problem.data.rows_basis_instance]): record
        the risks measured on the rows, ``norm``, ``overlap`` and ``lr``, and refuse a rate
        that reads the iterate's statistics. Needed for an instance without eigenvalues
        (NaN, as ``rows_basis_instance`` gives).

    Returns
    -------
    Solution
        Method ``"data_sgd"``, ``ys`` of shape ``(replicate, time)`` (module docstring for
        which records are measured on the rows); ``stats`` adds ``n_rows``.

    Raises
    ------
    ConfigError
        If ``rows`` is not ``(n, d)`` with ``n >= 2`` or ``targets`` not ``(n,)`` (fields
        ``rows``, ``targets``), an instance without eigenvalues is not ``measured_only``
        (field ``instance``) or a run argument is invalid.
    DivergenceError
        If the risk becomes non-finite or exceeds the divergence threshold.
    """
    checks.simulation(instance.d, t_max, n_times, replicates, block_size, lr, key, dtype)
    if measured_only and lr.needs_state:
        raise ConfigError("lr.kind", "Polyak and line-search rates read the surrogate's "
                          "statistics of the iterate, which a binned spectrum does not give "
                          "for SGD on the rows; use a constant or decaying rate, or "
                          "problem.data.spectrum = 'dense'")
    # a JAX array is used as it is; anything else is put on the device once
    rows_np = rows if isinstance(rows, jax.Array) else np.asarray(rows)
    if rows_np.ndim != 2 or rows_np.shape[1] != instance.d or rows_np.shape[0] < 2:
        raise ConfigError("rows", f"must have shape (n >= 2, {instance.d}), got {rows_np.shape}")
    if np.shape(targets) != (rows_np.shape[0],):
        raise ConfigError("targets", f"must have shape ({rows_np.shape[0]},), got "
                          f"{np.shape(targets)}")
    if not measured_only:
        checks.theory_instance(instance, remedy="run it with measured_only=True")
    if rows_np.dtype not in (np.float32, np.float64):
        rows_np = rows_np.astype(np.float64)
    rows_j = jax.device_put(rows_np)
    targets_j = jax.device_put(np.asarray(targets, np.float64))
    amend = _Measurement(rows_j, targets_j, instance, measured_only)
    return run_replicates(
        "data_sgd", _RowBlock(rows_j, targets_j), instance, lr, stream_words(key), replicates,
        t_max=t_max, n_times=n_times, dtype=dtype, block_size=block_size,
        divergence_factor=divergence_factor, progress=progress, optimum=optimum,
        attrs={"stream": "philox4x32-10(key, (j, k, r)): row floor(u n) of step k",
               "n_rows": int(rows_np.shape[0])},
        amend=amend, record_optimum=not measured_only,
    )
