"""The one place that turns a validated config into the objects the mathematics uses.

Spectrum configs become eigenvalues
([`eigen_decomposition`][advdyn.config.build.eigen_decomposition]), a problem config becomes a
drawn [`ProblemInstance`][advdyn.problem.ProblemInstance]
([`instantiate`][advdyn.config.build.instantiate]) or spectral bins without
an instance ([`binned_from_config`][advdyn.config.build.binned_from_config]), and a learning-rate
config becomes a rule
([`make_learning_rate`][advdyn.config.build.make_learning_rate]). Nothing under
[`advdyn.problem`][advdyn.problem], [`advdyn.theory`][advdyn.theory] or
[`advdyn.simulate`][advdyn.simulate] imports a config class.
"""

from __future__ import annotations

import collections
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from advdyn import checks
from advdyn.config import schema as C
from advdyn.errors import ConfigError
from advdyn.io.arrays import data_columns, load_data_table, load_npy
from advdyn.precision import as_float64, float64
from advdyn.problem.data import (
    MixtureStatistics,
    SpectralStatistics,
    mixture_statistics,
    rows_basis_instance,
    rows_in_eigenbasis,
    spectral_statistics,
    standardize,
    surrogate_diagnostics,
    surrogate_instance,
)
from advdyn.problem.instance import ProblemInstance, seed_sequences
from advdyn.problem.losses import AbstractLoss, make_loss
from advdyn.problem.spectra import (
    LAWS,
    breakpoints,
    eigenvalue_at,
    identity,
    marchenko_pastur,
    power_law,
    two_level,
    uniform,
)
from advdyn.theory.ode import Integrator
from advdyn.theory.rates import AbstractLearningRate, Constant, Decay, LineSearch, Polyak
from advdyn.theory.spectral import (
    ISOTROPIC_KINDS,
    BinnedInstance,
    bin_gauss_nodes,
    bin_means,
    quadrature_instance,
    rank_edges,
    relaxed_rank_edges,
    resolve_spacing,
)


def eigen_decomposition(spec, d: int, field: str = "problem.spectrum"):
    """Eigenvalues of a spectrum config, and the eigenbasis if it is not the standard one.

    Parameters
    ----------
    spec : advdyn.config.schema.Spectrum
        A validated spectrum model.
    d : int
        Dimension.
    field : str
        Dotted config location, used in error messages.

    Returns
    -------
    eigenvalues : ndarray, shape (d,)
        ``lambda_i`` (float64, ``>= 0``); file spectra are used as given (not normalised).
    basis : ndarray of shape (d, d) or None
        Columns are the eigenvectors ``u_i`` (only for ``covariance_file``; ``None`` means
        the standard basis).

    Raises
    ------
    ConfigError
        For unreadable files, files of the wrong shape, negative eigenvalues, a
        non-symmetric or non-PSD covariance, or an identically zero spectrum.
    """
    basis = None
    if isinstance(spec, C.IdentitySpectrum):
        lam = identity(d)
    elif isinstance(spec, C.TwoLevelSpectrum):
        lam = two_level(d, spec.first, spec.second, spec.fraction)
    elif isinstance(spec, C.UniformSpectrum):
        lam = uniform(d, spec.low, spec.high)
    elif isinstance(spec, C.PowerLawSpectrum):
        lam = power_law(d, spec.exponent)
    elif isinstance(spec, C.MarchenkoPasturSpectrum):
        lam = marchenko_pastur(d, spec.aspect_ratio)
    elif isinstance(spec, C.EigenvaluesFile):
        lam = load_npy(spec.path, f"{field}.path")
        if lam.shape != (d,):
            raise ConfigError(f"{field}.path", f"expected shape ({d},), got {lam.shape}")
        if lam.min() < 0:
            raise ConfigError(f"{field}.path", f"eigenvalues must be >= 0, found {lam.min():.3g}")
    elif isinstance(spec, C.CovarianceFile):
        cov = load_npy(spec.path, f"{field}.path")
        if cov.shape != (d, d):
            raise ConfigError(f"{field}.path", f"expected shape ({d}, {d}), got {cov.shape}")
        scale = max(np.abs(cov).max(), 1e-300)
        if np.abs(cov - cov.T).max() > 1e-10 * scale:
            raise ConfigError(f"{field}.path", "covariance matrix is not symmetric")
        lam, basis = np.linalg.eigh(cov)
        if lam.min() < -1e-10 * max(lam.max(), 1e-300):
            raise ConfigError(
                f"{field}.path",
                f"covariance is not positive semidefinite (smallest eigenvalue {lam.min():.3g})",
            )
        lam = np.clip(lam, 0.0, None)
    else:  # pragma: no cover - the union is closed
        raise ConfigError(field, f"unknown spectrum {spec!r}")
    if lam.sum() <= 0:
        raise ConfigError(field, "the spectrum is identically zero")
    return lam, basis


