"""advdyn: the learning dynamics of adversarial training.

The rooms hold the mathematics, pure JAX: exact high-dimensional dynamics of l2-adversarial
streaming SGD ([`advdyn.problem`][advdyn.problem], [`advdyn.theory`][advdyn.theory],
[`advdyn.simulate`][advdyn.simulate]), what the adversarial rooms share
([`advdyn.adversarial`][advdyn.adversarial]), the critical attack strength eps*
([`advdyn.critical`][advdyn.critical]), SGD's posterior
([`advdyn.posterior`][advdyn.posterior]) and stochastic modified equations
([`advdyn.sme`][advdyn.sme]). The foundations around them: [`advdyn.config`][advdyn.config],
[`advdyn.io`][advdyn.io], `advdyn.plot`, [`advdyn.workflows`][advdyn.workflows],
`advdyn.cli`, and the small shared modules [`advdyn.solution`][advdyn.solution],
[`advdyn.precision`][advdyn.precision], [`advdyn.checks`][advdyn.checks],
[`advdyn.errors`][advdyn.errors], [`advdyn.typing`][advdyn.typing] and
[`advdyn.deprecation`][advdyn.deprecation]. See ``docs/architecture.md``.

Importing advdyn is cheap and changes no global state: the names below are imported on
first use, and float64 is enabled per call by the theory's entry points
([`advdyn.precision`][advdyn.precision]), never for the whole process.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from advdyn._version import __version__

#: public name -> module that defines it (imported on first access)
_EXPORTS: dict[str, str] = {
    # problem: what is learned
    "ProblemInstance": "advdyn.problem",
    "AbstractInstance": "advdyn.problem",
    "DirectionState": "advdyn.problem",
    "AbstractLoss": "advdyn.problem",
    "LeastSquares": "advdyn.problem",
    "Logistic": "advdyn.problem",
    "SquaredHinge": "advdyn.problem",
    "CustomLoss": "advdyn.problem",
    "make_loss": "advdyn.problem",
    "stream_key": "advdyn.problem",
    # theory: the deterministic equivalent
    "AbstractLearningRate": "advdyn.theory",
    "Constant": "advdyn.theory",
    "Decay": "advdyn.theory",
    "Polyak": "advdyn.theory",
    "LineSearch": "advdyn.theory",
    "solve_ode": "advdyn.theory",
    "StationaryPoint": "advdyn.theory",
    "adversarial_optimum": "advdyn.theory",
    "constant_rate_limit": "advdyn.theory",
    "solve_ridge_ode": "advdyn.theory",
    "BinnedInstance": "advdyn.theory",
    "bin_instance": "advdyn.theory",
    # simulate: SGD and the homogenized SDE
    "simulate_sgd": "advdyn.simulate",
    "simulate_hsgd": "advdyn.simulate",
    "simulate_data_sgd": "advdyn.simulate",
    "integrate_sgd": "advdyn.simulate",
    "integrate_hsgd": "advdyn.simulate",
    "time_grid": "advdyn.simulate",
    # foundations
    "Solution": "advdyn.solution",
    "ConfigError": "advdyn.errors",
    "DivergenceError": "advdyn.errors",
    "enable_x64": "advdyn.precision",
    "Config": "advdyn.config",
    "ProblemConfig": "advdyn.config",
    "RunConfig": "advdyn.config",
    "default_config": "advdyn.config",
    "load_config": "advdyn.config",
    "validate_config": "advdyn.config",
    "instantiate": "advdyn.config",
    "make_learning_rate": "advdyn.config",
    "binned_from_config": "advdyn.config",
    "DataProblemConfig": "advdyn.config",
    "data_problem": "advdyn.config",
    "compare": "advdyn.io",
    "read_netcdf": "advdyn.io",
    "write_netcdf": "advdyn.io",
    "to_dataset": "advdyn.io",
    "run": "advdyn.workflows",
    "RunResult": "advdyn.workflows",
    "limit_report": "advdyn.workflows",
    "monotone_scan": "advdyn.workflows",
    "converge_bins": "advdyn.workflows",
    "relaxed_eigenvalue": "advdyn.theory.spectral",
    "load_sweep": "advdyn.workflows",
    "run_sweep": "advdyn.workflows",
    "phase_diagram": "advdyn.workflows",
    "integrate_ode": "advdyn.theory",
    "optimum": "advdyn.theory",
    "make_integrator": "advdyn.theory",
    "RESULTS": "advdyn.solution",
}

__all__ = sorted([*_EXPORTS, "__version__"])

#: old names (advdyn 0.1), served with a DeprecationWarning until 0.2
_RENAMED = {"Loss": "AbstractLoss", "LearningRate": "AbstractLearningRate"}  # rename29: keep


def __getattr__(name: str) -> Any:
    if name in _RENAMED:
        from advdyn.deprecation import renamed

        return renamed(__name__, _RENAMED)(name)
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'advdyn' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # pragma: no cover - static view of the lazy names
    from advdyn.config import (
        Config,
        DataProblemConfig,
        ProblemConfig,
        RunConfig,
        binned_from_config,
        data_problem,
        default_config,
        instantiate,
        load_config,
        make_learning_rate,
        validate_config,
    )
    from advdyn.errors import ConfigError, DivergenceError
    from advdyn.io import compare, read_netcdf, to_dataset, write_netcdf
    from advdyn.precision import enable_x64
    from advdyn.problem import (
        AbstractInstance,
        AbstractLoss,
        CustomLoss,
        DirectionState,
        LeastSquares,
        Logistic,
        ProblemInstance,
        SquaredHinge,
        make_loss,
        stream_key,
    )
    from advdyn.simulate import (
        integrate_hsgd,
        integrate_sgd,
        simulate_data_sgd,
        simulate_hsgd,
        simulate_sgd,
        time_grid,
    )
    from advdyn.solution import RESULTS, Solution
    from advdyn.theory import (
        AbstractLearningRate,
        BinnedInstance,
        Constant,
        Decay,
        LineSearch,
        Polyak,
        StationaryPoint,
        adversarial_optimum,
        bin_instance,
        constant_rate_limit,
        integrate_ode,
        make_integrator,
        optimum,
        solve_ode,
        solve_ridge_ode,
    )
    from advdyn.theory.spectral import relaxed_eigenvalue
    from advdyn.workflows.bins import converge_bins
    from advdyn.workflows.limits import limit_report, monotone_scan
    from advdyn.workflows.phase import phase_diagram
    from advdyn.workflows.run import RunResult, run
    from advdyn.workflows.sweep import load_sweep, run_sweep
