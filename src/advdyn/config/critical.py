"""Validated configuration of an ``advdyn critical-eps`` run (pydantic, immutable).

A TOML file maps one-to-one onto `CriticalConfig`; every section is optional and
defaults to the embedded ``defaults/critical_eps.toml`` values (an MLP on the 8x8 digits)::

    [data]
    kind = "digits"        # or "gaussian_mixture" (then d, classes, separation)
    n_train = 1000

    [model]
    kind = "mlp"           # or "cnn"
    width = 64

    [scratch]
    eps = [0.01, 0.02, 0.03, 0.05, 0.08]

Unknown keys, NaN and infinity are rejected; errors name the field.
"""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path
from typing import Literal

from pydantic import Field, StrictBool, field_validator

from advdyn.config.command import (
    CommandConfig,
    Section,
    StepDropSGD,
    default_command,
    load_command,
    validate_command,
)


def increasing_radii(values: list[float]) -> list[float]:
    """``values`` when they are a non-empty, positive, strictly increasing list of radii
    (``ValueError`` saying which property fails otherwise)."""
    if not values:
        raise ValueError("must list at least one radius")
    if any(v <= 0 for v in values):
        raise ValueError("radii must be positive")
    if any(b <= a for a, b in pairwise(values)):
        raise ValueError("radii must be strictly increasing")
    return values


class DataConfig(Section):
    """Dataset: the 8x8 digits, or a Gaussian mixture (``d``, ``classes``, ``separation``)."""

    kind: Literal["digits", "gaussian_mixture"] = "digits"
    n_train: int | None = Field(default=None, ge=10)
    n_test: int = Field(default=500, ge=10)
    d: int = Field(default=20, ge=1)
    classes: int = Field(default=2, ge=2)
    separation: float = Field(default=3.0, gt=0)
    seed: int = Field(default=0, ge=0)


class ModelConfig(Section):
    """Architecture: ``mlp`` (``width``, ``depth`` hidden layers) or ``cnn``."""

    kind: Literal["mlp", "cnn"] = "mlp"
    width: int = Field(default=64, ge=1)
    depth: int = Field(default=1, ge=1)
    seed: int = Field(default=0, ge=0)


class AttackConfig(Section):
    """PGD attack used for training and (with ``eval_steps``) for evaluation."""

    norm: Literal["linf", "l2"] = "linf"
    train_steps: int = Field(default=5, ge=1)
    eval_steps: int = Field(default=10, ge=1)
    rel_step: float = Field(default=2.5, gt=0)
    random_start: StrictBool = False
    clip: StrictBool = Field(default=True, description="clip to the data domain when it has one")


class TrainConfig(StepDropSGD):
    """From-scratch training: SGD with momentum, step drops of the learning rate."""

    epochs: int = Field(default=30, ge=1)
    batch_size: int = Field(default=64, ge=1)
    lr: float = Field(default=0.05, gt=0)
    drop_factor: float = Field(default=10.0, ge=1)
    seed: int = Field(default=0, ge=0)
    optimizer: Literal["sgd", "adam"] = Field(
        default="sgd", description="SGD with momentum, or Adam (lr ~ 1e-3)")
    loss: Literal["ce", "trades", "mart"] = Field(
        default="ce", description="adversarial cross-entropy, TRADES or MART")
    beta: float = Field(default=6.0, ge=0, description="KL weight of TRADES / MART")


class ScratchConfig(Section):
    """Radii of the from-scratch grid (``eps = 0``, the clean run, is added)."""

    eps: list[float] = [0.01, 0.02, 0.03, 0.05, 0.08]

    _check = field_validator("eps")(classmethod(lambda cls, v: increasing_radii(v)))