def _unit(rng: np.random.Generator, d: int) -> np.ndarray:
    v = rng.standard_normal(d)
    return v / np.linalg.norm(v)


@float64
def instantiate(config: C.ProblemConfig, loss: AbstractLoss | None = None) -> ProblemInstance:
    """Draw the problem instance described by ``config``.

    All vectors are drawn isotropically, directly as coordinates in the eigenbasis.
    ``theta* = teacher_norm * u`` with ``u`` uniform on the sphere; the mean of component
    ``c`` is ``mu_c = mean_sign * mean_norm * v_c`` with ``v_c`` the unit teacher direction,
    the shared "common" direction or a fresh direction (``mean_direction``). A
    ``theta_0`` read from a file is given in the original basis and rotated into the
    eigenbasis.

    Order of random draws from the instance generator (``d`` standard normals each):

    1. the teacher direction;
    2. the shared "common" mean direction (always drawn, even if no component uses it);
    3. one fresh direction per component whose ``mean_direction`` is ``"random"``, in
       component order (the default regression mixture is one such component, of norm 0);
    4. the Gaussian initial iterate ``theta_0 ~ N(0, scale^2 / d I)`` (nothing for a file
       init).

    So for the same seed, adding a ``"random"`` component (or switching one to or from
    ``"random"``) changes ``theta_0``, while ``theta*`` and the common direction stay
    the same. The SGD sample stream ([`stream_key`][advdyn.stream_key]) is unaffected.

    Parameters
    ----------
    config : ProblemConfig
        Validated problem definition.
    loss : AbstractLoss, optional
        Overrides ``config.loss`` (e.g. an `AbstractLoss` with custom
        quadrature settings).

    Returns
    -------
    ProblemInstance
        float64 arrays in the eigenbasis of the covariance.

    Raises
    ------
    ConfigError
        If a spectrum, covariance or init file is unreadable, non-finite or of the wrong
        shape, or a spectrum is invalid (see
        [`eigen_decomposition`][advdyn.config.eigen_decomposition]); if ``config`` is not a
        [`ProblemConfig`][advdyn.config.ProblemConfig] (field ``config``); if the instance does not
        fit in memory
        (field ``problem.d``).
    """
    if not isinstance(config, C.ProblemConfig):
        raise ConfigError("config", "must be an advdyn.ProblemConfig (e.g. "
                          f"ProblemConfig(d=1000, ...)), got {config!r}")
    try:
        return _instantiate(config, loss)
    except MemoryError:
        raise ConfigError("problem.d", f"the instance at d = {config.d} does not fit in "
                          "memory; lower problem.d (or use run.bins)") from None


def _instantiate(config: C.ProblemConfig, loss: AbstractLoss | None) -> ProblemInstance:
    if config.data is not None:
        dp = data_problem(config, loss)
        if isinstance(dp.instance, BinnedInstance):
            raise ConfigError("problem.data.spectrum", "instantiate (and the commands built on "
                              "it: advdyn limit, SGD on the surrogate) needs the surrogate in "
                              "its eigenbasis, direction by direction, which a binned "
                              f"spectrum ({dp.diagnostics['spectrum']}) does not build; use "
                              "problem.data.spectrum = 'dense' (d up to a few thousand), or "
                              "data_problem(...).instance for the ODE on the quadrature")
        return dp.instance
    d = config.d
    rng = np.random.default_rng(seed_sequences(config.seed)[0])
    lam, basis = eigen_decomposition(config.spectrum, d)

    # Isotropic draws are isotropic in any orthonormal basis: draw directly in the eigenbasis.
    theta_star = config.task.teacher_norm * _unit(rng, d)
    comps = config.resolved_components()
    common = _unit(rng, d)
    eigenvalues, means = [], []
    for i, comp in enumerate(comps):
        if comp.spectrum is None:
            eigenvalues.append(lam)
        else:
            eigenvalues.append(
                eigen_decomposition(comp.spectrum, d, f"problem.components[{i}].spectrum")[0]
            )
        direction = {
            "teacher": theta_star / np.linalg.norm(theta_star),
            "common": common,
            "random": _unit(rng, d) if comp.mean_direction == "random" else common,
        }[comp.mean_direction]
        means.append(comp.mean_sign * comp.mean_norm * direction)

    if isinstance(config.init, C.GaussianInit):
        theta0 = config.init.scale * rng.standard_normal(d) / np.sqrt(d)
    else:
        theta0 = load_npy(config.init.path, "problem.init.path")
        if theta0.shape != (d,):
            raise ConfigError("problem.init.path", f"expected shape ({d},), got {theta0.shape}")
        if basis is not None:
            theta0 = basis.T @ theta0

    # device_put, not jnp.asarray: placing a NumPy array compiles no conversion kernel
    f64 = lambda x: jax.device_put(np.asarray(x, dtype=np.float64))  # noqa: E731
    return ProblemInstance(
        eigenvalues=f64(np.stack(eigenvalues)),
        theta_star=f64(theta_star),
        means=f64(np.stack(means)),
        theta0=f64(theta0),
        **_shared_fields(config, loss, f64),
    )


