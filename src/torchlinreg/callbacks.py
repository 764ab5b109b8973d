"""The extension points of the training loop (:func:`torchlinreg.loop.train`).

A callback sees the loop through five hooks on one :class:`torchlinreg.loop.LoopState`:

- ``begin(state)``: before epoch 1 (a resumed run has its earlier epochs in ``state.history``);
- ``check(state)``: the loss at the parameters the epoch starts from is in ``state.loss``;
  setting ``state.stop`` ends training before the epoch is recorded;
- ``record(state)``: the epoch's :class:`~torchlinreg.history.EpochRecord` is in ``state.record``;
  setting ``state.stop`` ends training after it;
- ``after_steps(state)``: the epoch's optimizer steps are done;
- ``end(state)``: training is over and ``state.history`` holds the final parameters.

Reporting callbacks need less: override ``on_train_begin(model, config, history)``,
``on_epoch_end(record)`` and ``on_train_end(history)``, which the state hooks call by
default. Training code never prints; anything that reports progress is a callback. The
loop's own rules are callbacks too: :class:`DivergenceGuard`, :class:`StoppingRule`,
:class:`Schedule` and :class:`Checkpoint`.
"""

from __future__ import annotations

import math

GROWTH_LIMIT = 1e6  # a loss this many times its first value is diverging, even while still finite


class Callback:
    """Base class; override the hooks you need."""

    def on_train_begin(self, model, config, history) -> None:
        """Before epoch 1; ``history.initial_params`` holds the starting parameters."""

    def on_epoch_end(self, record) -> None:
        pass

    def on_train_end(self, history) -> None:
        pass

    # --- the loop's hooks: by default they call the three above ---------------------------------

    def begin(self, state) -> None:
        self.on_train_begin(state.model, state.config, state.history)

    def check(self, state) -> None:
        pass

    def record(self, state) -> None:
        self.on_epoch_end(state.record)

    def after_steps(self, state) -> None:
        pass

    def end(self, state) -> None:
        self.on_train_end(state.history)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class DivergenceGuard(Callback):
    """Stops training when the loss is inf or NaN or has grown past ``GROWTH_LIMIT`` times its first value.

    The run is then marked diverged and the model gets back the last parameters whose loss
    was finite (``state.last_state``, kept here after every epoch that passes). At the end
    it settles ``history.final_params``: those of the last record when the stopping rule
    ended training, the model's when the last step left them finite, else a divergence.
    Losses are in the model's units.
    """

    def begin(self, state) -> None:
        state.last_state = {name: p.detach().clone() for name, p in state.model.named_parameters()}
        self._keep = [(state.last_state[name], p) for name, p in state.model.named_parameters()]  # bound once

    def check(self, state) -> None:
        loss, epoch = state.loss, state.epoch
        if not math.isfinite(loss):
            return self._diverged(state, f"the loss became {loss} at epoch {epoch}")
        state.first_loss = loss if epoch == 1 else state.first_loss
        if loss > GROWTH_LIMIT * state.first_loss > 0:
            return self._diverged(state, f"the loss grew to {loss:.3g} at epoch {epoch}, "
                                         f"over {GROWTH_LIMIT:.0e} times its first value")
        for kept, p in self._keep:  # keep these parameters: their loss is finite
            kept.copy_(p.detach())
        return None

    def record(self, state) -> None:
        """The loss in the data's units can overflow where the model's is finite (standardised training on
        values near float64's limit): that epoch is not kept, and the run ends as diverged."""
        loss = state.record.loss
        if not math.isfinite(loss):
            state.history.records.pop()
            self._diverged(state, f"the loss in the data's units became {loss} at epoch {state.epoch} (the "
                                  "parameters in the data's units overflow float64)")

    def end(self, state) -> None:
        history = state.history
        if history.status == "converged":
            _load(state.model, state.last_state)  # the parameters the last recorded loss was computed at
            history.final_params = history.records[-1].params
        elif history.status != "diverged" and not all(p.isfinite().all() for p in state.model.parameters()):
            self._diverged(state, f"the parameters became inf or NaN in the step after epoch {state.epoch}")
        elif history.status != "diverged":
            history.final_params = state.objective.params(state.model)

    def _diverged(self, state, what: str) -> None:
        """Mark the run diverged and put back the last parameters whose loss was finite."""
        history = state.history
        last = history.records[-1] if history.records else None
        history.status = "diverged"
        history.message = f"{what}; training stopped and kept the parameters of " + (
            f"epoch {last.epoch}" if last else "initialisation")
        history.final_params = last.params if last else history.initial_params
        _load(state.model, state.last_state)
        state.stop = True


class StoppingRule(Callback):
    """Stops once the loss has not improved by ``tol`` (relative) for ``patience`` epochs in a row.

    Its progress (``state.best``, ``state.stale``) lives on the loop state, so a checkpoint keeps it.
    """

    def __init__(self, tol: float | None, patience: int):
        self.tol, self.patience = tol, patience

    def __repr__(self) -> str:
        return f"StoppingRule(tol={self.tol!r}, patience={self.patience})"

    def record(self, state) -> None:
        if self.tol is None:
            return
        loss = state.record.loss
        if loss < state.best - self.tol * abs(state.best) or state.best == math.inf:
            state.stale = 0
        else:
            state.stale += 1
        state.best = min(state.best, loss)
        if state.stale >= self.patience:
            state.history.status = "converged"
            state.history.message = (f"the loss improved by less than {self.tol:g} (relative) for {self.patience} "
                                     f"epochs in a row; stopped after epoch {state.record.epoch}")
            state.stop = True


class Schedule(Callback):
    """The learning-rate schedule: ``step`` (times ``gamma`` every ``step_size`` epochs) or ``cosine``."""

    def __init__(self, config):
        self.config = config

    def begin(self, state) -> None:
        import torch

        config, optimizer = self.config, state.optimizer
        if config.schedule == "step":
            state.scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.step_size,
                                                              gamma=config.gamma)
        elif config.schedule == "cosine":
            state.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)

    def after_steps(self, state) -> None:
        if state.scheduler is not None:
            state.scheduler.step()


class Checkpoint(Callback):
    """Saves the loop's whole state with a :class:`torchlinreg.checkpoint.Checkpointer` and resumes from it.

    When resuming, ``begin`` loads the state after the checkpoint's epoch (parameters,
    optimizer, schedule, stopping rule, generators, history) and training starts after it,
    so the run ends with the same bits as one never interrupted.
    """

    def __init__(self, checkpointer):
        self.checkpointer = checkpointer

    def __repr__(self) -> str:
        return f"Checkpoint({self.checkpointer!r})"

    def begin(self, state) -> None:
        state.start, first_loss = self.checkpointer.bind(state.model, state.optimizer, state.scheduler, state,
                                                         state.history, state.last_state,
                                                         generator=state.objective.generator)
        state.first_loss = state.first_loss if first_loss is None else first_loss

    def after_steps(self, state) -> None:
        self.checkpointer.epoch_end(state.epoch, state.last_state, state.first_loss)  # saves every few epochs


def _load(target, source) -> None:
    """Copy the parameters of ``source`` into ``target`` (each a module or a name -> tensor dict)."""
    import torch

    into = dict(target.named_parameters()) if hasattr(target, "named_parameters") else target
    values = dict(source.named_parameters()) if hasattr(source, "named_parameters") else source
    with torch.no_grad():
        for name, p in into.items():
            p.copy_(values[name])