class FastConfig(Section):
    """Algorithm A.1: fine-tuning radii, epochs, triangular schedule, extrapolation."""

    eps: list[float] = [0.005, 0.01, 0.015]
    attack: Literal["pgd", "fgm"] = Field(
        default="pgd", description="fine-tuning attack: PGD (attack.train_steps) or FGM")
    epochs: int = Field(default=5, ge=1)
    lr: float | None = Field(default=None, gt=0, description="peak rate; default: train.lr")
    warmup: float = Field(default=0.3, gt=0, lt=1)
    method: Literal["linear", "isotonic"] = "linear"
    refine: list[float] = Field(
        default=[0.5, 1.0],
        description="fractions of the first estimate to fine-tune at again ([] : no refinement)",
    )

    _check = field_validator("eps")(classmethod(lambda cls, v: increasing_radii(v)))

    @field_validator("refine")
    @classmethod
    def _fractions(cls, v):
        if v and (any(f <= 0 for f in v) or len(set(v)) != len(v)):
            raise ValueError("refinement fractions must be positive and distinct")
        return v


class FGMConfig(Section):
    """FGM training to locate catastrophic overfitting (PGD test accuracy collapse)."""

    enabled: StrictBool = True
    eps: list[float] = [0.05, 0.1, 0.15, 0.2, 0.3]
    epochs: int | None = Field(default=None, ge=1, description="default: train.epochs")
    threshold: float = Field(default=0.2, gt=0, lt=1)

    _check = field_validator("eps")(classmethod(lambda cls, v: increasing_radii(v)))


class StrongConfig(Section):
    """The strong evaluation: worst case per sample over the evaluation PGD and the APGD
    attacks (default AutoAttack's standard APGD-CE and APGD-T), applied to the trained models
    of both estimators."""

    enabled: StrictBool = True
    steps: int = Field(default=20, ge=2, description="APGD iterations per restart")
    restarts: int = Field(default=1, ge=1)
    attacks: list[Literal["apgd-ce", "apgd-dlr", "apgd-t"]] = Field(
        default=["apgd-ce", "apgd-t"], min_length=1,
        description="APGD attacks added to the evaluation PGD")
    targets: int = Field(default=9, ge=1,
                         description="APGD-T target classes (capped at classes - 1)")

    @field_validator("attacks")
    @classmethod
    def _distinct(cls, v):
        if len(set(v)) != len(v):
            raise ValueError("attacks must be distinct")
        return v


class VerdictConfig(Section):
    """Repeats over data splits and seeds, and the verdict's interval."""

    eps: float | str | None = Field(
        default=None, description="radius to judge (data units, or a fraction like '8/255')")
    repeats: int = Field(default=5, ge=1, description="data splits x seeds (seed + r)")
    level: float = Field(default=0.95, gt=0, lt=1)
    attack: Literal["strong", "pgd"] = Field(
        default="strong", description="which evaluation's eps* the verdict uses")

    @field_validator("eps")
    @classmethod
    def _radius(cls, v):
        if v is None:
            return v
        from advdyn.critical.verdict import parse_eps

        return parse_eps(v)


class CriticalConfig(CommandConfig):
    """A complete ``critical-eps`` run."""

    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    attack: AttackConfig = AttackConfig()
    train: TrainConfig = TrainConfig()
    scratch: ScratchConfig = ScratchConfig()
    fast: FastConfig = FastConfig()
    fgm: FGMConfig = FGMConfig()
    strong: StrongConfig = StrongConfig()
    verdict: VerdictConfig = VerdictConfig()


def validate_critical_config(data: dict) -> CriticalConfig:
    """Validate a mapping into a `CriticalConfig`.

    Raises
    ------
    ConfigError
        Naming every offending field (e.g. ``scratch.eps: radii must be positive``).
    """
    return validate_command(CriticalConfig, data)


def load_critical_config(path: str | Path) -> CriticalConfig:
    """Read and validate a TOML file.

    Raises
    ------
    ConfigError
        If the file is missing, not TOML, or invalid.
    """
    return load_command(CriticalConfig, path)


def default_critical_config() -> CriticalConfig:
    """The embedded default (``defaults/critical_eps.toml``: an MLP on the digits)."""
    return default_command(CriticalConfig, "critical_eps.toml")
