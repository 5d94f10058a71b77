"""What the adversarial rooms share: attacks, small models, data sets, adversarial training.

Used by the eps* room ([`advdyn.critical`][advdyn.critical]) and the posterior and SME rooms; none
of them
imports another room for these.
"""

from advdyn.adversarial.apgd import APGD, apgd_classifier, strong_attacks, strong_evaluate
from advdyn.adversarial.attacks import Attack, linear_worst_case, perturb
from advdyn.adversarial.data import ArrayData, gaussian_mixture, load_digits
from advdyn.adversarial.models import CNN, MLP, make_model
from advdyn.adversarial.training import (
    CompileClock,
    Schedule,
    TrainResult,
    adversarial_train,
    evaluate,
)

__all__ = [
    "APGD",
    "CNN",
    "MLP",
    "ArrayData",
    "Attack",
    "CompileClock",
    "Schedule",
    "TrainResult",
    "adversarial_train",
    "apgd_classifier",
    "evaluate",
    "gaussian_mixture",
    "linear_worst_case",
    "load_digits",
    "make_model",
    "perturb",
    "strong_attacks",
    "strong_evaluate",
]
