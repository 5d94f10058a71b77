"""What is learned: spectra, the Gaussian-mixture instance in its eigenbasis, the losses, and a
data set's Gaussian-mixture surrogate.

Pure mathematics: nothing here imports a config schema, files, progress bars or plots.
"""

from advdyn.deprecation import renamed
from advdyn.problem.data import (
    MixtureStatistics,
    SpectralStatistics,
    mixture_statistics,
    rows_basis_instance,
    spectral_statistics,
    surrogate_diagnostics,
    surrogate_instance,
)
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
    "MixtureStatistics",
    "ProblemInstance",
    "SpectralStatistics",
    "SquaredHinge",
    "make_loss",
    "mixture_statistics",
    "rows_basis_instance",
    "spectral_statistics",
    "stream_key",
    "surrogate_diagnostics",
    "surrogate_instance",
]

#: old names (advdyn 0.1), served with a DeprecationWarning until 0.2
__getattr__ = renamed(__name__, {"Loss": "AbstractLoss"})  # rename29: keep
