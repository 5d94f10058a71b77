"""Config schemas (pydantic) and the one place that turns a config into objects.

`advdyn.config.schema` validates ``advdyn run`` configs, [`advdyn.config.critical`][advdyn.critical]
the ``advdyn critical-eps`` configs, and `advdyn.config.build` builds instances, bins
and learning-rate rules from them. The mathematics never imports this package.
"""

from advdyn.config.build import (
    DataProblem,
    binned_from_config,
    config_supported,
    data_problem,
    eigen_decomposition,
    instantiate,
    load_data,
    make_learning_rate,
)
from advdyn.config.schema import (
    Config,
    DataProblemConfig,
    ProblemConfig,
    RunConfig,
    default_config,
    load_config,
    validate_config,
)

__all__ = [
    "Config",
    "DataProblem",
    "DataProblemConfig",
    "ProblemConfig",
    "RunConfig",
    "binned_from_config",
    "config_supported",
    "data_problem",
    "default_config",
    "eigen_decomposition",
    "instantiate",
    "load_config",
    "load_data",
    "make_learning_rate",
    "validate_config",
]
