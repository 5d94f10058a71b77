"""advdyn: exact high-dimensional dynamics of l2-adversarial training under streaming SGD.

Importing advdyn enables JAX's 64-bit mode: the theory (ODE, statistics, expectations) runs
in float64; simulators choose their own precision explicitly.
"""

import jax

jax.config.update("jax_enable_x64", True)

from ._version import __version__  # noqa: E402
from .config import (  # noqa: E402
    Config,
    ProblemConfig,
    RunConfig,
    default_config,
    load_config,
    validate_config,
)
from .equivalence import solve_ridge_ode  # noqa: E402
from .errors import ConfigError, DivergenceError  # noqa: E402
from .hsgd import simulate_hsgd  # noqa: E402
from .limits import limit_report, monotone_scan  # noqa: E402
from .losses import CustomLoss, LeastSquares, Logistic, Loss, SquaredHinge, make_loss  # noqa: E402
from .ode import solve_ode  # noqa: E402
from .pipeline import RunResult, run  # noqa: E402
from .problem import ProblemInstance, instantiate, stream_key  # noqa: E402
from .results import compare, read_netcdf, write_netcdf  # noqa: E402
from .schedules import (  # noqa: E402
    Constant,
    Decay,
    LearningRate,
    LineSearch,
    Polyak,
    make_learning_rate,
)
from .sgd import simulate_sgd, time_grid  # noqa: E402
from .spectral import BinnedInstance, bin_instance, binned_from_config, converge_bins  # noqa: E402
from .stationary import (  # noqa: E402
    StationaryPoint,
    adversarial_optimum,
    constant_rate_limit,
)
from .sweep import load_sweep, run_sweep  # noqa: E402

__all__ = [
    "BinnedInstance",
    "Config",
    "ConfigError",
    "Constant",
    "CustomLoss",
    "Decay",
    "DivergenceError",
    "LearningRate",
    "LeastSquares",
    "LineSearch",
    "Logistic",
    "Loss",
    "Polyak",
    "ProblemConfig",
    "ProblemInstance",
    "RunConfig",
    "RunResult",
    "SquaredHinge",
    "StationaryPoint",
    "__version__",
    "adversarial_optimum",
    "bin_instance",
    "binned_from_config",
    "compare",
    "constant_rate_limit",
    "converge_bins",
    "default_config",
    "instantiate",
    "limit_report",
    "load_config",
    "load_sweep",
    "make_learning_rate",
    "make_loss",
    "monotone_scan",
    "read_netcdf",
    "run",
    "run_sweep",
    "simulate_hsgd",
    "simulate_sgd",
    "solve_ode",
    "solve_ridge_ode",
    "stream_key",
    "time_grid",
    "validate_config",
    "write_netcdf",
]
