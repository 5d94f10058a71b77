"""The config of ``advdyn phase``: a run config and the grid of one or two numeric fields.

A phase file is a run config (``[problem]``, ``[lr]``, ``[run]``, as for ``advdyn run``) and
a ``[phase]`` table naming the swept fields; the embedded default is
``advdyn/defaults/phase.toml`` (``advdyn phase-config`` prints it)::

    [phase]
    x = { field = "problem.epsilon", start = 0.0, stop = 1.0, num = 21 }
    y = { field = "lr.gamma", values = [0.1, 0.2, 0.4, 0.8, 1.6] }
    factor = 1.1    # the time to come within this factor of the optimum's risk
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from advdyn.config.command import (
    RunCommandConfig,
    Section,
    default_command,
    load_command,
    validate_command,
)
from advdyn.config.schema import Config


class Axis(Section):
    """One swept field: explicit ``values``, or ``num`` points from ``start`` to ``stop``."""

    field: str = Field(min_length=1)
    values: list[float] | None = None
    start: float | None = None
    stop: float | None = None
    num: int | None = Field(default=None, strict=True, ge=1, le=100_000)
    spacing: Literal["linear", "log"] = "linear"

    @model_validator(mode="after")
    def _one_way(self):
        ranged = (self.start, self.stop, self.num)
        if self.values is not None:
            if any(v is not None for v in ranged):
                raise ValueError("give either values or start, stop and num, not both")
            if not self.values:
                raise ValueError("values must not be empty")
        elif any(v is None for v in ranged):
            raise ValueError("give values, or all of start, stop and num")
        elif self.spacing == "log" and not (self.start > 0 and self.stop > 0):  # type: ignore[operator]
            raise ValueError("log spacing needs start > 0 and stop > 0")
        return self

    def grid(self) -> np.ndarray:
        """The values of the axis (float64)."""
        if self.values is not None:
            return np.asarray(self.values, dtype=np.float64)
        assert self.start is not None and self.stop is not None and self.num is not None
        space = np.geomspace if self.spacing == "log" else np.linspace
        return np.asarray(space(self.start, self.stop, self.num), dtype=np.float64)


class PhaseSection(Section):
    """The grid and what is measured on it."""

    x: Axis
    y: Axis | None = None
    # the time to come within this factor of the optimum's adversarial risk is recorded
    factor: float = Field(default=1.1, gt=1)
    # points per batched solve; None: as many as the memory estimate allows
    chunk: int | None = Field(default=None, strict=True, ge=1)

    @model_validator(mode="after")
    def _distinct(self):
        if self.y is not None and self.y.field == self.x.field:
            raise ValueError("x and y must name different fields")
        return self


class PhaseConfig(RunCommandConfig):
    """A complete ``advdyn phase`` config."""
    phase: PhaseSection

    def run_config(self) -> Config:
        """The run config every grid point starts from (a data problem without
        ``run.methods`` runs the ODE only: ``data_sgd``, its run default, takes a pass over
        the rows per record, replicate and point)."""
        run = self.run
        if self.problem.data is not None and "methods" not in run.model_fields_set:
            run = run.model_copy(update={"methods": ["ode"]})
        return Config(problem=self.problem, lr=self.lr, run=run)


def validate_phase_config(data: dict) -> PhaseConfig:
    """Validate a mapping ([`ConfigError`][advdyn.errors.ConfigError] naming the field if
    invalid)."""
    return validate_command(PhaseConfig, data)


def load_phase_config(path: str | Path) -> PhaseConfig:
    """Read and validate a phase TOML file ([`ConfigError`][advdyn.errors.ConfigError] if
    invalid)."""
    return load_command(PhaseConfig, path)


def default_phase_config() -> PhaseConfig:
    """The embedded default ``advdyn/defaults/phase.toml``."""
    return default_command(PhaseConfig, "phase.toml")
