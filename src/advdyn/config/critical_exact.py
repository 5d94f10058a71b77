"""The config of ``advdyn critical-exact``: a run config and the radii to solve.

A critical-exact file is a run config (``[problem]``, synthetic or ``[problem.data]``,
``[lr]``, ``[run]``, as for ``advdyn run``) with an optional ``[critical]`` table; without
a file, ``advdyn run``'s embedded default is used::

    [critical]
    eps_over_radius = [0.1, 0.25, 0.5, 1.0, 2.0]  # multiples of the problem's radius
    # eps = [0.2, 0.5, 1.0]                      # or absolute radii (not both)
    margin = 1.0                                 # m of the gap-matched eps*

Only the ODE runs: of ``[run]``, ``t_max`` and ``n_times`` (the recording times, on the
step-aligned grid of ``advdyn run``), ``bins`` (built without the relaxed coarsening, as
in ``advdyn phase``), ``rtol``, ``atol``, ``solver`` and ``divergence_factor`` apply;
``problem.epsilon`` is replaced by each radius in turn.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import Field, field_validator, model_validator

from advdyn.config.command import (
    RunCommandConfig,
    Section,
    load_command,
    validate_command,
)
from advdyn.config.critical import increasing_radii
from advdyn.config.schema import (
    Config,
    PolyakLR,
    default_config,
)

#: multiples of the problem's radius solved when ``[critical]`` gives no radii
DEFAULT_EPS_OVER_RADIUS = tuple(float(v) for v in np.geomspace(0.05, 2.0, 12))


def _increasing_or_none(value: list[float] | None) -> list[float] | None:
    return None if value is None else solved_radii(value)


def solved_radii(values: list[float]) -> list[float]:
    """``values`` when they are radii the study can solve after ``eps = 0``: positive (a zero
    is refused with the reason: ``eps = 0`` is always solved first) and strictly increasing
    (``ValueError`` saying which property fails otherwise)."""
    if any(v == 0 for v in values):
        raise ValueError("radii must be positive (eps = 0 is always solved first: leave it "
                         "out)")
    return increasing_radii(values)


class CriticalSection(Section):
    """The radii of the critical-radius study and its margin.

    ``eps``: absolute radii; ``eps_over_radius``: multiples of the problem's radius
    ([`problem_radius`][advdyn.critical.exact.problem_radius], the data-scaled radius of a
    data set); at most one of them; neither: `DEFAULT_EPS_OVER_RADIUS`. Both lists are
    positive and strictly increasing (``eps = 0`` is always solved first). ``margin`` is
    the ``m`` of the gap-matched ``eps_star_margin`` (0: the paper's definition).
    """

    eps: list[float] | None = Field(default=None, max_length=1000)
    eps_over_radius: list[float] | None = Field(default=None, max_length=1000)
    margin: float = Field(default=1.0, ge=0, le=1e6)

    _check_radii = field_validator("eps", "eps_over_radius")(_increasing_or_none)

    @model_validator(mode="after")
    def _one_way(self):
        if self.eps is not None and self.eps_over_radius is not None:
            raise ValueError("give eps or eps_over_radius, not both")
        return self


class CriticalExactConfig(RunCommandConfig):
    """A complete ``advdyn critical-exact`` config: a run config and ``[critical]``."""
    critical: CriticalSection = CriticalSection()

    @model_validator(mode="after")
    def _runnable(self):
        if isinstance(self.lr, PolyakLR):
            raise ValueError("lr.kind: 'polyak' takes its minimum objective from the optimum "
                             "of one radius, and this study solves many; use a constant, "
                             "decaying or line-search rate")
        return self

    def run_config(self) -> Config:
        """The run config every radius starts from (its ODE only: ``run.methods`` is
        ``["ode"]``)."""
        run = self.run.model_copy(update={"methods": ["ode"]})
        return Config(problem=self.problem, lr=self.lr, run=run)


def validate_critical_exact_config(data: dict) -> CriticalExactConfig:
    """Validate a mapping ([`ConfigError`][advdyn.errors.ConfigError] naming the field if
    invalid)."""
    return validate_command(CriticalExactConfig, data)


def load_critical_exact_config(path: str | Path) -> CriticalExactConfig:
    """Read and validate a critical-exact TOML file, a run config with an optional
    ``[critical]`` ([`ConfigError`][advdyn.errors.ConfigError] if invalid)."""
    return load_command(CriticalExactConfig, path)


def default_critical_exact_config() -> CriticalExactConfig:
    """``advdyn run``'s embedded default with the default ``[critical]``."""
    return validate_command(CriticalExactConfig, default_config().model_dump())
