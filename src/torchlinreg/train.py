"""The tutorial's training loop: full-batch SGD on the mean squared error."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from .callbacks import Callback
from .config import TrainConfig
from .history import EpochRecord, History, Params
from .model import LinearModel


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.SGD(
        model.parameters(),
        lr=config.lr,
        momentum=config.momentum,
        nesterov=config.nesterov,
        weight_decay=config.weight_decay,
    )


def train(
    model: LinearModel,
    X: torch.Tensor,
    y: torch.Tensor,
    config: TrainConfig = TrainConfig(),
    callbacks: Iterable[Callback] = (),
) -> History:
    """Train ``model`` in place on ``(X, y)`` and return the history of every epoch.

    Each epoch does what the tutorial does: predict, compute the loss, record it together
    with the parameters it was computed at, then ``zero_grad``, ``backward``, ``step``.
    If the loss becomes inf or NaN, training stops at that epoch and the model keeps the
    parameters of the last epoch whose loss was finite (``history.status == "diverged"``).
    """
    callbacks = list(callbacks)
    criterion = nn.MSELoss()
    optimizer = make_optimizer(model, config)
    history = History(initial_params=_params(model))
    for cb in callbacks:
        cb.on_train_begin(model, config)

    for epoch in range(1, config.epochs + 1):
        y_pred = model(X)  # (n, out_features)
        loss = criterion(y_pred, y)
        if not torch.isfinite(loss):
            _diverged(model, history, f"the loss became {loss.item()} at epoch {epoch}")
            break
        record = EpochRecord(epoch, loss.item(), _params(model))
        history.records.append(record)
        for cb in callbacks:
            cb.on_epoch_end(record)

        optimizer.zero_grad()  # gradients accumulate: clear last epoch's
        loss.backward()
        optimizer.step()
    else:
        if all(torch.isfinite(p).all() for p in model.parameters()):
            history.final_params = _params(model)
        else:
            _diverged(model, history, f"the parameters became inf or NaN in the step after epoch {config.epochs}")

    for cb in callbacks:
        cb.on_train_end(history)
    return history


def _params(model: nn.Module) -> Params:
    return {name: p.detach().tolist() for name, p in model.named_parameters()}


def _diverged(model: nn.Module, history: History, what: str) -> None:
    """Mark the run diverged and put back the last parameters whose loss was finite."""
    last = history.records[-1].params if history.records else history.initial_params
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.tensor(last[name], dtype=p.dtype))
    kept = f"epoch {history.records[-1].epoch}" if history.records else "initialisation"
    history.status = "diverged"
    history.message = f"{what}; training stopped and kept the parameters of {kept}"
    history.final_params = last
