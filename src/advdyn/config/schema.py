"""Validated configuration: the problem, the learning rate and the run.

Every model forbids unknown keys, rejects NaN and infinity, and is immutable. A TOML file
maps one-to-one onto [`Config`][advdyn.config.schema.Config]::

    [problem]
    d = 1000
    loss = "least_squares"
    epsilon = 0.5
    spectrum = { kind = "uniform", low = 0.2, high = 1.8 }
    task = { kind = "regression", noise = 0.3 }

    [lr]
    kind = "constant"
    gamma = 0.8

    [run]
    t_max = 6.0

Relative file paths in a config file are resolved against the file's folder.
"""

from __future__ import annotations

import json
import math
import tomllib
import typing
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    StrictBool,
    Tag,
    ValidationError,
    ValidationInfo,
    field_serializer,
    field_validator,
    model_validator,
)

from advdyn import checks
from advdyn.checks import BUILTIN_LOSSES
from advdyn.errors import ConfigError

__all__ = ["BUILTIN_LOSSES", "Config", "load_config", "read_toml", "validate_config"]


def _checked(check: Callable[..., Any], name: str) -> AfterValidator:
    """A pydantic validator running ``check(value, name)`` of `advdyn.checks`."""
    wrapped = checks.as_value_error(check)
    return AfterValidator(lambda value: wrapped(value, name))