def _shared_fields(config: C.ProblemConfig, loss: AbstractLoss | None, f64) -> dict:
    """What a drawn and a binned instance of ``config`` share: mixture weights and labels,
    label noise, radius, ridge (as float64 arrays by ``f64``), the loss and the task."""
    comps = config.resolved_components()
    return dict(
        weights=f64([c.weight for c in comps]),
        labels=f64([0.0 if c.label is None else float(c.label) for c in comps]),
        noise=f64(getattr(config.task, "noise", 0.0)),
        epsilon=f64(config.epsilon),
        ridge=f64(config.ridge),
        loss=loss if loss is not None else make_loss(config.loss),
        task=config.task.kind,
    )


@float64
def make_learning_rate(config: C.LearningRateConfig, instance=None,
                       optimum=None) -> AbstractLearningRate:
    """Build the rule described by a validated learning-rate config.

    Parameters
    ----------
    config : advdyn.config.schema.LearningRateConfig
        A validated learning-rate model (``constant``, ``decay``, ``polyak``, ``line_search``).
    instance : ProblemInstance, optional
        Needed for ``polyak`` (to compute the minimum objective) unless ``optimum`` is given.
    optimum : advdyn.theory.stationary.StationaryPoint, optional
        A precomputed adversarial optimum (``polyak``).

    Returns
    -------
    AbstractLearningRate

    Raises
    ------
    ValueError
        For ``polyak`` without ``instance`` or ``optimum``.
    """
    if isinstance(config, C.ConstantLR):
        return Constant(config.gamma)
    if isinstance(config, C.DecayLR):
        return Decay(config.gamma0, config.tau, config.beta)
    if isinstance(config, C.PolyakLR):
        if optimum is None:
            if instance is None:
                raise ValueError("the polyak rule needs the instance (its minimum risk)")
            from advdyn.theory.stationary import adversarial_optimum

            optimum = adversarial_optimum(instance)
        return Polyak(jnp.asarray(optimum.objective, jnp.float64), config.gamma_max)
    if isinstance(config, C.LineSearchLR):
        return LineSearch(config.gamma_max)
    raise TypeError(f"unknown learning-rate config {config!r}")  # pragma: no cover


def integrator_for(run: C.RunConfig, instance, lr: AbstractLearningRate, times) -> Integrator:
    """The ODE's `Integrator` chosen by a run config's ``solver``.

    ``"auto"`` resolves with `choose_solver` on ``instance``,
    ``lr`` and ``times``; the implicit solver's absolute tolerance is raised to
    ``IMPLICIT_ATOL rtol / d`` as [`solve_ode`][advdyn.theory.solve_ode] does.

    Parameters
    ----------
    run : RunConfig
        Supplies ``solver``, ``rtol`` and ``atol``.
    instance : AbstractInstance
    lr : AbstractLearningRate
    times : array_like
        Recording times.

    Returns
    -------
    Integrator
    """
    from advdyn.theory.ode import IMPLICIT_ATOL, choose_solver, make_integrator

    kind = choose_solver(instance, lr, times, run.solver)
    atol = run.atol
    if kind == "kvaerno5":
        d = float(instance.d)
        atol = max(atol, IMPLICIT_ATOL * run.rtol / d)
    return make_integrator(kind, rtol=run.rtol, atol=atol)


