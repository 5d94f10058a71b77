"""Validated configuration of an ``advdyn posterior`` run (pydantic, immutable).

A TOML file maps one-to-one onto `PosteriorConfig`; every section is optional and
defaults to the embedded ``defaults/posterior.toml``::

    [small]        # adversarial least squares in d = 4: covariance, transient, chains
    [sweep]        # tr(H Sigma) over learning rates and batch sizes (closed forms)
    [highdim]      # the ODE's per-direction posterior variance through a rate drop vs SGD
    [robust]       # adversarial training with and without AWP, per-epoch bound terms

Unknown keys, NaN and infinity are rejected; errors name the field.
"""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path
from typing import Literal

from pydantic import Field, StrictBool, field_validator, model_validator

from advdyn import checks
from advdyn.config.command import (
    CommandConfig,
    Section,
    StepDropSGD,
    default_command,
    load_command,
    validate_command,
)


def _positive_list(v: list[float]) -> list[float]:
    if not v:
        raise ValueError("must not be empty")
    if any(x <= 0 for x in v):
        raise ValueError("values must be positive")
    return v


class SmallConfig(Section):
    """Adversarial least squares with a diagonal input covariance (POSTERIOR checks 2-4)."""

    spectrum: list[float] = [0.5, 0.8, 1.2, 1.5]
    theta_star: list[float] = [1.0, -0.7, 0.5, 0.3]
    sigma: float = Field(default=0.3, ge=0)
    eps: float = Field(default=0.3, ge=0)
    eta: float = Field(default=0.05, gt=0)
    decay_factor: float = Field(default=10.0, ge=1)
    chains: int = Field(default=4000, ge=2)
    burn_in: int = Field(default=600, ge=0)
    transient_steps: list[int] = [0, 10, 30, 100, 300]
    seed: int = Field(default=0, ge=0)

    _pos = field_validator("spectrum")(classmethod(lambda cls, v: _positive_list(v)))

    @field_validator("transient_steps")
    @classmethod
    def _steps(cls, v):
        if not v or any(s < 0 for s in v) or any(b <= a for a, b in pairwise(v)):
            raise ValueError("must be non-negative and strictly increasing")
        return v

    @model_validator(mode="after")
    def _shapes(self):
        if len(self.theta_star) != len(self.spectrum):
            raise ValueError(
                f"small.theta_star has {len(self.theta_star)} entries, small.spectrum "
                f"{len(self.spectrum)}"
            )
        return self


class SweepConfig(Section):
    """Rates and batch sizes for ``tr(H Sigma)`` of the small problem (closed forms)."""

    rates: list[float] = [0.005, 0.01, 0.02, 0.05, 0.1, 0.2]
    batches: list[int] = [1, 4, 16, 64]
    momentum: float = Field(default=0.0, ge=0, lt=1)

    _pos = field_validator("rates")(classmethod(lambda cls, v: _positive_list(v)))

    @field_validator("batches")
    @classmethod
    def _batches(cls, v):
        if not v or any(b < 1 for b in v):
            raise ValueError("batch sizes must be >= 1")
        return v


class HighdimConfig(Section):
    """Streaming adversarial least squares in ``d`` dimensions: ODE vs SGD replicates."""

    d: int = Field(default=300, ge=2)
    eigen_low: float = Field(default=0.5, gt=0)
    eigen_high: float = Field(default=1.5, gt=0)
    eps: float = Field(default=0.3, ge=0)
    noise: float = Field(default=0.5, ge=0)
    gamma1: float = Field(default=1.0, gt=0)
    gamma2: float = Field(default=0.1, gt=0)
    t_drop: float = Field(default=3.0, gt=0)
    t_max: float = Field(default=8.0, gt=0)
    n_times: int = Field(default=17, ge=3)
    replicates: int = Field(default=24, ge=2)
    groups: int = Field(default=6, ge=1)
    prior_variance: float | None = Field(
        default=None, gt=0, description="s0^2 of the prior N(0, s0^2 I); default 1/d"
    )
    seed: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _check(self):
        if self.eigen_high < self.eigen_low:
            raise ValueError("highdim.eigen_high must be >= highdim.eigen_low")
        if not self.t_drop < self.t_max:
            raise ValueError("highdim.t_drop must be below highdim.t_max")
        if self.groups > self.d:
            raise ValueError("highdim.groups must not exceed highdim.d")
        checks.as_value_error(checks.step_count)(
            self.t_max * self.d, "highdim.t_max", f"t_max = {self.t_max:g} at d = {self.d}")
        return self


class RobustConfig(StepDropSGD):
    """Adversarial training with and without AWP, per-epoch bound terms."""

    enabled: StrictBool = True
    data: Literal["digits", "gaussian_mixture"] = "digits"
    n_train: int = Field(default=300, ge=20)
    n_test: int = Field(default=200, ge=10)
    d: int = Field(default=20, ge=1, description="gaussian_mixture only")
    classes: int = Field(default=4, ge=2, description="gaussian_mixture only")
    label_noise: float = Field(default=0.2, ge=0, lt=1)
    width: int = Field(default=32, ge=1)
    depth: int = Field(default=1, ge=1)
    eps: float = Field(default=0.1, ge=0)
    norm: Literal["linf", "l2"] = "linf"
    method: Literal["pgd", "fgm"] = "pgd"
    steps: int = Field(default=3, ge=1)
    epochs: int = Field(default=10, ge=2)
    batch_size: int = Field(default=32, ge=1)
    lr: float = Field(default=0.1, gt=0)
    awp_gamma: float = Field(default=5e-3, ge=0)
    awp_warmup_epochs: int = Field(default=1, ge=0)
    subset: int = Field(default=96, ge=2)
    top_k: int = Field(default=3, ge=1)
    lanczos_iterations: int = Field(default=10, ge=2)
    probes: int = Field(default=4, ge=2)
    measure_every: int = Field(default=1, ge=1)
    prior_variances: list[float] = [1e-4, 1e-3, 1e-2, 1e-1, 1.0]
    delta: float = Field(default=0.05, gt=0, lt=1)
    loss_scale: float = Field(default=5.0, gt=0)
    seed: int = Field(default=0, ge=0)

    _pos = field_validator("prior_variances")(classmethod(lambda cls, v: _positive_list(v)))

    @model_validator(mode="after")
    def _check(self):
        if self.top_k > self.lanczos_iterations:
            raise ValueError("robust.top_k must not exceed robust.lanczos_iterations")
        if self.batch_size > self.n_train:
            raise ValueError("robust.batch_size must not exceed robust.n_train")
        return self


class PosteriorConfig(CommandConfig):
    """A complete ``advdyn posterior`` run."""

    small: SmallConfig = SmallConfig()
    sweep: SweepConfig = SweepConfig()
    highdim: HighdimConfig = HighdimConfig()
    robust: RobustConfig = RobustConfig()


def validate_posterior_config(data: dict) -> PosteriorConfig:
    """Validate a mapping into a `PosteriorConfig`.

    Raises
    ------
    ConfigError
        Naming every offending field (e.g. ``small.eta: Input should be greater than 0``).
    """
    return validate_command(PosteriorConfig, data)


def load_posterior_config(path: str | Path) -> PosteriorConfig:
    """Read and validate a TOML file.

    Raises
    ------
    ConfigError
        If the file is missing, not TOML, or invalid.
    """
    return load_command(PosteriorConfig, path)


def default_posterior_config() -> PosteriorConfig:
    """The embedded default (``defaults/posterior.toml``)."""
    return default_command(PosteriorConfig, "posterior.toml")