def _number(check: Callable[..., Any], name: str) -> Any:
    """Annotated float field checked by `advdyn.checks` (same message as the API)."""
    return Annotated[float, Field(strict=True), _checked(check, name)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _resolve_path(value: Path, info: ValidationInfo) -> Path:
    base = (info.context or {}).get("base_dir")
    path = Path(value).expanduser()
    if not path.is_absolute() and base is not None:
        path = Path(base) / path
    if not path.is_file():
        raise ValueError(f"file not found: {path}")
    return path


# ----------------------------------------------------------------------------- spectra
class IdentitySpectrum(_Model):
    """All eigenvalues equal to one (``K = I``)."""

    kind: Literal["identity"] = "identity"


class TwoLevelSpectrum(_Model):
    """A fraction ``fraction`` of the eigenvalues equal ``first``, the rest ``second``."""

    kind: Literal["two_level"] = "two_level"
    first: float = Field(strict=True, ge=0)
    second: float = Field(strict=True, ge=0)
    fraction: float = Field(strict=True, ge=0, le=1)


class UniformSpectrum(_Model):
    """Eigenvalues evenly spread over ``[low, high]`` (midpoint grid)."""

    kind: Literal["uniform"] = "uniform"
    low: float = Field(strict=True, ge=0)
    high: float = Field(strict=True, ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> UniformSpectrum:
        if self.high < self.low:
            raise ValueError(f"high ({self.high}) must be >= low ({self.low})")
        return self


class PowerLawSpectrum(_Model):
    """``lambda_i proportional to i^(-exponent)``, normalised so that ``tr K = d``."""

    kind: Literal["power_law"] = "power_law"
    exponent: float = Field(strict=True, ge=0)


class MarchenkoPasturSpectrum(_Model):
    """Quantiles of the Marchenko-Pastur law of aspect ratio ``d/n`` (mean eigenvalue 1)."""

    kind: Literal["marchenko_pastur"] = "marchenko_pastur"
    aspect_ratio: float = Field(strict=True, gt=0)


class EigenvaluesFile(_Model):
    """Eigenvalues read from a ``.npy`` file of shape ``(d,)``."""

    kind: Literal["eigenvalues_file"] = "eigenvalues_file"
    path: Path

    _check_path = field_validator("path")(_resolve_path)


class CovarianceFile(_Model):
    """A dense symmetric PSD covariance read from a ``.npy`` file of shape ``(d, d)``.

    It is diagonalised once (``O(d^3)`` time, ``O(d^2)`` memory): sensible up to
    ``d`` of about 5000 on a laptop.
    """

    kind: Literal["covariance_file"] = "covariance_file"
    path: Path

    _check_path = field_validator("path")(_resolve_path)


Spectrum = Annotated[
    IdentitySpectrum
    | TwoLevelSpectrum
    | UniformSpectrum
    | PowerLawSpectrum
    | MarchenkoPasturSpectrum
    | EigenvaluesFile
    | CovarianceFile,
    Field(discriminator="kind"),
]


# ----------------------------------------------------------------------------- task
class RegressionTask(_Model):
    """``y = <theta*, x> + noise * xi`` with ``|theta*| = teacher_norm``."""

    kind: Literal["regression"] = "regression"
    teacher_norm: float = Field(strict=True, default=1.0, gt=0)
    noise: float = Field(strict=True, default=0.0, ge=0)


class ClassificationTask(_Model):
    """Binary classification: ``y = +1/-1`` is the label of the mixture component.

    Without explicit ``components`` the data is the symmetric mixture with means
    ``+/- mean_norm * theta*/|theta*|`` and equal weights. ``theta*`` (norm
    ``teacher_norm``) is the reference direction for ``overlap``.
    """

    kind: Literal["classification"] = "classification"
    teacher_norm: float = Field(strict=True, default=1.0, gt=0)
    mean_norm: float = Field(strict=True, default=1.0, ge=0)


def _kind_or(default: str):
    """Discriminator that reads ``kind`` and falls back to ``default`` when it is omitted."""

    def tag(value):
        if isinstance(value, dict):
            return value.get("kind", default)
        return getattr(value, "kind", default)

    return tag


Task = Annotated[
    Annotated[RegressionTask, Tag("regression")]
    | Annotated[ClassificationTask, Tag("classification")],
    Discriminator(_kind_or("regression")),
]


class Component(_Model):
    """One Gaussian component ``x = mu_c + K_c^{1/2} z`` of the data mixture.

    ``mean_direction``: ``"teacher"`` (along ``theta*``), ``"random"`` (a fresh isotropic
    direction for this component) or ``"common"`` (one random direction shared by every
    component that names it). ``spectrum`` overrides the problem's spectrum for this
    component (same eigenbasis; a dense covariance file cannot be given per component).
    """

    weight: float = Field(strict=True, gt=0, le=1)
    mean_norm: float = Field(strict=True, default=0.0, ge=0)
    mean_direction: Literal["teacher", "random", "common"] = "random"
    mean_sign: Literal[1, -1] = 1
    label: Literal[1, -1] | None = None
    spectrum: Spectrum | None = None

    @field_validator("spectrum")
    @classmethod
    def _no_dense(cls, value):
        if isinstance(value, CovarianceFile):
            raise ValueError("a per-component spectrum must be eigenvalues, not a dense covariance")
        return value


# ----------------------------------------------------------------------------- init
class GaussianInit(_Model):
    """``theta_0 ~ N(0, scale^2 / d I)``, so that ``|theta_0|`` is close to ``scale``."""

    kind: Literal["gaussian"] = "gaussian"
    scale: float = Field(strict=True, default=1.0, ge=0)


class FileInit(_Model):
    """``theta_0`` read from a ``.npy`` file of shape ``(d,)`` in the original basis."""

    kind: Literal["file"] = "file"
    path: Path

    _check_path = field_validator("path")(_resolve_path)


Init = Annotated[
    Annotated[GaussianInit, Tag("gaussian")] | Annotated[FileInit, Tag("file")],
    Discriminator(_kind_or("gaussian")),
]


# ----------------------------------------------------------------------------- data
#: ``[problem.data] spectrum = "auto"`` diagonalises densely up to this many features
DENSE_MAX_D = 2000


#: ``[problem.data]`` settings of the binned spectrum only
BINNED_SETTINGS = ("probes", "lanczos_steps", "probe_seed")


def binned_spectrum_conflict(run: RunConfig, why: str, *,
                             dense_possible: bool) -> tuple[str, str] | None:
    """What a run asks of a binned data spectrum that it cannot do, as ``(field, message)``.

    Parameters
    ----------
    run : RunConfig
        The run's settings (``methods``, ``bins``).
    why : str
        Why the spectrum is binned, quoted in the message.
    dense_possible : bool
        Whether the message may suggest ``problem.data.spectrum = 'dense'`` (not where the
        dense covariance did not fit in memory).

    Returns
    -------
    tuple of str, or None
        ``("run.methods", ...)`` for SGD on the surrogate (``sgd``, ``hsgd``), which needs the
        eigenbasis a binned spectrum does not build; ``("run.bins", ...)`` for spectral bins
        (the quadrature's nodes are the bins); None when neither is asked for.
    """
    surrogate = [m for m in run.methods if m in ("sgd", "hsgd")]
    if surrogate:
        return "run.methods", (f"{surrogate[0]!r} samples the surrogate in its eigenbasis, "
                               f"which a binned spectrum ({why}) does not build; use 'ode' and "
                               "'data_sgd'" + (", or problem.data.spectrum = 'dense'"
                                               if dense_possible else ""))
    if run.bins is not None:
        return "run.bins", (f"a binned data spectrum ({why}) is already binned (one bin per "
                            "quadrature node; problem.data.lanczos_steps and .probes set "
                            "them); remove run.bins")
    return None


class DataProblemConfig(_Model):
    """A data set as the problem: ``[problem.data]`` (advdyn.problem.data).

    ``path`` is a ``.npy`` (the feature matrix; ``target`` is then the path of a ``.npy``
    of targets), ``.npz`` (arrays named ``features``, default ``"X"``, and ``target``,
    default ``"y"``), ``.csv`` (a header row; ``features`` are columns, default every column
    but ``target``) or ``.parquet`` (as ``.csv``; needs ``pip install 'advdyn[data]'``).
    ``standardize``: ``"scale"`` centres every column and scales it to unit variance,
    ``"center"`` only centres, ``"none"`` keeps the values; ``standardize_target`` centres and
    scales a regression target. Only the header is read here; the values are checked
    when the problem is built (NaN, constant columns, labels that do not fit the task).
    ``spectrum``: ``"dense"`` diagonalises the ``d x d`` covariance, ``"binned"`` takes its
    Gauss quadrature from ``lanczos_steps`` block-Lanczos passes over the rows with
    ``probes`` Rademacher probes drawn from ``probe_seed`` (`advdyn.problem.data`),
    ``"auto"`` chooses by `spectrum_method` (dense up to ``d = DENSE_MAX_D = 2000``). The
    default 8 probes keep the eigenvalue count's Hutchinson error ``sqrt(2 / (k d_eff))`` at
    or below half of SGD's own fluctuation scale ``d_eff^-1/2``, and the default 6 steps
    keep the quadrature's own error below the probes' on the spectra measured; with too
    few steps for a data set, ``spectrum_rel_change`` (the change from one step fewer)
    makes the run warn (how the defaults were chosen: ``docs/benchmarks.md``).
    """

    path: Path
    task: Literal["regression", "classification"]
    features: str | tuple[str, ...] | None = None
    target: str = "y"
    standardize: Literal["scale", "center", "none"] = "scale"
    standardize_target: StrictBool = True
    spectrum: Literal["auto", "dense", "binned"] = "auto"
    probes: int = Field(strict=True, default=8, ge=1, le=4096)
    lanczos_steps: int = Field(strict=True, default=6, ge=2, le=1000)
    probe_seed: int = Field(strict=True, default=0, ge=0, le=2**63 - 1)

    _shape: tuple[int | None, int] = PrivateAttr(default=(None, 0))
    _itemsize: int = PrivateAttr(default=8)

    _check_path = field_validator("path")(_resolve_path)

    @field_validator("path")
    @classmethod
    def _kind(cls, value: Path) -> Path:
        from advdyn.io.arrays import data_columns

        checks.as_value_error(data_columns)(value, "path")
        return value

    @model_validator(mode="after")
    def _names(self, info: ValidationInfo) -> DataProblemConfig:
        from advdyn.io.arrays import data_columns, held_itemsize

        names, shapes, n_rows, dtypes = data_columns(self.path, "path")
        suffix = self.path.suffix.lower()
        if suffix == ".npy":
            if self.features is not None:
                raise ValueError("features: a .npy file is the feature matrix itself; omit "
                                 "features (or use a .npz with named arrays)")
            shape = shapes[""]
            target = self.target_path(info)
            if len(shape) != 2:
                raise ValueError(f"path: the feature matrix must be 2-d (n x d), got {shape}")
            self._shape = (shape[0], shape[1])
            self._itemsize = held_itemsize(dtypes[""])
            if not target.is_file():
                raise ValueError(f"target: with a .npy matrix, target is the path of a .npy "
                                 f"file of targets; not found: {target}")
            object.__setattr__(self, "target", str(target))
            return self
        if suffix == ".npz":
            feat = self.features if self.features is not None else "X"
            if not isinstance(feat, str):
                raise ValueError("features: for a .npz, the name of one array (the matrix)")
            for name, sub in ((feat, "features"), (self.target, "target")):
                if name not in names:
                    raise ValueError(f"{sub}: no array {name!r} in {self.path.name} (it holds "
                                     f"{', '.join(names) or 'no arrays'})")
            shape = shapes[feat]
            if len(shape) != 2:
                raise ValueError(f"features: the feature matrix must be 2-d (n x d), got "
                                 f"{shape}")
            self._shape = (shape[0], shape[1])
            self._itemsize = held_itemsize(dtypes[feat])
            return self
        if self.target not in names:
            raise ValueError(f"target: no column {self.target!r} in {self.path.name}")
        if self.features is None:
            cols = [c for c in names if c != self.target]
        else:
            cols = [self.features] if isinstance(self.features, str) else list(self.features)
            missing = [c for c in cols if c not in names]
            if missing:
                raise ValueError(f"features: no column {missing[0]!r} in {self.path.name}")
            if self.target in cols:
                raise ValueError(f"features: the target column {self.target!r} is not a "
                                 "feature")
        if not cols:
            raise ValueError(f"features: {self.path.name} has no feature column")
        self._shape = (n_rows, len(cols))
        return self

    def target_path(self, info: ValidationInfo | None = None) -> Path:
        """The targets' ``.npy`` file of a ``.npy`` matrix (resolved like ``path``)."""
        base = ((info.context or {}).get("base_dir") if info is not None else None)
        target = Path(self.target).expanduser()
        if not target.is_absolute():
            target = (Path(base) if base is not None else self.path.parent) / target
        return target

    @property
    def spectrum_method(self) -> str:
        """The path the spectrum takes: ``"dense"`` or ``"binned"``.

        ``spectrum`` when it is not ``"auto"``; otherwise ``"dense"`` for ``d <= DENSE_MAX_D``,
        else ``"binned"`` (the work and memory of each: docs/real-data.md). An ``"auto"``
        dense path whose covariance does not fit in memory falls back to ``"binned"``
        when the data are read.
        """
        if self.spectrum != "auto":
            return self.spectrum
        return "dense" if self.n_features <= DENSE_MAX_D else "binned"

    def binned_settings(self) -> list[str]:
        """The `BINNED_SETTINGS` that differ from their defaults."""
        fields = type(self).model_fields
        return [n for n in BINNED_SETTINGS if getattr(self, n) != fields[n].default]

    @property
    def n_features(self) -> int:
        """Feature columns ``d`` (from the file's header)."""
        return self._shape[1]

    @property
    def itemsize(self) -> int:
        """Bytes per entry of the table as advdyn holds it: 4 for a float32 ``.npy`` or
        ``.npz`` matrix (kept float32), else 8 (from the file's header)."""
        return self._itemsize

    @property
    def n_rows(self) -> int | None:
        """Rows ``n`` when the header says (``.npy``, ``.npz``, ``.parquet``), else None."""
        return self._shape[0]


# ----------------------------------------------------------------------------- problem
class ProblemConfig(_Model):
    """The learning problem: data, task, loss, attack radius, ridge, initialisation, seed.

    ``loss`` is a built-in name or, through the Python API, any JAX function ``l(r, y)``
    convex in ``r``.
    """

    model_config = ConfigDict(
        extra="forbid", frozen=True, allow_inf_nan=False, arbitrary_types_allowed=True
    )

    d: int = Field(strict=True, gt=0)
    spectrum: Spectrum = IdentitySpectrum()
    task: Task = RegressionTask()
    components: list[Component] | None = None
    loss: str | Callable[..., Any] = "least_squares"
    # radii and ridges whose square overflows float64 (above 1e154) are not an attack or a
    # regularisation: refused here rather than after a solve that cannot be finite
    epsilon: float = Field(strict=True, default=0.0, ge=0, le=1e150)
    ridge: float = Field(strict=True, default=0.0, ge=0, le=1e150)
    init: Init = GaussianInit()
    seed: int = Field(strict=True, default=0, ge=0, le=2**63 - 1)
    # a data set as the problem (advdyn.problem.data): d, the task's kind and the mixture
    # come from it
    data: DataProblemConfig | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_data(cls, values: Any, info: ValidationInfo) -> Any:
        """With ``data``, ``d`` and ``task.kind`` default to the data set's."""
        if not isinstance(values, dict) or values.get("data") is None:
            return values
        values = dict(values)
        raw = values["data"]
        try:
            data = raw if isinstance(raw, DataProblemConfig) else DataProblemConfig.model_validate(
                raw, context=info.context)
        except (ValidationError, ConfigError):
            values.setdefault("d", 1)  # the data's own error is reported
            return values
        values.setdefault("d", data.n_features)
        values.setdefault("task", {"kind": data.task})
        return values

    @field_validator("loss")
    @classmethod
    def _known_loss(cls, value):
        if isinstance(value, str):
            return checks.as_value_error(checks.loss_name)(value, "loss")
        return checks.as_value_error(checks.loss_function)(value, "loss")

    @field_serializer("loss")
    def _loss_name(self, loss):
        if isinstance(loss, str):
            return loss
        return f"custom:{getattr(loss, '__qualname__', repr(loss))}"

    @model_validator(mode="after")
    def _consistent(self) -> ProblemConfig:
        if self.data is not None:
            self._data_consistent(self.data)
        comps = self.resolved_components()
        total = math.fsum(c.weight for c in comps)
        if abs(total - 1.0) > 1e-9:
            raise ValueError(f"components: weights sum to {total:.6g}, they must sum to 1")
        classification = self.task.kind == "classification"
        for i, c in enumerate(comps):
            if classification and c.label is None:
                raise ValueError(f"components[{i}].label: required (+1 or -1) for classification")
            if not classification and c.label is not None:
                raise ValueError(f"components[{i}].label: labels only apply to classification")
        if self.loss in ("logistic", "squared_hinge") and not classification:
            raise ValueError(f"loss: {self.loss!r} needs task.kind = 'classification'")
        return self

    def _data_consistent(self, data: DataProblemConfig) -> None:
        if self.d != data.n_features:
            raise ValueError(f"d: the data have {data.n_features} feature columns; omit "
                             f"problem.d or set it to {data.n_features}")
        if self.task.kind != data.task:
            raise ValueError(f"task: {self.task.kind!r} differs from data.task = "
                             f"{data.task!r}; omit problem.task")
        given = {"spectrum": self.spectrum != IdentitySpectrum(),
                 "components": self.components is not None,
                 # the surrogate's label noise is the data's residual noise
                 "task.noise": getattr(self.task, "noise", 0.0) != 0.0}
        for name, set_ in given.items():
            if set_:
                raise ValueError(f"{name}: a data problem takes it from problem.data; "
                                 "remove it")
        if data.spectrum == "dense":
            for name in data.binned_settings():
                    raise ValueError(f"data.{name}: applies to a binned spectrum only, and "
                                     "data.spectrum = 'dense'; remove it")

    def resolved_components(self) -> list[Component]:
        """Return the mixture components, filling in the default mixture of the task."""
        if self.components is not None:
            return list(self.components)
        if self.task.kind == "classification":
            m = self.task.mean_norm
            return [
                Component(weight=0.5, mean_norm=m, mean_direction="teacher", mean_sign=1, label=1),
                Component(
                    weight=0.5, mean_norm=m, mean_direction="teacher", mean_sign=-1, label=-1
                ),
            ]
        return [Component(weight=1.0)]


# ----------------------------------------------------------------------------- lr
class ConstantLR(_Model):
    """``gamma_t = gamma``."""

    kind: Literal["constant"] = "constant"
    gamma: _number(checks.positive, "gamma")  # type: ignore[valid-type]


class DecayLR(_Model):
    """``gamma_t = gamma0 * (1 + t / tau)^(-beta)``."""

    kind: Literal["decay"] = "decay"
    gamma0: _number(checks.positive, "gamma0")  # type: ignore[valid-type]
    tau: _number(checks.positive, "tau") = 1.0  # type: ignore[valid-type]
    beta: _number(checks.nonnegative, "beta") = 1.0  # type: ignore[valid-type]


class PolyakLR(_Model):
    """Idealised Polyak rate ``(R_eps - R_eps^*) / ((tr K / 2d) I)``, capped at ``gamma_max``.

    ``R_eps^*`` is the minimum adversarial risk (computed, THEORY sections 6-7).
    """

    kind: Literal["polyak"] = "polyak"
    gamma_max: _number(checks.positive, "gamma_max") = 10.0  # type: ignore[valid-type]


class LineSearchLR(_Model):
    """Idealised exact line search ``-A / (2C)`` along the ODE, capped at ``gamma_max``."""

    kind: Literal["line_search"] = "line_search"
    gamma_max: _number(checks.positive, "gamma_max") = 10.0  # type: ignore[valid-type]


LearningRateConfig = Annotated[
    Annotated[ConstantLR, Tag("constant")]
    | Annotated[DecayLR, Tag("decay")]
    | Annotated[PolyakLR, Tag("polyak")]
    | Annotated[LineSearchLR, Tag("line_search")],
    Discriminator(_kind_or("constant")),
]


# ----------------------------------------------------------------------------- run
class RunConfig(_Model):
    """How to run: time horizon, recording grid, methods, replicates, precision, tolerances."""

    t_max: _number(checks.positive, "t_max") = 5.0  # type: ignore[valid-type]
    n_times: int = Field(strict=True, default=51, ge=2, le=100_000)
    # data_sgd: SGD on the rows of problem.data (advdyn.simulate.data); sgd and hsgd then
    # run on the data's Gaussian-mixture surrogate
    methods: list[Literal["ode", "sgd", "hsgd", "data_sgd"]] = Field(
        default_factory=lambda: list[Literal["ode", "sgd", "hsgd", "data_sgd"]](["ode", "sgd"])
    )
    replicates: int = Field(strict=True, default=4, ge=1)
    dtype: Literal["float32", "float64"] = "float32"
    block_size: int = Field(strict=True, default=64, ge=1)
    rtol: float = Field(strict=True, default=1e-8, gt=0, lt=1)
    atol: float = Field(strict=True, default=1e-20, gt=0)
    divergence_factor: float = Field(strict=True, default=1e6, gt=1)
    # ODE integrator: "auto" picks implicit Kvaerno5 for stiff binned problems
    # (gamma lambda_max t_max large), else explicit Tsit5 (advdyn.theory.ode.choose_solver)
    solver: Literal["auto", "tsit5", "kvaerno5"] = "auto"
    # ODE by spectral quadrature with this many bins (advdyn.theory.spectral); None: per direction
    bins: int | None = Field(strict=True, default=None, ge=1, le=1_000_000)
    # with bins: also solve with twice the bins and report the change (bins_rel_change)
    bins_check: StrictBool = True
    # with bins built from a power-law config: coarser bins for the modes relaxed before the
    # first record
    # (least squares, constant or decaying rate; advdyn.theory.spectral.relaxed_eigenvalue)
    bins_relaxed: StrictBool = True
    # memory available to the run in GB (advdyn.memory); None: measured on the machine
    memory_limit_gb: float | None = Field(strict=True, default=None, gt=0)

    @field_validator("methods")
    @classmethod
    def _methods(cls, value):
        if not value:
            raise ValueError("at least one method is needed")
        if len(set(value)) != len(value):
            raise ValueError("methods must not repeat")
        return value


class Config(_Model):
    """A complete run: ``problem``, learning rate ``lr`` and ``run`` settings."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, allow_inf_nan=False, arbitrary_types_allowed=True
    )

    problem: ProblemConfig
    lr: LearningRateConfig = ConstantLR(gamma=0.5)
    run: RunConfig = RunConfig()

    @model_validator(mode="after")
    def _data_methods(self) -> Config:
        """``data_sgd`` needs ``problem.data``; a data problem runs it by default; a binned
        data spectrum refuses what it cannot run (`binned_spectrum_conflict`)."""
        if self.problem.data is None:
            if "data_sgd" in self.run.methods:
                raise ValueError("run.methods: 'data_sgd' needs a data set ([problem.data])")
        elif "methods" not in self.run.model_fields_set:
            run = self.run.model_copy(update={"methods": ["ode", "data_sgd"]})
            object.__setattr__(self, "run", run)
        if self.problem.data is not None and self.problem.data.spectrum_method == "binned":
            data = self.problem.data
            why = (f"problem.data.spectrum = {data.spectrum!r}, d = {data.n_features} > "
                   f"{DENSE_MAX_D}" if data.spectrum == "auto"
                   else "problem.data.spectrum = 'binned'")
            conflict = binned_spectrum_conflict(self.run, why, dense_possible=True)
            if conflict is not None:
                raise ValueError(": ".join(conflict))
        return self

    @model_validator(mode="after")
    def _horizon(self) -> Config:
        try:
            checks.horizon(self.run.t_max, self.problem.d, "run.t_max")
        except ConfigError as err:
            raise ValueError(str(err)) from None
        return self

    def to_json(self) -> str:
        """Serialise to JSON (paths as strings, a custom loss by its name)."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True)

    def with_overrides(self, **dotted: Any) -> Config:
        """Return a copy with dotted fields replaced and re-validated.

        Example: ``cfg.with_overrides(**{"problem.d": 500, "run.replicates": 8})``.
        """
        data = self.model_dump()
        for key, value in dotted.items():
            set_dotted(data, key, value, create_sections=True)
        loss_overridden = any(k in ("problem", "problem.loss") for k in dotted)
        if not isinstance(self.problem.loss, str) and not loss_overridden:
            data["problem"]["loss"] = self.problem.loss  # model_dump cannot copy a callable
        return validate_config(data)


def set_dotted(data: dict, key: str, value: Any, *, create_sections: bool) -> None:
    """Set ``data[a][b]...[leaf] = value`` for the dotted ``key = "a.b....leaf"`` in place.

    Parameters
    ----------
    data : dict
        A config as nested mappings (``model_dump()``).
    key : str
        Dotted field name.
    value : object
        The new value (validated later by the caller).
    create_sections : bool
        Create missing or unset sections (validation then names an unknown key), or refuse
        them.

    Raises
    ------
    ConfigError
        Naming ``key`` when a part of its path is not a section.
    """
    node = data
    *parents, leaf = key.split(".")
    for p in parents:
        if create_sections and node.get(p) is None:
            node[p] = {}  # unknown or unset section: validation names the key
        if not isinstance(node.get(p), dict):
            raise ConfigError(key, "not a config section, cannot set a field inside it"
                              if create_sections else "no such config section")
        node = node[p]
    node[leaf] = value


def format_validation_error(err: ValidationError) -> str:
    """One line naming every offending field of a pydantic error (union tags left out).

    Parameters
    ----------
    err : pydantic.ValidationError

    Returns
    -------
    str
        ``"loc: message; loc: message"``.
    """
    parts = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"] if not _is_union_tag(x))
        msg = e["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


def _union_members(tp: Any) -> list[type[BaseModel]]:
    """The pydantic models inside a (possibly annotated, possibly nested) union type."""
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [tp]
    return [m for arg in typing.get_args(tp) for m in _union_members(arg)]


def _is_union_tag(x: Any) -> bool:
    # pydantic inserts the discriminator value / function name into locations of unions;
    # the tags are the ``kind`` defaults of the members of the config's tagged unions (and
    # only those: a field name elsewhere never gets dropped from a location)
    return isinstance(x, str) and (
        x in _UNION_TAGS or x.startswith(("literal[", "callable", "function-"))
    )


_UNION_TAGS = frozenset(
    cls.model_fields["kind"].default
    for union in (Spectrum, Task, Init, LearningRateConfig)
    for cls in _union_members(union)
)


def validate_config(data: dict, base_dir: Path | None = None) -> Config:
    """Validate a mapping into a [`Config`][advdyn.config.schema.Config].

    Parameters
    ----------
    data : dict
        Nested mapping with ``problem``, ``lr`` and ``run`` sections.
    base_dir : Path, optional
        Folder against which relative file paths are resolved.

    Raises
    ------
    ConfigError
        With every offending field named.
    """
    try:
        return Config.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as err:
        raise ConfigError("", f"invalid config: {format_validation_error(err)}") from None


def read_toml(path: str | Path, field: str = "config") -> dict:
    """Read a TOML file into a mapping, with one-line errors.

    Parameters
    ----------
    path : str or Path
        The file.
    field : str
        The name the errors give for the file (``"config"``, ``"sweep"``, ...).

    Returns
    -------
    dict

    Raises
    ------
    ConfigError
        If the file is missing, a folder or not a regular file (a device, a FIFO), cannot
        be read, or is not valid UTF-8 TOML.
    """
    path = Path(path)
    if not path.exists():
        raise ConfigError(field, f"file not found: {path}")
    if path.is_dir():
        raise ConfigError(field, f"{path} is a folder, not a TOML file")
    if not path.is_file():  # a device, a FIFO (reading it could block or never end)
        raise ConfigError(field, f"{path} is not a regular file; give a TOML file")
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ConfigError(field, f"cannot read {path}: {err.strerror or err}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(
            field, f"{path} is not UTF-8 text (byte {err.start}: {raw[err.start]:#04x}); "
            "save it as UTF-8"
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(field, f"{path} is not valid TOML: {err}") from None


def load_config(path: str | Path) -> Config:
    """Read and validate a TOML config file.

    Parameters
    ----------
    path : str or Path
        TOML file; relative paths inside it are resolved against its folder.

    Returns
    -------
    Config

    Raises
    ------
    ConfigError
        If the file is missing, is not valid TOML, or fails validation.
    """
    path = Path(path)
    return validate_config(read_toml(path), base_dir=path.resolve().parent)


def default_config() -> Config:
    """Return the embedded default problem (adversarial least squares, ``d = 1000``)."""
    text = resources.files("advdyn").joinpath("defaults/default.toml").read_text()
    return validate_config(tomllib.loads(text))