# ----------------------------------------------------------------------------- data problems
class DataProblem(NamedTuple):
    """A data set as a problem ([`data_problem`][advdyn.config.build.data_problem]).

    Attributes
    ----------
    instance : ProblemInstance or BinnedInstance
        The Gaussian-mixture surrogate: in the covariance eigenbasis (``"dense"`` path), or
        on the nodes of its Gauss quadrature (``"binned"`` path,
        [`quadrature_instance`][advdyn.theory.spectral.quadrature_instance]).
    rows : ndarray, shape (n, d)
        The standardised rows (read-only; float32 for a float32 table, float64 otherwise),
        what ``data_sgd`` samples: in the eigenbasis (dense) or the original basis
        (binned).
    targets : ndarray, shape (n,)
        Regression targets or ``+/-1`` labels (read-only).
    statistics : MixtureStatistics or SpectralStatistics
        The moments the surrogate keeps.
    diagnostics : dict
        [`surrogate_diagnostics`][advdyn.problem.data.surrogate_diagnostics], plus ``spectrum``
        (the path taken, e.g. ``"dense"`` or ``"binned (Lanczos, 8 probes, 6 steps)"``).
    rows_instance : ProblemInstance
        What ``data_sgd`` steps with, in the basis of ``rows``: ``instance`` itself on the
        dense path; on the binned path the loss, radius, ridge, ``theta*``, the means and
        ``theta_0`` in the original basis, whose covariance is not diagonal: its
        eigenvalues are NaN (the theory refuses it: not a theory input), and ``data_sgd``
        records only what the rows and the basis-free order parameters give
        (`advdyn.simulate.data`).
    """

    instance: ProblemInstance | BinnedInstance
    rows: np.ndarray
    targets: np.ndarray
    statistics: MixtureStatistics | SpectralStatistics
    diagnostics: dict
    rows_instance: ProblemInstance

    @property
    def binned(self) -> bool:
        """Whether the spectrum is binned (no eigenbasis)."""
        return isinstance(self.statistics, SpectralStatistics)


def load_data(data: C.DataProblemConfig) -> tuple[np.ndarray, np.ndarray]:
    """Read, check and standardise a data set.

    Parameters
    ----------
    data : DataProblemConfig
        A validated ``[problem.data]``.

    Returns
    -------
    X : ndarray, shape (n, d)
        Standardised as ``data.standardize`` says (`advdyn.problem.data.standardize`): two
        passes over the rows, the checks with the column moments (float64), then the
        standardised rows, float32 for a float32 table (its values are ``O(1)`` once
        standardised), float64 otherwise.
    y : ndarray, shape (n,)
        float64 targets (standardised when ``data.standardize_target`` and regression), or
        ``+/-1`` labels.

    Raises
    ------
    ConfigError
        Naming ``problem.data.path``, ``.features`` or ``.target``: unreadable files,
        non-numeric columns, NaN or infinite values, constant columns, ``n < 2``, targets of
        the wrong length or labels that do not fit the task (see
        `advdyn.checks.data_features` and
        `advdyn.checks.data_targets`).
    """
    field = "problem.data"
    target_path = data.target if data.path.suffix.lower() == ".npy" else None
    X_raw, y_raw = load_data_table(data.path, data.features, data.target, field, target_path)
    names = None
    if data.path.suffix.lower() in (".csv", ".parquet"):
        names = ([c for c in data_columns(data.path, f"{field}.path")[0] if c != data.target]
                 if data.features is None else list(
                     [data.features] if isinstance(data.features, str) else data.features))
    moments = checks.data_features(X_raw, f"{field}.features", names)
    y = checks.data_targets(y_raw, X_raw.shape[0], data.task, f"{field}.target")
    # a second pass writes the rows (over the table read, when load_data_table read it)
    X = standardize(X_raw, moments, data.standardize, overwrite=True)
    del X_raw
    if data.task == "regression" and data.standardize_target:
        y = (y - y.mean()) / y.std()
    return X, y


