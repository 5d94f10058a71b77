"""Critical attack strength eps*: where adversarial training stops resembling clean training.

The room of seed 004. It keeps what is specific to eps*: the linear-regression theory of the
paper's section 4 (`.linear`) and the two eps* estimators (`.estimators`). What
it shares with the other adversarial rooms (attacks, models, data, the adversarial training
loop, the PyTorch adapter) lives in [`advdyn.adversarial`][advdyn.adversarial] and is re-exported
here; the
config schema is [`advdyn.config.critical`][advdyn.critical], the end-to-end run behind
``advdyn critical-eps`` is [`advdyn.workflows.critical`][advdyn.critical] and its figures are
[`advdyn.plot.critical`][advdyn.critical].
"""

from advdyn.adversarial.attacks import Attack, linear_worst_case, perturb
from advdyn.adversarial.data import ArrayData, gaussian_mixture, load_digits
from advdyn.adversarial.models import CNN, MLP, make_model
from advdyn.adversarial.training import Schedule, TrainResult, adversarial_train, evaluate
from advdyn.critical.estimators import (
    FineTuneEstimate,
    ScratchEstimate,
    catastrophic_overfitting,
    crossing,
    extrapolate,
    fine_tune_estimate,
    from_scratch,
    strong_estimate,
    with_eps,
)
from advdyn.critical.verdict import Verdict, diagnose, parse_eps, prediction_interval, verdict

__all__ = [
    "CNN",
    "MLP",
    "ArrayData",
    "Attack",
    "FineTuneEstimate",
    "Schedule",
    "ScratchEstimate",
    "TrainResult",
    "Verdict",
    "adversarial_train",
    "catastrophic_overfitting",
    "crossing",
    "diagnose",
    "evaluate",
    "extrapolate",
    "fine_tune_estimate",
    "from_scratch",
    "gaussian_mixture",
    "linear_worst_case",
    "load_digits",
    "make_model",
    "parse_eps",
    "perturb",
    "prediction_interval",
    "strong_estimate",
    "verdict",
    "with_eps",
]
