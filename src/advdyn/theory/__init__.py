"""The deterministic equivalent of streaming adversarial SGD (THEORY sections 3-9).

Statistics and expectations, the drift, learning-rate rules, the ODE, the adversarial
optimum and the constant-rate limit, the ridge equivalence and spectral bins. Pure
mathematics in float64 ([`advdyn.precision`][advdyn.precision]); solvers return
[`Solution`][advdyn.solution.Solution] pytrees.
"""

from advdyn.deprecation import renamed
from advdyn.theory.equivalence import solve_ridge_ode
from advdyn.theory.ode import integrate_ode, make_integrator, solve_ode
from advdyn.theory.rates import AbstractLearningRate, Constant, Decay, LineSearch, Polyak, StepDrop
from advdyn.theory.spectral import BinnedInstance, bin_instance, quadrature_instance
from advdyn.theory.stationary import (
    StationaryPoint,
    adversarial_optimum,
    constant_rate_limit,
    optimum,
)

__all__ = [
    "AbstractLearningRate",
    "BinnedInstance",
    "Constant",
    "Decay",
    "LineSearch",
    "Polyak",
    "StationaryPoint",
    "StepDrop",
    "adversarial_optimum",
    "bin_instance",
    "constant_rate_limit",
    "integrate_ode",
    "make_integrator",
    "optimum",
    "quadrature_instance",
    "solve_ode",
    "solve_ridge_ode",
]

#: old names (advdyn 0.1), served with a DeprecationWarning until 0.2
__getattr__ = renamed(__name__, {"LearningRate": "AbstractLearningRate"})  # rename29: keep