class _MomentsCache:
    """A data set read and summarised once per file version and initial iterate: the two
    latest results (``cache_clear()`` forgets them).

    Called as ``_data_moments(data, teacher_norm, theta0_file, gaussian_init)`` with the
    initial iterate as ``theta0_file`` or ``gaussian_init`` (the seed and scale of a
    Gaussian ``theta_0``). The dense statistics do not depend on ``theta_0``: they are
    keyed without it (the data's mtimes and sizes), so that a sweep over the seed reads
    the file once. The binned ones hold ``theta_0``'s measures and are keyed with it (and
    with the init file's version). An ``auto`` dense path whose covariance does not fit
    falls back to the binned one on the table already read (one read of the file), and is
    not tried again for that file version.
    """

    size = 2

    def __init__(self) -> None:
        self._results: collections.OrderedDict[tuple, tuple] = collections.OrderedDict()
        self._no_dense: set[tuple] = set()

    def cache_clear(self) -> None:
        self._results.clear()
        self._no_dense.clear()

    def __call__(self, data: C.DataProblemConfig, teacher_norm: float,
                 theta0_file: Path | None, gaussian_init: tuple[int, float] | None) -> tuple:
        dense_key = (data, _stamp(data), teacher_norm)
        binned_key = (data, _stamp(data, theta0_file), teacher_norm, theta0_file,
                      gaussian_init)
        dense = data.spectrum_method == "dense" and dense_key not in self._no_dense
        key = dense_key if dense else binned_key
        if key in self._results:
            self._results.move_to_end(key)
            return self._results[key]
        X, y = load_data(data)
        stats: MixtureStatistics | SpectralStatistics | None = None
        if dense:
            try:
                stats = mixture_statistics(X, y, data.task, teacher_norm)
            except MemoryError:
                if data.spectrum == "dense":
                    raise ConfigError("problem.data.path", f"the {X.shape[1]} x "
                                      f"{X.shape[1]} covariance of the data does not fit in "
                                      "memory; use problem.data.spectrum = 'binned'") from None
                self._no_dense.add(dense_key)
                key = binned_key
        if stats is None:
            if theta0_file is not None:
                theta0 = _file_theta0(theta0_file, X.shape[1])
            else:
                assert gaussian_init is not None  # data_problem passes one or the other
                theta0 = gaussian_theta0(*gaussian_init, X.shape[1])
            stats = spectral_statistics(X, y, data.task, teacher_norm, probes=data.probes,
                                        steps=data.lanczos_steps, seed=data.probe_seed,
                                        theta0=theta0)
        diagnostics = surrogate_diagnostics(X, y, stats)
        if isinstance(stats, SpectralStatistics):
            diagnostics["spectrum"] = stats.method
            diagnostics["krylov_products"] = stats.products
            diagnostics["teacher_residual"] = stats.residual
            stats = stats._replace(row_products=None)  # the diagnostics' only: not cached
            rows = X
        else:
            diagnostics["spectrum"] = "dense"
            rows = rows_in_eigenbasis(X, stats)
        del X
        # the cache hands out the same arrays to every caller: none of them may change them
        # (the statistics and every coarser quadrature they hold)
        levels: list[Any] = []
        level: Any = stats
        while level is not None:
            levels.append(level)
            level = getattr(level, "coarser", None)
        arrays = [v for part in levels for v in part if isinstance(v, np.ndarray)]
        for array in (rows, y, *arrays):
            array.setflags(write=False)
        self._results[key] = rows, y, stats, diagnostics
        while len(self._results) > self.size:
            self._results.popitem(last=False)
        return self._results[key]


_data_moments = _MomentsCache()


def gaussian_theta0(seed: int, scale: float, d: int) -> np.ndarray:
    """A data problem's Gaussian ``theta_0 ~ N(0, scale^2 / d I)`` in the data's own basis
    (the first draws of the instance stream of ``seed``, as a synthetic problem's)."""
    rng = np.random.default_rng(seed_sequences(seed)[0])
    return scale * rng.standard_normal(d) / np.sqrt(d)


def _file_theta0(path: Path, d: int) -> np.ndarray:
    theta0 = load_npy(path, "problem.init.path")
    if theta0.shape != (d,):
        raise ConfigError("problem.init.path", f"expected shape ({d},), got {theta0.shape}")
    return np.asarray(theta0, np.float64)


def _stamp(data: C.DataProblemConfig, extra: Path | None = None) -> tuple:
    paths = [data.path] + ([Path(data.target)] if data.path.suffix.lower() == ".npy" else [])
    paths += [extra] if extra is not None else []
    return tuple((st.st_mtime_ns, st.st_size) for st in (p.stat() for p in paths))


