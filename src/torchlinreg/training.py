"""The training loop: the tutorial's full-batch SGD on the MSE, plus the options real data needs.

Each epoch: predict, compute the loss, record it with the parameters it was computed at,
then ``zero_grad``, ``backward``, ``step`` (once for the full batch, or once per shuffled
mini-batch). Other optimizers, a learning-rate schedule and a stopping rule plug into the
same loop.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import torch
from torch import nn

from .callbacks import Callback
from .config import TrainConfig
from .history import EpochRecord, History, Params
from .model import LinearModel


GROWTH_LIMIT = 1e6  # a loss this many times its first value is diverging, even while still finite


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    params, lr, wd = model.parameters(), config.learning_rate, config.weight_decay
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=config.momentum, nesterov=config.nesterov, weight_decay=wd)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    # One quasi-Newton iteration per epoch, with a line search so that lr=1 is safe.
    # max_eval: the first evaluation plus up to 25 of the line search. PyTorch's default,
    # max_iter * 5 // 4 = 1, leaves the line search none: a unit step that does not lower
    # the loss then becomes a zero step, and every later epoch repeats it (a silent stall).
    return torch.optim.LBFGS(params, lr=lr, max_iter=1, max_eval=26, line_search_fn="strong_wolfe",
                             tolerance_grad=1e-15, tolerance_change=0.0)  # our epochs and --tol decide when to stop


def make_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig):
    if config.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.step_size, gamma=config.gamma)
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    return None


def mse(y_pred: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """``nn.MSELoss``; with sample weights ``sum(w * r**2) / (sum(w) * n_targets)``."""
    if weight is None:
        return nn.functional.mse_loss(y_pred, y)
    return ((y_pred - y) ** 2 * weight[:, None]).sum() / (weight.sum() * y.shape[1])


class _Plateau:
    """True once the loss has not improved by ``tol`` (relative) for ``patience`` epochs in a row."""

    def __init__(self, tol: float | None, patience: int):
        self.tol, self.patience = tol, patience
        self.best, self.stale = float("inf"), 0

    def update(self, loss: float) -> bool:
        if self.tol is None:
            return False
        if loss < self.best - self.tol * abs(self.best) or self.best == float("inf"):
            self.stale = 0
        else:
            self.stale += 1
        self.best = min(self.best, loss)
        return self.stale >= self.patience


class _Units:
    """Reports losses and parameters in the data's units when training runs on standardised data.

    ``scaler`` has ``unscale_params(weight_s, bias_s) -> (weight, bias)`` and ``y_scale``
    (one factor per target); without one, values are reported as the model holds them.
    """

    def __init__(self, scaler=None):
        self.scaler = scaler
        if scaler is not None:
            self.y_scale2 = torch.as_tensor(np.asarray(scaler.y_scale, dtype=np.float64) ** 2)

    def loss(self, loss: torch.Tensor, y_pred: torch.Tensor, y: torch.Tensor, weight=None) -> float:
        if self.scaler is None:
            return loss.item()
        acc = torch.float32 if y.device.type == "mps" else torch.float64  # on the data's device; MPS has no float64
        r = y_pred.detach().to(acc) - y.to(acc)
        w = None if weight is None else weight.to(acc)
        return mse(r * self.y_scale2.to(r).sqrt(), torch.zeros_like(r), w).item()

    def params(self, model: nn.Module) -> Params:
        if self.scaler is None:
            return {name: p.detach().tolist() for name, p in model.named_parameters()}
        weight, bias = self.scaler.unscale_params(model.linear.weight.detach().cpu().double().numpy(),
                                                  model.linear.bias.detach().cpu().double().numpy())
        return {"linear.weight": np.asarray(weight).tolist(), "linear.bias": np.asarray(bias).tolist()}


def train(
    model: LinearModel,
    X: torch.Tensor,
    y: torch.Tensor,
    config: TrainConfig = TrainConfig(),
    callbacks: Iterable[Callback] = (),
    *,
    X_val: torch.Tensor | None = None,
    y_val: torch.Tensor | None = None,
    scaler=None,
    sample_weight: torch.Tensor | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    checkpoint=None,
) -> History:
    """Train ``model`` in place on ``(X, y)`` and return the history of every epoch.

    The loss recorded for epoch ``t`` is the MSE on all of ``(X, y)`` at the parameters
    the epoch starts from (after ``t - 1`` epochs of steps), as the tutorial prints it;
    with ``X_val``/``y_val`` the held-out MSE at the same parameters is recorded too.
    With a ``scaler`` (see :class:`torchlinreg.scaling.Standardizer`) the model trains on
    standardised data but losses and parameters are recorded in the data's units.

    Training ends after ``config.epochs`` epochs, when the stopping rule is met
    (``status="converged"``; the model keeps the parameters of the last recorded epoch),
    or when the loss becomes inf or NaN or grows past ``GROWTH_LIMIT`` times its first
    value (``status="diverged"``; the model keeps the parameters of the last epoch before).

    ``sample_weight`` (shape (n,), non-negative) makes the loss the weighted mean of the
    squared errors (weighted least squares); mini-batches use their rows' weights.
    ``optimizer``: continue with this optimizer (and its state, e.g. momentum buffers)
    instead of making a new one from ``config``; it must hold ``model``'s parameters.
    ``checkpoint`` (a :class:`torchlinreg.checkpoint.Checkpointer`) saves the loop's whole
    state after epochs and, when resuming, starts after its epoch with that state, so the
    run ends with the same bits as one never interrupted.
    """
    callbacks = list(callbacks)
    dtype = getattr(torch, config.dtype)
    if config.device is not None:
        from .devices import resolve_device

        model.to(resolve_device(config.device, config.dtype))
    device = next(model.parameters()).device
    model.to(dtype)
    X, y = X.to(device, dtype), y.to(device, dtype)
    w = None if sample_weight is None else torch.as_tensor(sample_weight).to(device, dtype).reshape(-1)  # (n,)
    if X_val is not None:
        X_val, y_val = X_val.to(device, dtype), y_val.to(device, dtype)
    optimizer = optimizer if optimizer is not None else make_optimizer(model, config)
    scheduler = make_scheduler(optimizer, config)
    full_batch = config.batch_size is None or config.batch_size >= X.shape[0]
    order = torch.Generator().manual_seed(config.seed)  # mini-batch shuffling
    units = _Units(scaler)
    plateau = _Plateau(config.tol, config.patience)
    history = History(initial_params=units.params(model))
    last_state = _state(model)  # model-unit parameters of the last epoch with a finite loss
    start, first_loss = 1, None
    if checkpoint is not None:  # when resuming, the state after the checkpoint's epoch comes back
        start, first_loss = checkpoint.bind(model, optimizer, scheduler, plateau, history, last_state, generator=order)
    for cb in callbacks:
        cb.on_train_begin(model, config, history)

    epoch = start - 1  # the last epoch run, also when a resumed run had run them all
    for epoch in range(start, config.epochs + 1):
        needs_graph = full_batch and config.optimizer != "lbfgs"  # reuse this forward pass for the step
        with torch.set_grad_enabled(needs_graph):
            y_pred = model(X)  # (n, out_features)
            loss = mse(y_pred, y, w)
        diverged, first_loss = _divergence_guard(model, history, last_state, loss.item(), first_loss, epoch)
        if diverged:
            break
        last_state = _state(model)
        record = EpochRecord(epoch, units.loss(loss, y_pred, y, w), units.params(model),
                             lr=optimizer.param_groups[0]["lr"], val_loss=_val_loss(model, X_val, y_val, units))
        if _end_epoch(history, record, callbacks, plateau, config):
            break

        if config.optimizer == "lbfgs":
            optimizer.step(lambda: _closure(model, optimizer, X, y, w))
        elif full_batch:
            optimizer.zero_grad()  # gradients accumulate: clear last epoch's
            loss.backward()
            optimizer.step()
        else:
            for idx in torch.randperm(X.shape[0], generator=order).to(device).split(config.batch_size):
                optimizer.zero_grad()
                batch_loss = mse(model(X[idx]), y[idx], None if w is None else w[idx])
                batch_loss.backward()
                optimizer.step()
        if scheduler is not None:
            scheduler.step()
        if checkpoint is not None:
            checkpoint.epoch_end(epoch, last_state, first_loss)  # saves every few epochs; stops on SIGINT/SIGTERM

    return _finish(model, history, last_state, units, callbacks, epoch)


# --- bookkeeping shared with the other engines (gram.train_gram, minibatch.train_minibatches) -------

def _divergence_guard(model: nn.Module, history: History, last_state: dict[str, torch.Tensor], loss: float,
                      first_loss: float | None, epoch: int) -> tuple[bool, float | None]:
    """The check at the top of each epoch, on the loss at the parameters the epoch starts from.

    Returns ``(diverged, first_loss)``: ``diverged`` is True when the loss is inf or NaN or has
    grown past GROWTH_LIMIT times its first value (the run is then marked diverged and the last
    parameters with a finite loss put back, see :func:`_diverged`); ``first_loss`` is the value
    the growth rule compares with, set at epoch 1 (a resumed run passes its checkpoint's).
    Losses are in the model's units.
    """
    if not math.isfinite(loss):
        _diverged(model, history, last_state, f"the loss became {loss} at epoch {epoch}")
        return True, first_loss
    first_loss = loss if epoch == 1 else first_loss
    if loss > GROWTH_LIMIT * first_loss > 0:
        _diverged(model, history, last_state, f"the loss grew to {loss:.3g} at epoch {epoch}, "
                                              f"over {GROWTH_LIMIT:.0e} times its first value")
        return True, first_loss
    return False, first_loss


def _end_epoch(history: History, record: EpochRecord, callbacks, plateau: _Plateau, config: TrainConfig) -> bool:
    """Record the epoch, tell the callbacks, and say whether the stopping rule ends training."""
    history.records.append(record)
    for cb in callbacks:
        cb.on_epoch_end(record)
    if plateau.update(record.loss):
        history.status = "converged"
        history.message = (f"the loss improved by less than {config.tol:g} (relative) for {config.patience} "
                           f"epochs in a row; stopped after epoch {record.epoch}")
        return True
    return False


def _finish(model: nn.Module, history: History, last_state, units: _Units, callbacks, epoch: int) -> History:
    """Settle the final parameters (and a last-step divergence), then tell the callbacks."""
    if history.status == "converged":
        _load(model, last_state)  # the parameters the last recorded loss was computed at
        history.final_params = history.records[-1].params
    elif history.status != "diverged" and not all(torch.isfinite(p).all() for p in model.parameters()):
        _diverged(model, history, last_state, f"the parameters became inf or NaN in the step after epoch {epoch}")
    elif history.status != "diverged":
        history.final_params = units.params(model)
    for cb in callbacks:
        cb.on_train_end(history)
    return history


def _closure(model, optimizer, X, y, w):
    optimizer.zero_grad()
    loss = mse(model(X), y, w)
    loss.backward()
    return loss


@torch.no_grad()
def _val_loss(model, X_val, y_val, units: _Units) -> float | None:
    if X_val is None or X_val.shape[0] == 0:
        return None
    y_pred = model(X_val)
    return units.loss(mse(y_pred, y_val), y_pred, y_val)


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


@torch.no_grad()
def _load(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    for name, p in model.named_parameters():
        p.copy_(state[name])


def _diverged(model: nn.Module, history: History, last_state: dict[str, torch.Tensor], what: str) -> None:
    """Mark the run diverged and put back the last parameters whose loss was finite."""
    last = history.records[-1] if history.records else None
    history.status = "diverged"
    history.message = f"{what}; training stopped and kept the parameters of " + (
        f"epoch {last.epoch}" if last else "initialisation")
    history.final_params = last.params if last else history.initial_params
    _load(model, last_state)
