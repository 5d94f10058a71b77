"""What is learned: spectra, the Gaussian-mixture instance in its eigenbasis, the losses, and a
data set's Gaussian-mixture surrogate.

Pure mathematics: nothing here imports a config schema, files, progress bars or plots.
"""

from advdyn.problem.data import (
    MixtureStatistics,
    mixture_statistics,
    surrogate_diagnostics,
    surrogate_instance,
)
from advdyn.problem.instance import AbstractInstance, ProblemInstance, stream_key
from advdyn.problem.losses import CustomLoss, LeastSquares, Logistic, Loss, SquaredHinge, make_loss
from advdyn.problem.state import DirectionState

__all__ = [
    "AbstractInstance",
    "CustomLoss",
    "DirectionState",
    "LeastSquares",
    "Logistic",
    "Loss",
    "MixtureStatistics",
    "ProblemInstance",
    "SquaredHinge",
    "make_loss",
    "mixture_statistics",
    "stream_key",
    "surrogate_diagnostics",
    "surrogate_instance",
]
