"""Critical attack strength eps*: where adversarial training stops resembling clean training.

Attacks (:mod:`.attacks`), models and data (:mod:`.models`, :mod:`.data`), adversarial
training (:mod:`.training`), the linear-regression theory of the paper's section 4
(:mod:`.linear`), the two eps* estimators (:mod:`.estimators`), configs and the end-to-end
run behind ``advdyn critical-eps`` (:mod:`.config`, :mod:`.experiment`) and figures
(:mod:`.figures`). The PyTorch adapter (:mod:`.torch_adapter`) is imported on demand.
``import advdyn`` does not import this subpackage.
"""

from .attacks import Attack, linear_worst_case, perturb
from .config import CriticalConfig, default_critical_config, load_critical_config
from .data import ArrayData, gaussian_mixture, load_digits
from .estimators import (
    FineTuneEstimate,
    ScratchEstimate,
    catastrophic_overfitting,
    crossing,
    extrapolate,
    fine_tune_estimate,
    from_scratch,
    with_eps,
)
from .experiment import CriticalResult, run_critical
from .models import CNN, MLP, make_model
from .training import Schedule, TrainResult, adversarial_train, evaluate

__all__ = [
    "CNN",
    "MLP",
    "ArrayData",
    "Attack",
    "CriticalConfig",
    "CriticalResult",
    "FineTuneEstimate",
    "Schedule",
    "ScratchEstimate",
    "TrainResult",
    "adversarial_train",
    "catastrophic_overfitting",
    "crossing",
    "default_critical_config",
    "evaluate",
    "extrapolate",
    "fine_tune_estimate",
    "from_scratch",
    "gaussian_mixture",
    "linear_worst_case",
    "load_critical_config",
    "load_digits",
    "make_model",
    "perturb",
    "run_critical",
    "with_eps",
]
