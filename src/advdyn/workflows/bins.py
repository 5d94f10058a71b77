"""Spectral bins in a run: the instances a config needs, the doubled-bins check and
[`converge_bins`][advdyn.workflows.bins.converge_bins] (double the bins until ``adv_risk`` stops
changing)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import xarray as xr

from advdyn.config import schema as C
from advdyn.config.build import (
    binned_from_config,
    config_edges,
    config_path_applies,
    config_supported,
    instantiate,
    make_learning_rate,
)
from advdyn.io import to_dataset
from advdyn.precision import float64
from advdyn.problem.losses import make_loss
from advdyn.simulate.sgd import time_grid
from advdyn.solution import Solution
from advdyn.theory.ode import solve_ode
from advdyn.theory.spectral import BinnedInstance, bin_instance, relaxed_eigenvalue


def config_relaxed_eigenvalue(config: C.Config) -> float | None:
    """[`relaxed_eigenvalue`][advdyn.workflows.bins.relaxed_eigenvalue] of a run: its rule, its
    record grid and its loss.

    Parameters
    ----------
    config : Config
        A validated configuration.

    Returns
    -------
    float or None
        ``None`` unless it changes the run's bins: when ``run.bins`` is unset,
        ``run.bins_relaxed`` is off, the rule has a state (Polyak, line search), the loss is
        not least squares, or the bins built from the config stay the same (not a power
        law, or no eigenvalue above it). Runs apply it only to bins built from the config
        (`spectral_instances`).
    """
    rc = config.run
    if (rc.bins is None or not rc.bins_relaxed
            or not isinstance(config.lr, (C.ConstantLR, C.DecayLR))
            or not config_supported(config.problem)):
        return None
    grid = time_grid(config.problem.d, rc.t_max, rc.n_times, rc.block_size)
    above = relaxed_eigenvalue(
        make_learning_rate(config.lr), grid.times, make_loss(config.problem.loss)
    )
    if above is None or np.array_equal(config_edges(config.problem, rc.bins, relaxed_above=above),
                                       config_edges(config.problem, rc.bins)):
        return None
    return above


# ----------------------------------------------------------------------------- convergence
@dataclass(frozen=True)
class BinsConvergence:
    """Outcome of [`converge_bins`][advdyn.workflows.bins.converge_bins].

    Attributes
    ----------
    bins : int
        Requested bin count of the accepted solution.
    n_bins : int
        Bins actually used (may be fewer: ties, exact spectra).
    rel_change : float
        Largest relative change of ``adv_risk`` over time between ``bins`` and the
        previous (half) count; ``nan`` when only one count was tried.
    converged : bool
        Whether ``rel_change < tol``.
    history : list of (int, float)
        ``(bins, rel_change)`` for every count tried.
    dataset : xarray.Dataset
        The ODE solution at ``bins``.
    """

    bins: int
    n_bins: int
    rel_change: float
    converged: bool
    history: list
    dataset: xr.Dataset


def adv_risk_change(a: xr.Dataset | Solution, b: xr.Dataset | Solution) -> float:
    """Largest relative difference of ``adv_risk`` between two ODE solutions on one grid.

    Parameters
    ----------
    a, b : xarray.Dataset or Solution
        Solutions with ``adv_risk`` on the same time grid.

    Returns
    -------
    float
        ``max_t |a - b| / |a|``.
    """
    ra, rb = np.asarray(a["adv_risk"]), np.asarray(b["adv_risk"])
    return float(np.max(np.abs(ra - rb) / np.abs(ra)))


def make_binned(
    source, n_bins: int, spacing: str = "auto", relaxed_above: float | None = None
) -> BinnedInstance:
    """Bins of a config (without an instance) or of a realised instance.

    Parameters
    ----------
    source : ProblemConfig or ProblemInstance
        A config is binned with [`binned_from_config`][advdyn.binned_from_config], an instance with
        [`bin_instance`][advdyn.bin_instance].
    n_bins : int
        Requested number of bins.
    spacing : {"auto", "quantile", "log"}
        Bin spacing.
    relaxed_above : float, optional
        Coarser log bins above this eigenvalue
        ([`relaxed_eigenvalue`][advdyn.workflows.bins.relaxed_eigenvalue]).

    Returns
    -------
    BinnedInstance
    """
    if isinstance(source, C.ProblemConfig):
        return binned_from_config(source, n_bins, spacing, relaxed_above=relaxed_above)
    return bin_instance(source, n_bins, spacing, relaxed_above)


@float64
def converge_bins(
    source,
    lr,
    times,
    *,
    bins: int = 32,
    tol: float = 1e-4,
    max_bins: int = 4096,
    spacing: str = "auto",
    relaxed: bool = True,
    **solve_kwargs,
) -> BinsConvergence:
    """Double the number of bins until ``adv_risk`` changes by less than ``tol``.

    Since the quadrature error falls as ``n_bins^-2`` (module docstring), the change
    between ``B`` and ``2B`` bins is about three times the remaining error at ``2B``.

    Parameters
    ----------
    source : ProblemConfig or ProblemInstance
        What to bin (see `make_binned`).
    lr : AbstractLearningRate
        Learning-rate rule.
    times : array_like
        Recording times.
    bins : int
        First bin count.
    tol : float
        Accept when the largest relative change of ``adv_risk`` over time is below it.
    max_bins : int
        Stop doubling here (``converged`` is then false if the change is still too big).
    spacing : {"auto", "quantile", "log"}
        Bin spacing.
    relaxed : bool
        Coarser log bins for the modes relaxed before the first record, where
        [`relaxed_eigenvalue`][advdyn.workflows.bins.relaxed_eigenvalue] applies (least squares, a
        rule without state) and the
        source is a config (a realised instance's initial products vary by direction, so
        coarse bins would misstate the record at ``t_0``).
    **solve_kwargs
        Passed to [`advdyn.theory.ode.solve_ode`][advdyn.theory.solve_ode] (``rtol``, ``atol``,
        ...).

    Returns
    -------
    BinsConvergence
    """
    # only bins built from a config: their initial products are the same in every direction,
    # so coarse bins keep the record at t_0 exact (a realised instance's are not)
    from_config = isinstance(source, C.ProblemConfig)
    above = (relaxed_eigenvalue(lr, times, make_loss(source.loss))
             if relaxed and from_config else None)
    binned = make_binned(source, bins, spacing, above)
    solve_kwargs = {"relaxed_above": above, **solve_kwargs}
    prev = to_dataset(solve_ode(binned, lr, times, **solve_kwargs))
    history = [(bins, math.nan)]
    change = math.nan
    # exact bins (every bin holds equal eigenvalues) cannot improve with more bins
    while bins < max_bins:
        finer = make_binned(source, 2 * bins, spacing, above)
        if finer.n_bins == binned.n_bins:
            change = 0.0
            history.append((2 * bins, change))
            bins, binned = 2 * bins, finer
            break
        ds = to_dataset(solve_ode(finer, lr, times, **solve_kwargs))
        change = adv_risk_change(ds, prev)
        bins, binned, prev = 2 * bins, finer, ds
        history.append((bins, change))
        if change < tol:
            break
    return BinsConvergence(bins, binned.n_bins, change, bool(change < tol), history, prev)


def spectral_instances(config: C.Config):
    """The realised instance and the ODE's binned instance a run needs.

    Parameters
    ----------
    config : Config
        A validated configuration.

    Returns
    -------
    instance : ProblemInstance or None
        The drawn instance; ``None`` when `config_path_applies` (no simulator runs).
    binned : BinnedInstance or None
        ``None`` without ``run.bins``; built from the config when ``instance`` is ``None``,
        else by [`bin_instance`][advdyn.bin_instance].
    """
    bins = config.run.bins
    if config_path_applies(config):
        assert bins is not None  # the config path needs run.bins
        above = config_relaxed_eigenvalue(config)
        return None, binned_from_config(config.problem, bins, relaxed_above=above)
    instance = instantiate(config.problem)
    # a realised instance keeps plain bins: its initial products vary from direction to
    # direction, so a coarse bin would misstate the record at t_0 (6.6% at d = 4000, 16 bins)
    return instance, (bin_instance(instance, bins) if bins is not None else None)


def plain_spectral_instances(config: C.Config):
    """`spectral_instances` with any bins built without the relaxed coarsening, which
    depends on the rate and the radius: for studies that vary them (``advdyn phase``,
    ``advdyn critical-exact``).

    Parameters
    ----------
    config : Config
        A validated configuration.

    Returns
    -------
    instance, binned
        As `spectral_instances`.
    """
    if config.run.bins:
        config = config.with_overrides(**{"run.bins_relaxed": False})
    return spectral_instances(config)


def doubled_bins_check(
    config: C.Config, instance, binned: BinnedInstance, ds, solve,
    relaxed_above: float | None = None,
) -> dict:
    """Re-solve with twice the bins and report the change of ``adv_risk``.

    Parameters
    ----------
    config : Config
        The run's configuration (``run.bins``).
    instance : ProblemInstance or None
        The realised instance the bins came from, or ``None`` for the config path.
    binned : BinnedInstance
        The bins the run used.
    ds : xarray.Dataset or Solution
        Its ODE solution.
    solve : callable
        ``solve(binned_instance) -> Dataset`` or ``-> Solution`` (same grid, rule and
        tolerances).
    relaxed_above : float, optional
        The relaxed-decade eigenvalue the run's bins used (`config_relaxed_eigenvalue`),
        so that the doubled bins are built the same way.

    Returns
    -------
    dict
        ``bins`` (requested), ``bins_used``, ``bins_rel_change`` (largest relative change of
        ``adv_risk`` over time with ``2 * bins``; about three times the quadrature error,
        which falls as ``bins^-2``; 0 when the bins are already exact) and ``bins_source``
        (``"config"`` or ``"instance"``).
    """
    source = config.problem if instance is None else instance
    bins = config.run.bins
    assert bins is not None  # doubled_bins_check runs only with run.bins
    finer = make_binned(source, 2 * bins, relaxed_above=relaxed_above)
    change = 0.0 if finer.n_bins == binned.n_bins else adv_risk_change(ds, solve(finer))
    return {
        "bins": int(bins),
        "bins_used": int(binned.n_bins),
        "bins_rel_change": float(change),
        "bins_source": "config" if instance is None else "instance",
    }