@float64
def data_problem(config: C.ProblemConfig, loss: AbstractLoss | None = None) -> DataProblem:
    """A data set's Gaussian-mixture surrogate and its rows, from a problem with ``data``.

    The data are read once per file version (a small cache) and standardised
    ([`load_data`][advdyn.config.build.load_data]); the surrogate keeps their first and second
    moments (`advdyn.problem.data`), on the path ``data.spectrum_method`` chooses
    ([`DataProblemConfig`][advdyn.config.DataProblemConfig]). ``theta_0`` is drawn
    as for a synthetic problem (the same seed gives the same ``N(0, scale^2/d I)``
    coordinates, `gaussian_theta0`) or read from a file; either is a vector in the data's
    own basis, the same on both paths, and both the ODE and ``data_sgd`` start from it.

    Parameters
    ----------
    config : ProblemConfig
        A validated problem with ``data`` set.
    loss : AbstractLoss, optional
        Overrides ``config.loss``.

    Returns
    -------
    DataProblem

    Raises
    ------
    ConfigError
        As [`load_data`][advdyn.config.build.load_data]; naming ``problem.data`` when the
        problem has none, ``problem.init.path`` for an init file of the wrong shape.
    """
    data = config.data
    if data is None:
        raise ConfigError("problem.data", "this problem has no data set")
    init = config.init
    file_init = Path(init.path) if isinstance(init, C.FileInit) else None
    seed_scale = (config.seed, float(init.scale)) if isinstance(init, C.GaussianInit) else None
    teacher_norm = float(config.task.teacher_norm)
    rows, y, stats, diagnostics = _data_moments(data, teacher_norm, file_init, seed_scale)
    d = rows.shape[1]
    loss = loss if loss is not None else make_loss(config.loss)
    theta0 = (_file_theta0(file_init, d) if file_init is not None
              else gaussian_theta0(*seed_scale, d) if seed_scale is not None
              else None)
    assert theta0 is not None  # a Gaussian or a file init
    instance: ProblemInstance | BinnedInstance
    if isinstance(stats, SpectralStatistics):  # theta_0's measures are in the statistics
        instance = quadrature_instance(stats, loss, config.epsilon, config.ridge)
        rows_instance = rows_basis_instance(stats, loss, config.epsilon, config.ridge, theta0)
    else:
        instance = surrogate_instance(stats, loss, config.epsilon, config.ridge, theta0,
                                      "original")
        rows_instance = instance
    return DataProblem(instance, rows, y, stats, dict(diagnostics), rows_instance)


# ----------------------------------------------------------------------------- from a config


def _spectra(config: C.ProblemConfig) -> list:
    comps = config.resolved_components()
    return [config.spectrum if c.spectrum is None else c.spectrum for c in comps]


def config_supported(config: C.ProblemConfig) -> bool:
    """Whether [`binned_from_config`][advdyn.config.build.binned_from_config] can build this problem
    without an instance.

    Parameters
    ----------
    config : ProblemConfig
        A validated problem.

    Returns
    -------
    bool
        True when the problem has no data set, every component's spectrum is one of
        `ISOTROPIC_KINDS` and the
        init is Gaussian (files give directions, which are not isotropic).
    """
    return config.data is None and isinstance(config.init, C.GaussianInit) and all(
        s.kind in ISOTROPIC_KINDS for s in _spectra(config)
    )


def _law(spec, d: int) -> Callable[[np.ndarray], np.ndarray]:
    """A spectrum config's eigenvalue law at direction indices
    ([`eigenvalue_at`][advdyn.problem.spectra.eigenvalue_at] with its parameters bound)."""
    if spec.kind not in LAWS:  # pragma: no cover - config_supported refuses it first
        raise ConfigError("problem.spectrum", f"spectral bins from a config need one of "
                          f"{', '.join(ISOTROPIC_KINDS)}, got {spec.kind!r}")
    return functools.partial(eigenvalue_at, spec.kind, d, **_law_params(spec))


def _law_params(spec) -> dict[str, float]:
    return {name: getattr(spec, name) for name in LAWS[spec.kind]}


