"""The tutorial's model: one ``nn.Linear`` layer inside an ``nn.Module``."""

from __future__ import annotations

import torch
from torch import nn

from . import defaults


class LinearModel(nn.Module):
    """``y_pred = x @ weight.T + bias``, the tutorial's ``Model`` class.

    Parameters are named ``linear.weight`` (shape ``(out_features, in_features)``) and
    ``linear.bias`` (shape ``(out_features,)``), as in the tutorial. With ``fit_intercept=False``
    the layer is ``nn.Linear(bias=False)``: no bias parameter exists, the line goes through the
    origin (``y_pred = x @ weight.T``).
    """

    def __init__(self, in_features: int = defaults.IN_FEATURES, out_features: int = defaults.OUT_FEATURES,
                 fit_intercept: bool = True):
        super().__init__()
        self.linear = nn.Linear(in_features, out_features, bias=bool(fit_intercept))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y_pred = self.linear(x)
        return y_pred

    @property
    def in_features(self) -> int:
        return self.linear.in_features

    @property
    def out_features(self) -> int:
        return self.linear.out_features

    @property
    def fit_intercept(self) -> bool:
        """Whether the layer has a bias parameter."""
        return self.linear.bias is not None

    def bias_or_zeros(self) -> torch.Tensor:
        """The bias, detached; zeros (the intercept a model without bias has) when there is none."""
        bias = self.linear.bias
        weight = self.linear.weight
        return torch.zeros(weight.shape[0], dtype=weight.dtype, device=weight.device) if bias is None \
            else bias.detach()

    def parameters_by_name(self) -> dict[str, torch.Tensor]:
        """Detached copies of the parameters, keyed by name (``linear.weight``, ``linear.bias``)."""
        return {name: p.detach().clone() for name, p in self.named_parameters()}


def build_model(
    in_features: int = defaults.IN_FEATURES,
    out_features: int = defaults.OUT_FEATURES,
    *,
    seed: int | None = defaults.MODEL_SEED,
    fit_intercept: bool = True,
) -> LinearModel:
    """A :class:`LinearModel` whose random initial parameters come from ``seed``.

    The seed is applied as the tutorial does, ``torch.manual_seed(seed)`` right before the
    layer is built, but inside ``torch.random.fork_rng`` so that the caller's global random
    state is unchanged. With the defaults the initial weight is 0.10597813 and the bias
    0.96379614. ``seed=None`` draws from the current global state instead. ``fit_intercept=False``
    builds the layer without a bias (the weight is drawn as with one: the same first draws).
    """
    for name, value in (("in_features", in_features), ("out_features", out_features)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if seed is None:
        return LinearModel(in_features, out_features, fit_intercept)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return LinearModel(in_features, out_features, fit_intercept)
