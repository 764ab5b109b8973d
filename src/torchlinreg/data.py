"""Data sets: the tutorial's noisy line, held as tensors with column names."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from . import defaults
from .errors import ConfigError


@dataclass(frozen=True)
class Dataset:
    """Inputs and targets of a regression problem.

    Attributes
    ----------
    X : Tensor of shape (n_samples, n_features)
    y : Tensor of shape (n_samples, n_targets)
    feature_names, target_names : column names, one per column of ``X`` and ``y``.
    """

    X: torch.Tensor
    y: torch.Tensor
    feature_names: tuple[str, ...] = field(default=())
    target_names: tuple[str, ...] = field(default=())

    def __post_init__(self):
        if self.X.ndim != 2 or self.y.ndim != 2:
            raise ValueError(f"X and y must be 2-D, got shapes {tuple(self.X.shape)} and {tuple(self.y.shape)}")
        if self.X.shape[0] != self.y.shape[0]:
            raise ValueError(f"X has {self.X.shape[0]} rows but y has {self.y.shape[0]}")
        if not self.feature_names:
            object.__setattr__(self, "feature_names", tuple(f"x{i}" if self.n_features > 1 else "x" for i in range(self.n_features)))
        if not self.target_names:
            object.__setattr__(self, "target_names", tuple(f"y{i}" if self.n_targets > 1 else "y" for i in range(self.n_targets)))

    @property
    def n_samples(self) -> int:
        return self.X.shape[0]

    @property
    def n_features(self) -> int:
        return self.X.shape[1]

    @property
    def n_targets(self) -> int:
        return self.y.shape[1]

    def __repr__(self) -> str:
        return (f"Dataset(n_samples={self.n_samples}, features={list(self.feature_names)}, "
                f"targets={list(self.target_names)})")


def tutorial_data(
    n_samples: int = defaults.N_SAMPLES,
    *,
    x_start: float = defaults.X_START,
    x_stop: float = defaults.X_STOP,
    weight: float = defaults.TRUE_WEIGHT,
    bias: float = defaults.TRUE_BIAS,
    noise_low: int = defaults.NOISE_LOW,
    noise_high: int = defaults.NOISE_HIGH,
    seed: int = defaults.DATA_SEED,
) -> Dataset:
    """Points scattered around the line ``y = weight * x + bias``, as in the tutorial.

    ``X`` holds ``n_samples`` evenly spaced values from ``x_start`` to ``x_stop``
    (a column, float32); the noise is integer, drawn uniformly from
    ``noise_low..noise_high`` (both inclusive) by a generator seeded with ``seed``,
    then converted to float. With the defaults this is exactly the tutorial's
    ``X = torch.linspace(1, 50, 50).reshape(-1, 1)``,
    ``torch.manual_seed(71); e = torch.randint(-8, 9, (50, 1), dtype=torch.float)``,
    ``y = 2*X + 1 + e``. The global random state is left untouched.
    """
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
        raise ConfigError(f"the number of samples must be a positive integer, got {n_samples!r}")
    if noise_low > noise_high:
        raise ConfigError(f"noise_low ({noise_low}) is above noise_high ({noise_high}); swap them")
    for name, value in (("x_start", x_start), ("x_stop", x_stop), ("weight", weight), ("bias", bias)):
        if not torch.isfinite(torch.tensor(float(value))):
            raise ConfigError(f"{name} must be a finite number, got {value!r}")
    X = torch.linspace(x_start, x_stop, n_samples).reshape(-1, 1)  # (n, 1)
    generator = torch.Generator().manual_seed(seed)
    e = torch.randint(noise_low, noise_high + 1, (n_samples, 1), generator=generator).float()  # (n, 1)
    y = weight * X + bias + e
    return Dataset(X, y, ("x",), ("y",))
