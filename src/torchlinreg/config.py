"""Training settings: one dataclass, validated on creation.

Imports nothing heavy, so the command line can check its flags before loading PyTorch.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from . import defaults
from .errors import ConfigError


@dataclass(frozen=True)
class TrainConfig:
    """How the model is trained. The defaults are the tutorial's."""

    epochs: int = defaults.EPOCHS  # full passes over the data; the tutorial's 50
    lr: float = defaults.LR  # SGD step size; above ~0.00116 the tutorial's data diverges
    momentum: float = defaults.MOMENTUM  # heavy-ball momentum in [0, 1); 0 is plain gradient descent
    nesterov: bool = False  # Nesterov momentum (needs momentum > 0)
    weight_decay: float = defaults.WEIGHT_DECAY  # L2 penalty added to the gradient of every parameter
    seed: int = defaults.MODEL_SEED  # seeds the model's random initial weight and bias

    def __post_init__(self):
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1:
            raise ConfigError(f"epochs must be a positive integer, got {self.epochs!r}; pass e.g. --epochs 50")
        _check_number("learning rate", self.lr, "--lr 0.001", positive=True)
        _check_number("momentum", self.momentum, "--momentum 0.9")
        if self.momentum >= 1:
            raise ConfigError(f"momentum must be below 1, got {self.momentum!r}; pass e.g. --momentum 0.9")
        if self.nesterov and self.momentum == 0:
            raise ConfigError("Nesterov momentum needs a momentum above 0; pass e.g. --momentum 0.9")
        _check_number("weight decay", self.weight_decay, "--weight-decay 0.0001")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed must be a non-negative integer, got {self.seed!r}")

    def to_dict(self) -> dict:
        return asdict(self)


def _check_number(name: str, value, example: str, *, positive: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value!r}; pass e.g. {example}")
    if positive and value <= 0:
        raise ConfigError(f"{name} must be above 0, got {value!r}; pass e.g. {example}")
    if not positive and value < 0:
        raise ConfigError(f"{name} must not be negative, got {value!r}; pass e.g. {example} or 0")
