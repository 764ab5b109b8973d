"""The training loop: the tutorial's loop, once, for every way the data can be held.

The tutorial trains with::

    for epoch in range(epochs):
        y_pred = model(X)                  # forward pass
        loss = criterion(y_pred, y)        # MSE
        print(epoch + 1, loss.item())      # record
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

:func:`train` is that loop over an *objective* (:mod:`torchlinreg.objectives`): the rows in
memory as in the tutorial, the R factor of the data (each epoch O(d²) whatever the number of
rows), or mini-batches streamed from files or shared across processes. The objective gives
the loss at the parameters the epoch starts from and, for each optimizer step of the epoch,
a closure that does ``zero_grad``, the forward pass, the loss and ``backward``; so
``optimizer.step(closure)`` serves SGD, Adam and L-BFGS (whose line search calls the closure
again) alike. Everything else is a callback (:mod:`torchlinreg.callbacks`): the divergence
guard, the stopping rule, the learning-rate schedule, checkpoints, the printed report, the
progress bar, TensorBoard.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch

from .callbacks import Callback, Checkpoint, DivergenceGuard, Schedule, StoppingRule
from .config import TrainConfig
from .history import EpochRecord, History


def train(model: torch.nn.Module, objective, config: TrainConfig = TrainConfig(),
          callbacks: Iterable[Callback] = (), *, optimizer: torch.optim.Optimizer | None = None,
          checkpoint=None) -> History:
    """Train ``model`` in place on ``objective`` for ``config.epochs`` epochs; the history of every epoch.

    Epoch ``t`` records the loss at the parameters it starts from (after ``t - 1`` epochs of
    steps), as the tutorial prints it. Training ends early when the stopping rule is met
    (``status="converged"``; the model keeps the parameters of the last record) or the loss
    diverges (``status="diverged"``; the model keeps the last parameters with a finite loss).
    ``optimizer``: continue with this one (and its state) instead of making one from
    ``config``. ``checkpoint``: a :class:`torchlinreg.checkpoint.Checkpointer`.
    """
    optimizer = optimizer if optimizer is not None else make_optimizer(model, config)
    rules = [DivergenceGuard()] + ([Schedule(config)] if config.schedule != "constant" else []) \
        + ([Checkpoint(checkpoint)] if checkpoint is not None else [])
    hooks = _Hooks([*rules, *callbacks, StoppingRule(config.tol, config.patience)])
    state = LoopState(model, objective, optimizer, config, History(initial_params=objective.params(model)))
    hooks("begin", state)
    state.epoch = state.start - 1  # the last epoch run, also when a resumed run had run them all
    for state.epoch in range(state.start, config.epochs + 1):
        state.loss = objective.loss(model)           # forward pass and loss, at the parameters the epoch starts from
        if hooks("check", state):                    # a loss that is not finite, or exploding, stops here
            break
        _record(state)                               # record the loss (in the data's units) and the parameters
        if hooks("record", state):                   # report it; the stopping rule may end training here
            break
        for closure in objective.steps(model, optimizer, state.epoch):  # the full batch, or each mini-batch:
            optimizer.step(closure)                  # zero_grad, forward pass, loss, backward; then the step
        hooks("after_steps", state)                  # learning-rate schedule, checkpoint
    hooks("end", state)
    return state.history


@dataclass(eq=False)
class LoopState:
    """What the callbacks see of the loop."""

    model: torch.nn.Module
    objective: object
    optimizer: torch.optim.Optimizer
    config: TrainConfig
    history: History
    epoch: int = 0  # the epoch running (from 1); after training, the last one run
    start: int = 1  # the first epoch to run: after a checkpoint's when resuming
    loss: float = math.nan  # the loss at the parameters the epoch starts from, in the model's units
    record: EpochRecord | None = None  # the epoch's record, in the data's units
    stop: bool = False  # set by a callback to end training
    first_loss: float | None = None  # epoch 1's loss, which the divergence guard compares with
    last_state: dict = field(default_factory=dict)  # parameters of the last epoch with a finite loss
    scheduler: object = None  # the learning-rate scheduler, if any
    best: float = math.inf  # the stopping rule's best loss so far
    stale: int = 0  # and epochs without enough improvement

    def __repr__(self) -> str:
        return f"LoopState(epoch={self.epoch}, loss={self.loss!r}, stop={self.stop})"


def _record(state: LoopState) -> None:
    """The epoch's record into ``state.record`` and the history."""
    loss, params, val_loss = state.objective.record(state.model)
    state.record = EpochRecord(state.epoch, loss, params, lr=state.optimizer.param_groups[0]["lr"], val_loss=val_loss)
    state.history.records.append(state.record)


class _Hooks:
    """``hooks(name, state)`` calls hook ``name`` of every callback in order and says whether one set
    ``state.stop``; a stop in ``check`` ends the round there (the epoch is not recorded), and so does one in
    ``record`` (the divergence guard's drops the epoch; the stopping rule comes last).

    Each hook's list holds only the callbacks that do something in it (the base class's hooks that
    do nothing are left out), bound once: the loop's own cost per epoch stays a few microseconds.
    """

    def __init__(self, callbacks: list[Callback]):
        self.callbacks = callbacks
        self.bound = {name: [getattr(cb, name) for cb in callbacks if _acts(cb, name)]
                      for name in ("begin", "check", "record", "after_steps", "end")}

    def __call__(self, name: str, state: LoopState) -> bool:
        for hook in self.bound[name]:
            hook(state)
            if state.stop and name in ("check", "record"):  # the later hooks do not see an epoch that ended it
                break
        return state.stop


_FORWARDS = {"begin": "on_train_begin", "record": "on_epoch_end", "end": "on_train_end"}  # base hook -> what it calls


def _acts(cb: Callback, name: str) -> bool:
    """Whether ``cb``'s hook ``name`` does anything: overridden, or forwarding to an overridden ``on_*`` method."""
    kind = type(cb)
    if getattr(kind, name) is not getattr(Callback, name):
        return True
    forward = _FORWARDS.get(name)
    return forward is not None and getattr(kind, forward) is not getattr(Callback, forward)


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer ``config`` names, over ``model``'s parameters."""
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
