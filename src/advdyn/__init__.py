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
from .errors import ConfigError, DivergenceError  # noqa: E402
from .losses import CustomLoss, LeastSquares, Logistic, Loss, SquaredHinge, make_loss  # noqa: E402
from .ode import solve_ode  # noqa: E402
from .pipeline import RunResult, run  # noqa: E402
from .problem import ProblemInstance, instantiate, stream_key  # noqa: E402
from .results import compare, read_netcdf, write_netcdf  # noqa: E402
from .schedules import Constant, Decay, LearningRate, make_learning_rate  # noqa: E402
from .sgd import simulate_sgd, time_grid  # noqa: E402

__all__ = [
    "Config",
    "ConfigError",
    "Constant",
    "CustomLoss",
    "Decay",
    "DivergenceError",
    "LearningRate",
    "LeastSquares",
    "Logistic",
    "Loss",
    "ProblemConfig",
    "ProblemInstance",
    "RunConfig",
    "RunResult",
    "SquaredHinge",
    "__version__",
    "compare",
    "default_config",
    "instantiate",
    "load_config",
    "make_learning_rate",
    "make_loss",
    "read_netcdf",
    "run",
    "simulate_sgd",
    "solve_ode",
    "stream_key",
    "time_grid",
    "validate_config",
    "write_netcdf",
]
