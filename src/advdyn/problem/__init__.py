"""What is learned: spectra, the Gaussian-mixture instance in its eigenbasis, and the losses.

Pure mathematics: nothing here imports a config schema, files, progress bars or plots.
"""

from advdyn.problem.instance import AbstractInstance, ProblemInstance, stream_key
from advdyn.problem.losses import (
    AbstractLoss,
    CustomLoss,
    LeastSquares,
    Logistic,
    SquaredHinge,
    make_loss,
)
from advdyn.problem.state import DirectionState

__all__ = [
    "AbstractInstance",
    "AbstractLoss",
    "CustomLoss",
    "DirectionState",
    "LeastSquares",
    "Logistic",
    "ProblemInstance",
    "SquaredHinge",
    "make_loss",
    "stream_key",
]
