"""Training on rows held as tensors: the tutorial's full-batch SGD on the MSE, plus what real data needs.

:func:`train` moves the model and the rows to the device and dtype of ``config`` and runs
:func:`torchlinreg.loop.train` on them (:class:`torchlinreg.objectives.Rows`): each epoch
predicts, computes the loss, records it with the parameters it was computed at, then
``zero_grad``, ``backward``, ``step`` (once for the full batch, or once per shuffled
mini-batch). Other optimizers, a learning-rate schedule and a stopping rule plug into the
same loop.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from . import loop
from .callbacks import Callback
from .config import TrainConfig
from .history import History
from .loop import make_optimizer  # noqa: F401 - the optimizer of a config, where callers found it
from .model import LinearModel
from .objectives import Rows, mse  # noqa: F401 - mse: the loss, where callers found it


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
    dtype = getattr(torch, config.dtype)
    if config.device is not None:
        from .devices import resolve_device

        model.to(resolve_device(config.device, config.dtype))
    device = next(model.parameters()).device
    model.to(dtype)
    w = None if sample_weight is None else torch.as_tensor(sample_weight).to(device, dtype).reshape(-1)  # (n,)
    X_val, y_val = (None, None) if X_val is None else (X_val.to(device, dtype), y_val.to(device, dtype))
    objective = Rows(X.to(device, dtype), y.to(device, dtype), sample_weight=w, scaler=scaler, X_val=X_val,
                     y_val=y_val, batch_size=config.batch_size, seed=config.seed)
    return loop.train(model, objective, config, callbacks, optimizer=optimizer, checkpoint=checkpoint)
