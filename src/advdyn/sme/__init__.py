"""Continuous-time approximations of (adversarial) SGD: seed 002 (Gu, Guo & Li).

Stochastic modified equations of order 1 and 2 for SGD on a clean or adversarial objective
(`objectives`, `equations`), exact second moments for least
squares (`moments`), gradient flows of clean vs adversarial training
(`flows`), learning-rate control (`control`) and the
alternating mini-max of PGD adversarial training (`minimax`) and the
alternating game with a persistent adversary and its SMEs (`game`). Pure JAX
mathematics; solvers return [`Solution`][advdyn.solution.Solution] pytrees.
"""

from advdyn.deprecation import renamed
from advdyn.sme.control import line_search_rate, optimal_policy, solve_control, switch_time
from advdyn.sme.equations import (
    SME,
    SME_STREAM,
    AbstractSME,
    GridBrownianPath,
    core_scaling,
    integrate_sme,
    simulate_objective_sgd,
    solve_sme,
    step_grid,
)
from advdyn.sme.flows import gradient_flow
from advdyn.sme.game import (
    AbstractGame,
    GameMoments,
    GameSME,
    PerturbationGame,
    QuadraticGame,
    game_step,
    quadratic_game_moments,
    simulate_game,
)
from advdyn.sme.moments import MomentPaths, exact_second_moments, loglog_fit, weak_error_study
from advdyn.sme.objectives import (
    AbstractObjective,
    EmpiricalObjective,
    GaussianLeastSquares,
    linear_predict,
    squared_loss,
)

__all__ = [
    "SME",
    "SME_STREAM",
    "AbstractGame",
    "AbstractObjective",
    "AbstractSME",
    "EmpiricalObjective",
    "GameMoments",
    "GameSME",
    "GaussianLeastSquares",
    "GridBrownianPath",
    "MomentPaths",
    "PerturbationGame",
    "QuadraticGame",
    "core_scaling",
    "exact_second_moments",
    "game_step",
    "gradient_flow",
    "integrate_sme",
    "line_search_rate",
    "linear_predict",
    "loglog_fit",
    "optimal_policy",
    "quadratic_game_moments",
    "simulate_game",
    "simulate_objective_sgd",
    "solve_control",
    "solve_sme",
    "squared_loss",
    "step_grid",
    "switch_time",
    "weak_error_study",
]

#: old names (advdyn 0.1), served with a DeprecationWarning until 0.2
__getattr__ = renamed(__name__, {
    "simulate_sgd": "simulate_objective_sgd",  # rename29: keep
    "recording_grid": "step_grid",  # rename29: keep
    "loglog_slope": "loglog_fit",  # rename29: keep
})
