"""Validated configuration of an ``advdyn sme`` run (pydantic, immutable).

A TOML file maps one-to-one onto `SMERunConfig`; every section is optional and
defaults to the embedded ``defaults/sme.toml``. Sections: ``problem`` (adversarial least
squares in the eigenbasis), ``risks`` (SGD vs SMEs, clean and adversarial training),
``weak_error`` (exact moments), ``control`` (optimal vs fixed rates), ``flows`` (gradient
flows, SME section 2 example), ``minimax`` (K-step PGD game) and ``digits`` (logistic
regression on the 8x8 digits). Unknown keys, NaN and infinity are rejected; errors name
the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import pairwise
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, StrictBool, field_validator, model_validator

from advdyn import checks
from advdyn.config.command import (
    CommandConfig,
    Section,
    default_command,
    load_command,
    validate_command,
)


class ProblemSection(Section):
    """Adversarial least squares: ``x ~ N(0, diag(eigenvalues))``,
    ``y = <theta*, x> + sigma xi``."""

    eigenvalues: list[float] = [0.5, 2.0]
    theta_star: list[float] = [1.0, -0.5]
    theta0: list[float] = [0.0, 0.5]
    sigma: float = Field(default=0.5, ge=0)
    eps: float = Field(default=0.3, ge=0)

    @field_validator("eigenvalues")
    @classmethod
    def _positive(cls, v):
        if not v or any(x <= 0 for x in v):
            raise ValueError("eigenvalues must be a non-empty list of positive numbers")
        return v

    @model_validator(mode="after")
    def _lengths(self):
        d = len(self.eigenvalues)
        for name in ("theta_star", "theta0"):
            if len(getattr(self, name)) != d:
                raise ValueError(f"{name} must have len(eigenvalues) = {d} entries")
        return self


class RisksSection(Section):
    """SGD against its order-1 and order-2 SMEs (Monte Carlo over ``replicates``
    independent runs of each; ``paths`` is the deprecated name of ``replicates``)."""

    renamed_keys: ClassVar[Mapping[str, str]] = {"paths": "replicates"}

    eta: float = Field(default=0.05, gt=0, le=1)
    t_max: float = Field(default=3.0, gt=0)
    replicates: int = Field(default=500, ge=2)
    n_times: int = Field(default=21, ge=2)
    dt_factor: float = Field(default=0.5, gt=0, le=1, description="SME step = dt_factor * eta")
    scheme: Literal["euler", "extrapolated"] = "extrapolated"

    @model_validator(mode="after")
    def _steps(self):
        checks.as_value_error(checks.step_count)(
            self.t_max / (self.dt_factor * self.eta), "risks.t_max", f"t_max = {self.t_max:g}")
        return self


def _decreasing_positive(v: list[float]) -> list[float]:
    if len(v) < 2 or any(x <= 0 for x in v) or any(b >= a for a, b in pairwise(v)):
        raise ValueError("need at least two positive, strictly decreasing learning rates")
    return v


class WeakErrorSection(Section):
    """Exact-moment weak errors (SME section 3 check 1 by default)."""

    eigenvalues: list[float] = [0.5, 1.0, 2.0]
    sigma: float = Field(default=0.5, ge=0)
    delta0: list[float] = [1.0, -1.0, 0.5]
    t_max: float = Field(default=2.0, gt=0)
    etas: list[float] = [0.05, 0.025, 0.0125, 0.00625, 0.003125]

    _check = field_validator("etas")(classmethod(lambda cls, v: _decreasing_positive(v)))

    @model_validator(mode="after")
    def _lengths(self):
        if len(self.delta0) != len(self.eigenvalues) or any(x <= 0 for x in self.eigenvalues):
            raise ValueError("delta0 and eigenvalues need equal lengths, eigenvalues > 0")
        checks.as_value_error(checks.step_count)(
            self.t_max / self.etas[-1], "weak_error.t_max", f"t_max = {self.t_max:g}")
        return self


class ControlSection(Section):
    """Toy control problem ``f = a x^2 / 2``: optimal feedback vs fixed rate multipliers."""

    a: float = Field(default=1.5, gt=0)
    noise: float = Field(default=2.0, gt=0)
    eta: float = Field(default=0.1, gt=0)
    m0: float = Field(default=4.0, gt=0)
    t_max: float = Field(default=10.0, gt=0)
    fixed: list[float] = [1.0, 0.5, 0.2]

    @field_validator("fixed")
    @classmethod
    def _multipliers(cls, v):
        if any(not 0 < u <= 1 for u in v):
            raise ValueError("fixed multipliers must lie in (0, 1]")
        return v

    @model_validator(mode="after")
    def _steps(self):
        checks.as_value_error(checks.step_count)(
            self.t_max / self.eta, "control.t_max", f"t_max = {self.t_max:g}")
        return self


class FlowsSection(Section):
    """Gradient flows of clean vs adversarial training (SME section 2 example)."""

    sigma: float = Field(default=0.1, ge=0)
    eps: float = Field(default=1.0, gt=0)
    t_max: float = Field(default=30.0, gt=0)


class MinimaxSection(Section):
    """K-step l2 PGD adversary of step ``alpha`` against the exact inner maximum."""

    enabled: StrictBool = True
    steps: list[int] = [1, 4]
    alpha: float = Field(default=0.1, gt=0)
    n: int = Field(default=200, ge=10)
    t_max: float = Field(default=4.0, gt=0)

    @field_validator("steps")
    @classmethod
    def _steps(cls, v):
        if not v or any(k < 1 for k in v):
            raise ValueError("steps must be a non-empty list of integers >= 1")
        return v


class DigitsSection(Section):
    """Logistic (softmax) regression on the 8x8 digits, clean vs adversarial (l-inf PGD),
    ``replicates`` SGD runs and SME solves of each (``paths``: its deprecated name)."""

    renamed_keys: ClassVar[Mapping[str, str]] = {"paths": "replicates"}

    enabled: StrictBool = True
    n_train: int = Field(default=200, ge=20)
    eps: float = Field(default=0.1, gt=0)
    attack_steps: int = Field(default=3, ge=1)
    eta: float = Field(default=0.5, gt=0)
    steps: int = Field(default=100, ge=1)
    batch: int = Field(default=16, ge=1)
    replicates: int = Field(default=4, ge=1)


class SMERunConfig(CommandConfig):
    """A complete ``advdyn sme`` run."""

    seed: int = Field(default=0, ge=0)
    problem: ProblemSection = ProblemSection()
    risks: RisksSection = RisksSection()
    weak_error: WeakErrorSection = WeakErrorSection()
    control: ControlSection = ControlSection()
    flows: FlowsSection = FlowsSection()
    minimax: MinimaxSection = MinimaxSection()
    digits: DigitsSection = DigitsSection()


def validate_sme_config(data: dict) -> SMERunConfig:
    """Validate a mapping into a `SMERunConfig`.

    Parameters
    ----------
    data : dict
        Parsed TOML.

    Returns
    -------
    SMERunConfig

    Raises
    ------
    ConfigError
        Naming every offending field (e.g. ``risks.eta: Input should be greater than 0``).
    """
    return validate_command(SMERunConfig, data)


def load_sme_config(path: str | Path) -> SMERunConfig:
    """Read and validate a TOML file.

    Parameters
    ----------
    path : str or Path
        The file.

    Returns
    -------
    SMERunConfig

    Raises
    ------
    ConfigError
        If the file is missing, not TOML, or invalid.
    """
    return load_command(SMERunConfig, path)


def default_sme_config() -> SMERunConfig:
    """The embedded default (``defaults/sme.toml``).

    Returns
    -------
    SMERunConfig
    """
    return default_command(SMERunConfig, "sme.toml")