def config_edges(
    config: C.ProblemConfig, n_bins: int, spacing: str = "auto",
    relaxed_above: float | None = None,
) -> np.ndarray:
    """Direction-index edges of the bins
    [`binned_from_config`][advdyn.config.build.binned_from_config] uses.

    Parameters
    ----------
    config : ProblemConfig
        A problem accepted by [`config_supported`][advdyn.config.build.config_supported].
    n_bins : int
        Requested number of bins.
    spacing : {"auto", "quantile", "log"}
        ``"auto"`` is ``"log"`` when a component has a power-law spectrum (whose largest
        eigenvalues are then single-direction bins), else ``"quantile"``.
    relaxed_above : float, optional
        When every component is a power law (log spacing), the eigenvalues above it (modes
        relaxed before the first record) get coarser bins
        (`relaxed_rank_edges`); ignored otherwise.

    Returns
    -------
    ndarray of int
        Increasing edges from 0 to ``d``. Jumps of two-level spectra and the zero atom of a
        Marchenko-Pastur law (``aspect_ratio > 1``) are always edges; a spectrum where every
        component is constant gets a single bin, two-level spectra one bin per level.
    """
    d = config.d
    specs = _spectra(config)
    if spacing == "auto":
        spacing = "log" if any(s.kind == "power_law" for s in specs) else "quantile"
    resolve_spacing(spacing, np.ones(1))
    breaks = sorted({p for s in specs for p in breakpoints(s.kind, d, **_law_params(s))
                     if 0 < p < d})
    if all(s.kind in ("identity", "two_level") for s in specs):
        return np.array([0, *breaks, d], dtype=np.int64)  # piecewise constant: exact bins
    if (spacing == "log" and relaxed_above is not None
            and all(isinstance(s, C.PowerLawSpectrum) for s in specs)):
        laws = [_law(s, d) for s in specs]

        def key_at(ranks):
            ranks = np.asarray(ranks, dtype=np.float64)
            return np.max([law(ranks) for law in laws], axis=0)

        edges = relaxed_rank_edges(d, n_bins, key_at, relaxed_above)
    else:
        edges = rank_edges(d, n_bins, spacing)
    return np.unique(np.concatenate([edges, breaks]).astype(np.int64))


