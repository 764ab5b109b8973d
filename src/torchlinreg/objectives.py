"""What the training loop minimises: the MSE of a linear model, three ways of holding the data.

Each objective has one interface, which :func:`torchlinreg.loop.train` uses:

- ``loss(model) -> float``: the loss on all rows at the model's parameters, in the model's units;
- ``record(model) -> (loss, params, val_loss)``: that loss and the parameters in the data's
  units (training on standardised data reports in the data's), and the held-out loss;
- ``params(model)``: the parameters in the data's units;
- ``steps(model, optimizer, epoch)``: one closure per optimizer step of the epoch; each does
  ``zero_grad``, the forward pass, the loss and ``backward``, and returns the loss;
- ``generator``: the mini-batch order a checkpoint saves (or None).

:class:`Rows` is the tutorial's: rows as tensors, full batch or shuffled mini-batches.
:class:`Gram` holds one small matrix instead of the rows (the R factor of ``[X, 1, y]``, see
:class:`torchlinreg.gram.GramObjective`): each epoch costs O(d²) whatever the number of rows.
:class:`Batches` takes mini-batches from elsewhere (files streamed, or a torchrun process's
share) and the loss on all rows from the R factor.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator

import numpy as np
import torch
from torch import nn

from .history import Params

_FLOAT32_MAX = float(np.finfo(np.float32).max)


def mse(y_pred: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """``nn.MSELoss``; with sample weights ``sum(w * r**2) / (sum(w) * n_targets)``."""
    if weight is None:
        return nn.functional.mse_loss(y_pred, y)
    return ((y_pred - y) ** 2 * weight[:, None]).sum() / (weight.sum() * y.shape[1])


class Units:
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
        """``linear.weight`` and ``linear.bias`` in the data's units; a model without bias reports zeros
        for it (its intercept is fixed at 0; a scale-only scaler keeps it 0 in the data's units)."""
        if self.scaler is None:
            return _with_bias({name: p.detach().tolist() for name, p in model.named_parameters()}, model)
        weight, bias = self.scaler.unscale_params(model.linear.weight.detach().cpu().double().numpy(),
                                                  _bias(model).cpu().double().numpy())
        return {"linear.weight": np.asarray(weight).tolist(), "linear.bias": np.asarray(bias).tolist()}


def _bias(model: nn.Module) -> torch.Tensor:
    """The model's bias, detached, or zeros when the layer has none (``nn.Linear(bias=False)``)."""
    linear = model.linear
    if linear.bias is not None:
        return linear.bias.detach()
    return torch.zeros(linear.weight.shape[0], dtype=linear.weight.dtype, device=linear.weight.device)


def _with_bias(params: Params, model: nn.Module) -> Params:
    if "linear.bias" not in params:
        params["linear.bias"] = [0.0] * model.linear.weight.shape[0]
    return params


class Rows:
    """The tutorial's objective: the MSE on rows held as tensors (on the model's device, in its dtype).

    Full batch (``batch_size`` None or at least the rows): one step an epoch, reusing the forward
    pass of the loss just recorded, as the tutorial does. Mini-batches: a seeded shuffle each epoch.
    """

    def __init__(self, X: torch.Tensor, y: torch.Tensor, *, sample_weight: torch.Tensor | None = None,
                 scaler=None, X_val: torch.Tensor | None = None, y_val: torch.Tensor | None = None,
                 batch_size: int | None = None, seed: int = 0):
        self.X, self.y, self.w, self.X_val, self.y_val = X, y, sample_weight, X_val, y_val
        self.batch_size = None if batch_size is None or batch_size >= X.shape[0] else batch_size
        self.generator = torch.Generator().manual_seed(seed)  # mini-batch shuffling
        self.units = Units(scaler)
        self._y_pred = self._loss = None

    def __repr__(self) -> str:
        return f"Rows(n_samples={self.X.shape[0]}, batch_size={self.batch_size})"

    def loss(self, model: nn.Module) -> float:
        with torch.set_grad_enabled(self.batch_size is None):  # the full-batch step reuses this forward pass
            self._y_pred = model(self.X)  # (n, n_targets)
            self._loss = mse(self._y_pred, self.y, self.w)
        return self._loss.item()

    def record(self, model: nn.Module) -> tuple[float, Params, float | None]:
        return self.units.loss(self._loss, self._y_pred, self.y, self.w), self.units.params(model), self._val_loss(model)

    def params(self, model: nn.Module) -> Params:
        return self.units.params(model)

    def steps(self, model: nn.Module, optimizer: torch.optim.Optimizer, epoch: int) -> Iterator[Callable]:
        if self.batch_size is None:
            yield self._closure(model, optimizer, None, reuse=self._loss)
            return
        for idx in torch.randperm(self.X.shape[0], generator=self.generator).to(self.X.device).split(self.batch_size):
            yield self._closure(model, optimizer, idx)

    def _closure(self, model, optimizer, idx, reuse: torch.Tensor | None = None) -> Callable[[], torch.Tensor]:
        X, y, w = (self.X, self.y, self.w) if idx is None else (self.X[idx], self.y[idx], _take(self.w, idx))
        pending = [reuse]

        def closure() -> torch.Tensor:
            optimizer.zero_grad()  # gradients accumulate: clear the last step's
            loss = pending.pop() if pending and pending[0] is not None else mse(model(X), y, w)  # forward, loss
            loss.backward()
            return loss

        return closure

    @torch.no_grad()
    def _val_loss(self, model: nn.Module) -> float | None:
        if self.X_val is None or self.X_val.shape[0] == 0:
            return None
        y_pred = model(self.X_val)
        return self.units.loss(mse(y_pred, self.y_val), y_pred, self.y_val)


def _take(w: torch.Tensor | None, idx: torch.Tensor) -> torch.Tensor | None:
    return None if w is None else w[idx]


class Gram:
    """Full-batch MSE from the R factor of the data (:class:`torchlinreg.gram.GramObjective`), in float64.

    ``objective`` (and ``val_objective``) already in the model's units (standardised with
    ``scaler`` when one is given); the gradient is computed in float64 and set as ``p.grad``
    in the model's dtype, so every optimizer steps as on the rows.
    """

    generator = None

    def __init__(self, model: nn.Module, objective, *, scaler=None, val_objective=None):
        self.objective, self.val_objective = objective, val_objective
        self.evaluate = _Evaluator(model, Units(scaler))
        self._sse: list[float] | None = None
        self._fresh = False
        self._loss = torch.zeros((), dtype=self.evaluate.dtype)
        self._step = (self._closure,)  # one optimizer step an epoch, the same closure each time

    def __repr__(self) -> str:
        return f"Gram({self.objective!r})"

    def loss(self, model: nn.Module) -> float:
        self._sse = self.evaluate(self.objective, gradient=True)  # per target; the gradient for the first step
        return self.evaluate.model_loss(self._sse, self.objective)  # in the model's units, as loss.item()

    def record(self, model: nn.Module) -> tuple[float, Params, float | None]:
        val = self.val_objective
        val_loss = None if val is None else self.evaluate.data_loss(self.evaluate(val), val)
        return self.evaluate.data_loss(self._sse, self.objective), self.evaluate.params(), val_loss

    def params(self, model: nn.Module) -> Params:
        return self.evaluate.params()

    def steps(self, model: nn.Module, optimizer: torch.optim.Optimizer, epoch: int) -> tuple[Callable]:
        self._fresh = True  # the first call reuses the gradient of the loss just recorded
        return self._step

    def _closure(self) -> torch.Tensor:
        """The gradient of the loss set as ``p.grad`` (as ``loss.backward()`` would leave it), and the loss."""
        evaluate = self.evaluate
        sse = self._sse if self._fresh else evaluate(self.objective, gradient=True)
        self._fresh = False
        evaluate.set_grad()
        return self._loss.fill_(evaluate.model_loss(sse, self.objective))  # one tensor, filled: L-BFGS reads it


class _Evaluator:
    """The float64 arithmetic of the Gram objective at the model's current parameters, in buffers made once.

    ``evaluate(obj)`` copies ``[Wᵀ; b]`` into a float64 buffer and returns the sums of squared
    residuals per target; with ``gradient=True`` it also keeps the gradient for ``set_grad``.
    """

    def __init__(self, model: nn.Module, units: Units):
        self.model, self.units = model, units
        self.weight, self.bias = model.linear.weight, model.linear.bias  # bias None: no bias (θ's last row 0)
        self.named = list(model.named_parameters())
        self.dtype = self.weight.dtype
        self.device = torch.device("cpu") if self.weight.device.type == "mps" else self.weight.device  # MPS: no float64
        self.d, self.m = self.weight.shape[1], self.weight.shape[0]
        self.theta = torch.empty(self.d + 1, self.m, dtype=torch.float64, device=self.device)  # [Wᵀ; b]
        self.grad_weight = torch.zeros_like(self.weight)
        self.grad_bias = None if self.bias is None else torch.zeros_like(self.bias)
        self.G = None  # the last gradient, (d + 1, m)
        self.y_scale2 = None if units.scaler is None else units.y_scale2.tolist()

    def __call__(self, obj, *, gradient: bool = False) -> list[float]:
        self.theta[:self.d].copy_(self.weight.detach().T)
        if self.bias is None:
            self.theta[self.d].zero_()
        else:
            self.theta[self.d].copy_(self.bias.detach())
        U = obj._residual(self.theta)  # (p, m)
        if gradient:
            self.G = obj._gradient(U)  # (d + 1, m)
        return U.square().sum(0).tolist()

    def set_grad(self) -> None:
        """Put the last gradient into ``p.grad`` (in the parameters' dtype), replacing what was there."""
        self.grad_weight.copy_(self.G[:self.d].T)
        if self.weight.grad is not self.grad_weight:
            self.weight.grad = self.grad_weight
        if self.bias is not None:
            self.grad_bias.copy_(self.G[self.d])
            if self.bias.grad is not self.grad_bias:
                self.bias.grad = self.grad_bias

    def model_loss(self, sse: list[float], obj) -> float:
        """The loss in the model's units, rounded as the model's dtype would hold it (float32: inf past its range)."""
        value = sum(sse) / (obj.sum_weights * self.m)
        if self.dtype == torch.float64 or math.isnan(value):
            return value
        return float(np.float32(value)) if abs(value) <= _FLOAT32_MAX else math.copysign(math.inf, value)

    def data_loss(self, sse: list[float], obj) -> float:
        """The loss in the data's units (as :meth:`Units.loss`)."""
        if self.y_scale2 is None:
            return self.model_loss(sse, obj)
        return sum(s * c for s, c in zip(sse, self.y_scale2)) / (obj.sum_weights * self.m)

    def params(self) -> Params:
        """:meth:`Units.params`, without looking the parameters up again when there is no scaler."""
        if self.units.scaler is None:
            return _with_bias({name: p.detach().tolist() for name, p in self.named}, self.model)
        return self.units.params(self.model)


Step = tuple[torch.Tensor, torch.Tensor, "torch.Tensor | None", int]  # X, y, w, rows of the step in all processes


class Batches:
    """Mini-batches given by ``batches(epoch)`` (from 0), the loss on all rows from the R factor.

    ``objective``: the :class:`~torchlinreg.gram.GramObjective` of every process's rows in the
    data's units; ``batches`` yields this process's part of each step, ``(X, y, w, step_rows)``
    in the model's units (standardised with ``scaler``). ``net`` is the model, or its
    ``DistributedDataParallel`` wrapper; ``batch_loss(y_pred, y, w, step_rows)`` is the loss of
    this process's part of a step (default :func:`mse`; under DDP one scaled so that DDP's
    averaged gradient is the whole step's, see :func:`torchlinreg.distributed.ddp_mse`).
    """

    generator = None  # the batches depend on the epoch alone: a resumed run replays them

    def __init__(self, objective, batches: Callable[[int], Iterable[Step]], *, scaler=None, net=None,
                 batch_loss: Callable | None = None, val_objective=None):
        self.objective, self.batches, self.val_objective = objective, batches, val_objective
        self.in_model_units = objective.standardized(scaler) if scaler is not None else objective
        self.scaler, self.units, self.net = scaler, Units(scaler), net
        self.batch_loss = batch_loss if batch_loss is not None else (lambda y_pred, y, w, rows: mse(y_pred, y, w))
        self._loss = math.nan

    def __repr__(self) -> str:
        return f"Batches({self.objective!r})"

    def loss(self, model: nn.Module) -> float:
        self._loss = float(self.in_model_units.loss(model.linear.weight.detach(), _bias(model)))
        return self._loss

    def record(self, model: nn.Module) -> tuple[float, Params, float | None]:
        params = self.units.params(model)
        weight = np.asarray(params["linear.weight"], dtype=np.float64)  # (m, d): not a list, which torch
        bias = np.asarray(params["linear.bias"], dtype=np.float64)  # would read as float32
        loss = self._loss if self.scaler is None else float(self.objective.loss(weight, bias))
        val_loss = None if self.val_objective is None else float(self.val_objective.loss(weight, bias))
        return loss, params, val_loss

    def params(self, model: nn.Module) -> Params:
        return self.units.params(model)

    def steps(self, model: nn.Module, optimizer: torch.optim.Optimizer, epoch: int) -> Iterator[Callable]:
        device, dtype = model.linear.weight.device, model.linear.weight.dtype
        net = model if self.net is None else self.net
        for X, y, w, step_rows in self.batches(epoch - 1):
            X, y, w = X.to(device, dtype), y.to(device, dtype), None if w is None else w.to(device, dtype)
            yield self._closure(net, optimizer, X, y, w, step_rows)

    def _closure(self, net, optimizer, X, y, w, step_rows: int) -> Callable[[], torch.Tensor]:
        def closure() -> torch.Tensor:
            optimizer.zero_grad()  # gradients accumulate: clear the last step's
            loss = self.batch_loss(net(X), y, w, step_rows)  # forward pass (k may be 0 in a process), loss
            loss.backward()
            return loss

        return closure