@float64
def binned_from_config(
    config: C.ProblemConfig,
    n_bins: int,
    spacing: str = "auto",
    loss: AbstractLoss | None = None,
    gauss: bool = False,
    relaxed_above: float | None = None,
) -> BinnedInstance:
    """Spectral bins of a problem built from its config, without drawing an instance.

    The bins are ranges of direction indices of the deterministic spectra of
    `advdyn.problem.spectra` (`config_edges`); their eigenvalues are the mean over the
    range (exact for bins of up to 1024 directions, a 1024-point midpoint sub-grid beyond).
    The products are the expectations under [`instantiate`][advdyn.config.instantiate]'s isotropic
    draws, the same in every direction: with ``T = teacher_norm``, ``s = init.scale`` and
    ``m_c``, ``s_c`` the mean norm and sign of component ``c``,

    * ``theta*_i^2 -> T^2 / d``;
    * ``theta*_i mu_{c,i} -> s_c m_c T / d`` if ``mu_c`` lies along the teacher, else 0;
    * ``mu_{c,i} mu_{c',i} -> s_c m_c s_c' m_c' / d`` when both share a direction (both along
      the teacher, both ``"common"``, or ``c = c'``), else 0;
    * ``e_i^2 -> (s^2 + T^2)/d``, ``e_i theta*_i -> -T^2/d``, ``e_i mu_{c,i} -> -theta*_i
      mu_{c,i}`` (``theta_0`` is independent of ``theta*`` and of the means).

    Memory and time are ``O(n_bins)`` (plus at most 1024 eigenvalue evaluations per bin), so
    any ``d`` works, e.g. ``10^7``. The realised instance of the same config agrees up to the
    ``O(d^-1/2)`` fluctuations of its random draws.

    Parameters
    ----------
    config : ProblemConfig
        A problem accepted by [`config_supported`][advdyn.config.build.config_supported].
    n_bins : int
        Requested number of bins (see `config_edges`).
    spacing : {"auto", "quantile", "log"}
        Bin spacing in the direction index.
    loss : AbstractLoss, optional
        Overrides ``config.loss``.
    gauss : bool
        When every component has the same spectrum, represent each bin by the two nodes of
        its Gauss rule (`advdyn.theory.spectral.bin_gauss_nodes`; up to
        ``2 n_bins`` entries, exact for cubics in the eigenvalue, error fourth order in the
        bin width) instead of its mean
        eigenvalue (exact for linear functions only, second order). For power laws this
        reaches 1e-6 with tens of bins (``docs/benchmarks.md``). Off by default, so that
        ``n_bins`` entries mean ``n_bins`` bins.
    relaxed_above : float, optional
        Coarser bins for the power-law eigenvalues above it, the modes relaxed before the
        first record (`config_edges`;
        [`advdyn.theory.spectral.relaxed_eigenvalue`][advdyn.theory.spectral.relaxed_eigenvalue]
        computes it from the learning rate and the record times).

    Returns
    -------
    BinnedInstance

    Raises
    ------
    ConfigError
        If a spectrum is not isotropic-given-the-eigenvalue (files) or the init is a file
        (naming the field); bin the realised instance with [`bin_instance`][advdyn.bin_instance]
        instead.
    """
    if n_bins < 1:
        raise ConfigError("run.bins", f"must be >= 1, got {n_bins}")
    comps = config.resolved_components()
    specs = _spectra(config)
    for i, (comp, spec) in enumerate(zip(comps, specs, strict=True)):
        if spec.kind not in ISOTROPIC_KINDS:
            field = "problem.spectrum" if comp.spectrum is None else (
                f"problem.components[{i}].spectrum")
            raise ConfigError(field, f"spectral bins without an instance need one of "
                              f"{', '.join(ISOTROPIC_KINDS)}, got {spec.kind!r}")
    if not isinstance(config.init, C.GaussianInit):
        raise ConfigError("problem.init", "spectral bins without an instance need a "
                          "Gaussian init (a file init is not isotropic)")
    d = config.d
    edges = config_edges(config, n_bins, spacing, relaxed_above)
    count = np.diff(edges).astype(np.float64)
    B, n_comp = count.size, len(comps)
    if all(s == specs[0] for s in specs) and gauss:
        # one spectrum for every component: a two-point Gauss rule per bin (fourth order in
        # the bin width; power laws reach 1e-6 with tens of bins instead of thousands)
        nodes, weights = bin_gauss_nodes(_law(specs[0], d), edges)
        keep = (weights > 0).reshape(-1)
        count = (count[:, None] * weights).reshape(-1)[keep]
        lam = np.repeat(nodes.reshape(-1)[keep][None], n_comp, axis=0)
        B = count.size
    else:
        lam = np.stack([bin_means(_law(s, d), edges) for s in specs])

    T = float(config.task.teacher_norm)
    scale = float(config.init.scale)
    amp = np.array([c.mean_sign * c.mean_norm for c in comps], dtype=np.float64)
    along = np.array([c.mean_direction == "teacher" for c in comps])
    tm = np.where(along, amp * T, 0.0) / d  # E theta*_i mu_{c,i}
    same = np.zeros((n_comp, n_comp), dtype=bool)
    for a_, ca in enumerate(comps):
        for b_, cb in enumerate(comps):
            shared = ca.mean_direction == cb.mean_direction and ca.mean_direction != "random"
            same[a_, b_] = a_ == b_ or shared
    mm = np.where(same, np.outer(amp, amp), 0.0) / d  # E mu_{c,i} mu_{c',i}

    ones = np.ones(B)
    return BinnedInstance(
        eigenvalues=as_float64(lam),
        multiplicity=as_float64(count),
        teacher2=as_float64(ones * T**2 / d),
        teacher_mean=as_float64(tm[:, None] * ones),
        mean_mean=as_float64(mm[:, :, None] * ones),
        init_err2=as_float64(ones * (scale**2 + T**2) / d),
        init_err_teacher=as_float64(-ones * T**2 / d),
        init_err_mean=as_float64(-tm[:, None] * ones),
        d=as_float64(d),
        **_shared_fields(config, loss, as_float64),
    )


# ----------------------------------------------------------------------------- pipeline
def config_path_applies(config: C.Config) -> bool:
    """Whether a run builds its ODE bins from the config alone (no instance drawn).

    Parameters
    ----------
    config : Config
        A validated configuration.

    Returns
    -------
    bool
        True when ``run.bins`` is set, the ODE is the only method and
        [`config_supported`][advdyn.config.build.config_supported] holds. The ODE then uses the ``d
        -> inf`` expected initial
        products: the seed does not enter, and nothing of size ``d`` is allocated.
    """
    rc = config.run
    return rc.bins is not None and list(rc.methods) == ["ode"] and config_supported(
        config.problem
    )
