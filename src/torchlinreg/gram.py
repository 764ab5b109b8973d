"""Full-batch gradient descent on the MSE from one pass over the data.

For least squares, the loss and its gradient at any parameters are functions of one
small matrix: the R factor of ``A = [X, 1, y]`` (``RᵀR = AᵀA``, float64, from
:class:`torchlinreg.solve.QRAccumulator`, chunk by chunk and merged across processes).
With ``θ = [Wᵀ; b]`` of shape (d + 1, m) and ``U = R [θ; -I]`` (so ``‖U_t‖² = ‖A θ_t - y_t‖²``)::

    loss     = ‖U‖² / (Σw · m)
    gradient = 2 / (Σw · m) · R[:, :d+1]ᵀ U        (= 2 / (Σw · m) · (AᵀA θ - Aᵀy))

``Σw`` is the number of rows without sample weights. Each epoch then costs two products
of a (d + 1 + m) square matrix with an (d + 1 + m, m) one, whatever the number of rows.
Forming the residual through R (not ``θᵀAᵀAθ - 2θᵀAᵀy + yᵀy``) avoids the cancellation of
that expansion when the fit is good.

:func:`train_gram` runs the one training loop (:func:`torchlinreg.loop.train`) on such an
objective (:class:`torchlinreg.objectives.Gram`): the same records, statuses, optimizers (the
analytic gradient goes into ``p.grad`` and ``optimizer.step()`` does the rest), schedules and
callbacks as on the rows; :func:`select_engine` decides which objective a fit trains on.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

from . import loop
from .callbacks import Callback
from .config import ENGINES, TrainConfig
from .errors import ConfigError
from .history import History
from .model import LinearModel
from .objectives import Gram
from .scaling import Standardizer
from .solve import RANK_RTOL, QRAccumulator, _triangularize



class GramObjective:
    """The MSE of a linear model on data seen once, as a function of the R factor of ``[X, 1, y]``.

    Attributes
    ----------
    R : ndarray of shape (d + 1 + m, d + 1 + m), float64, upper triangular
        ``RᵀR = AᵀA`` for ``A = [X, 1, y]`` (rows scaled by ``√w`` with sample weights).
    n_samples : int
        Rows of the data.
    n_features, n_targets : int
        ``d`` and ``m``.
    sum_weights : float
        ``Σ w``; ``n_samples`` without sample weights.
    weighted : bool
        Whether the rows came with sample weights (the loss is then the weighted MSE).
    scaler : Standardizer or None
        The scaler this objective was standardised with (:meth:`standardized`); None for
        the data's own units.
    fit_intercept : bool
        False for a model without bias: the ones column of R is zero (``A = [X, 0, y]``), so the
        bias has no effect on the loss and its gradient is 0; the model has no bias parameter.
    """

    def __init__(self, R, *, n_samples: int, sum_weights: float, n_features: int, n_targets: int,
                 weighted: bool = False, scaler: Standardizer | None = None,
                 shifted: tuple[np.ndarray, np.ndarray, np.ndarray | None] | None = None,
                 fit_intercept: bool = True):
        p = n_features + 1 + n_targets
        R = np.asarray(R, dtype=np.float64)
        if R.ndim != 2 or R.shape[1] != p or R.shape[0] > p:
            raise ValueError(f"R must have shape (k <= {p}, {p}) for {n_features} features and "
                             f"{n_targets} targets, got {R.shape}")
        if not sum_weights > 0:
            raise ValueError(f"the sum of the sample weights is {sum_weights!r}; at least one row must count")
        self.R = np.zeros((p, p))
        self.R[:len(R)] = R  # zero rows change nothing while fewer rows than columns were seen
        self.n_samples, self.sum_weights = int(n_samples), float(sum_weights)
        self.n_features, self.n_targets = int(n_features), int(n_targets)
        self.weighted, self.scaler = bool(weighted), scaler
        self.fit_intercept = bool(fit_intercept)
        if not self.fit_intercept and np.any(self.R[:, n_features]):
            raise ValueError("without intercept the column of ones in R must be zero")
        # (R_shifted, reference, varies): R of [X - ref_x, 1, y - ref_y], which keeps the columns' spread however
        # far their values lie from zero, and which columns hold another value than the reference (None: not
        # known); the standardisation is taken from these (QRAccumulator.R_shifted)
        self._shifted = shifted
        self._on: dict[torch.device, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    @classmethod
    def from_accumulator(cls, acc: QRAccumulator) -> GramObjective:
        """The objective of the rows ``acc`` has seen (filled, possibly merged from several)."""
        if not isinstance(acc, QRAccumulator):
            raise TypeError(f"expected a QRAccumulator, got {type(acc).__name__}")
        if acc.n_samples == 0:
            raise ValueError("the accumulator has seen no rows: call acc.update(X, y) first")
        if acc.sum_weights == 0:
            raise ValueError(f"all {acc.n_samples} sample weights are 0, so no row counts; "
                             f"give at least one row a positive weight")
        if not acc.fit_intercept:  # R of [X, y]: a zero column (and row) where the ones would be
            return cls(_zero_ones_column(acc.R, acc.n_features), n_samples=acc.n_samples,
                       sum_weights=acc.sum_weights, n_features=acc.n_features, n_targets=acc.n_targets,
                       weighted=acc.weighted, fit_intercept=False)
        shifted = None if acc.reference is None else (
            acc.R_shifted.copy(), acc.reference.copy(), None if acc.varies is None else acc.varies.copy())
        return cls(acc.R.copy(), n_samples=acc.n_samples, sum_weights=acc.sum_weights,
                   n_features=acc.n_features, n_targets=acc.n_targets, weighted=acc.weighted, shifted=shifted)

    def __repr__(self) -> str:
        extra = (", weighted" if self.weighted else "") + (", standardised" if self.scaler is not None else "") \
            + ("" if self.fit_intercept else ", no intercept")
        return (f"GramObjective(n_samples={self.n_samples}, n_features={self.n_features}, "
                f"n_targets={self.n_targets}{extra})")

    # --- evaluation ------------------------------------------------------------------------

    def _factors(self, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``R[:, :q]``, ``R[:, q:]`` and ``2/(Σw·m) · R[:, :q]ᵀ`` as float64 tensors on ``device``, made once."""
        device = torch.device(device)
        if device not in self._on:
            q = self.n_features + 1
            R = torch.as_tensor(self.R, dtype=torch.float64, device=device)
            R_theta, R_y = R[:, :q].contiguous(), R[:, q:].contiguous()
            self._on[device] = R_theta, R_y, (R_theta.T * (2.0 / (self.sum_weights * self.n_targets))).contiguous()
        return self._on[device]

    def _residual(self, theta: torch.Tensor) -> torch.Tensor:
        """``U = R [θ; -I]`` (p, m) for ``theta = [Wᵀ; b]`` (d + 1, m): ``‖U_t‖ = ‖A θ_t - y_t‖`` (√w-weighted)."""
        R_theta, R_y, _ = self._factors(theta.device)
        return torch.addmm(R_y, R_theta, theta, beta=-1)

    def _gradient(self, U: torch.Tensor) -> torch.Tensor:
        """The gradient of the loss with respect to ``θ`` (d + 1, m), given ``U`` at ``θ``."""
        return self._factors(U.device)[2] @ U

    def _sse(self, theta: torch.Tensor, grad: bool = False):
        """Sum of (weighted) squared residuals per target (m,) at ``theta``, and the gradient (d + 1, m)."""
        U = self._residual(theta)
        return U.square().sum(0), (self._gradient(U) if grad else None)

    def _theta(self, weight, bias) -> torch.Tensor:
        d, m = self.n_features, self.n_targets
        weight = torch.as_tensor(weight).detach().to(torch.float64)
        bias = torch.as_tensor(bias).detach().to(weight.device, torch.float64)
        if weight.shape not in ((m, d),) + (((d,),) if m == 1 else ()):
            raise ValueError(f"weight must have shape ({m}, {d}) as nn.Linear.weight, got {tuple(weight.shape)}")
        if bias.numel() != m:
            raise ValueError(f"bias must have shape ({m},), got {tuple(bias.shape)}")
        device = torch.device("cpu") if weight.device.type == "mps" else weight.device  # MPS has no float64
        return torch.cat([weight.reshape(m, d).T, bias.reshape(1, m)]).to(device)  # (q, m)

    def loss(self, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """The MSE at ``weight`` (m, d) and ``bias`` (m,), as ``nn.MSELoss`` gives on the data.

        With sample weights, ``Σ w r² / (Σ w · m)`` as ``training.mse``. A float64 scalar tensor.
        """
        sse, _ = self._sse(self._theta(weight, bias))
        return sse.sum() / (self.sum_weights * self.n_targets)

    def loss_and_grad(self, weight, bias) -> tuple[float, torch.Tensor, torch.Tensor]:
        """The MSE and its gradient with respect to ``weight`` (m, d) and ``bias`` (m,), in float64."""
        sse, G = self._sse(self._theta(weight, bias), grad=True)
        d = self.n_features
        return float(sse.sum()) / (self.sum_weights * self.n_targets), G[:d].T.contiguous(), G[d].clone()

    # --- standardisation, from R alone ---------------------------------------------------------

    def _ones_first(self) -> tuple[np.ndarray, np.ndarray]:
        """R factor of ``[1, X - ref, y - ref]`` with a positive diagonal (row 0 holds the means less the
        reference, the rest is centred), and the reference (zeros without a shifted R)."""
        d, p = self.n_features, self.R.shape[1]
        R, reference = self._shifted[:2] if self._shifted is not None else (self.R, np.zeros(p - 1))
        full = np.zeros((p, p))
        full[:len(R)] = R
        return _triangularize(full[:, [d, *range(d), *range(d + 1, p)]]), reference

    def standardizer(self, *, scale_y: bool = True) -> Standardizer:
        """Column means and population standard deviations of ``X`` and ``y``, from R alone.

        Equal to ``Standardizer.fit(X, y)`` on the data (to rounding); a column whose centred
        norm is at most ``RANK_RTOL`` times its raw norm counts as constant (scale 1). With
        sample weights the statistics are weighted: ``Σ w x / Σ w`` and
        ``√(Σ w (x - x̄)² / Σ w)``, as ``torchlinreg.LinearRegression(standardize=True)`` uses.
        """
        d = self.n_features
        if not self.fit_intercept:  # scale only (Standardizer.root_mean_squares): the column norms of R
            return self._root_mean_squares(scale_y)
        Rp, reference = self._ones_first()
        mean = reference + Rp[0, 1:] / Rp[0, 0]  # Σ w (x - ref) / √Σw over √Σw, plus the reference
        centred = np.linalg.norm(Rp[1:, 1:], axis=0)  # ‖√w (x - x̄)‖ per column
        scale = centred / np.sqrt(self.sum_weights)
        varies = None if self._shifted is None else self._shifted[2]
        if varies is not None:  # known exactly: a column that holds one value has exactly zero spread here
            constant = ~varies | (scale == 0)
        else:  # from the raw R: what is left of such a column is rounding
            raw = np.linalg.norm(np.delete(self.R, d, axis=1), axis=0)  # ‖√w x‖ per column
            constant = (centred <= RANK_RTOL * raw) | (scale == 0)
        scale[constant] = 1.0
        if not scale_y:
            mean[d:], scale[d:] = 0.0, 1.0
        return Standardizer(mean[:d].copy(), scale[:d].copy(), mean[d:].copy(), scale[d:].copy())

    def _root_mean_squares(self, scale_y: bool) -> Standardizer:
        """Means 0 and the columns' root mean squares ``‖√w x‖ / √Σw`` (1 for a zero column), as
        ``Standardizer.fit(X, y, center=False)``: the column norms of R are those of ``√w [X, y]``."""
        d = self.n_features
        norms = np.linalg.norm(np.delete(self.R, d, axis=1), axis=0)
        scale = norms / np.sqrt(self.sum_weights)
        scale[(scale == 0) | ~np.isfinite(scale)] = 1.0
        if not scale_y:
            scale[d:] = 1.0
        zeros = np.zeros(len(scale))
        return Standardizer(zeros[:d], scale[:d].copy(), zeros[d:].copy(), scale[d:].copy())

    def standardized(self, scaler: Standardizer) -> GramObjective:
        """The objective of ``scaler.transform_X(X)`` and ``scaler.transform_y(y)``, without a pass over the data.

        ``scaler`` may come from elsewhere (the training rows' scaler for a validation objective).
        """
        if self.scaler is not None:
            raise ValueError("this objective is already standardised; standardise the objective of the raw data")
        d, m = self.n_features, self.n_targets
        x_mean, x_scale = np.asarray(scaler.x_mean, np.float64), np.asarray(scaler.x_scale, np.float64)
        y_mean, y_scale = np.asarray(scaler.y_mean, np.float64), np.asarray(scaler.y_scale, np.float64)
        if x_mean.shape != (d,) or x_scale.shape != (d,) or y_mean.shape != (m,) or y_scale.shape != (m,):
            raise ValueError(f"the scaler is for {x_mean.shape[0]} features and {y_mean.shape[0]} targets, "
                             f"the objective has {d} and {m}")
        shift, scale = np.concatenate([x_mean, y_mean]), np.concatenate([x_scale, y_scale])
        if not self.fit_intercept:  # no shift can be absorbed: each column divided by its scale keeps R triangular
            if np.any(shift):
                raise ValueError("a model without intercept takes a scale-only scaler (means 0): "
                                 "Standardizer.fit(X, y, center=False)")
            R = self.R / np.insert(scale, d, 1.0)
            return GramObjective(R, n_samples=self.n_samples, sum_weights=self.sum_weights, n_features=d,
                                 n_targets=m, weighted=self.weighted, scaler=scaler, fit_intercept=False)
        # [1, X, y] = Q Rp; subtracting shift * 1 changes only row 0 of the columns (exactly 0
        # when shift is the mean, so no cancellation), then each column is divided by its scale.
        Rp, reference = self._ones_first()
        S = Rp.copy()
        S[0, 1:] = Rp[0, 0] * (Rp[0, 1:] / Rp[0, 0] - (shift - reference))  # the shift is near the reference
        S[:, 1:] /= scale
        R = _triangularize(S[:, [*range(1, d + 1), 0, *range(d + 1, d + 1 + m)]])  # back to [X, 1, y]
        return GramObjective(R, n_samples=self.n_samples, sum_weights=self.sum_weights, n_features=d,
                             n_targets=m, weighted=self.weighted, scaler=scaler)


def _zero_ones_column(R: np.ndarray, d: int) -> np.ndarray:
    """R of ``[X, 0, y]`` from R of ``[X, y]``: a zero column (and zero row) inserted at ``d``; still triangular."""
    R = np.asarray(R, dtype=np.float64)
    k, p = R.shape
    out = np.zeros((p + 1, p + 1))
    cols = [*range(d), *range(d + 1, p + 1)]
    rows = [i if i < d else i + 1 for i in range(k)]
    out[np.ix_(rows, cols)] = R
    return out


def _resolve(objective: GramObjective, scaler, name: str) -> GramObjective:
    """The objective the model trains on: standardised with ``scaler`` when one is given."""
    if not isinstance(objective, GramObjective):
        raise TypeError(f"{name} must be a GramObjective, got {type(objective).__name__}")
    if scaler is None or objective.scaler is scaler:
        return objective
    if objective.scaler is None:
        return objective.standardized(scaler)
    raise ValueError(f"{name} was standardised with another scaler than the one given; pass the objective "
                     f"of the raw data (or objective.standardized(scaler) with this scaler)")


def train_gram(
    model: LinearModel,
    objective: GramObjective,
    config: TrainConfig = TrainConfig(),
    callbacks: Iterable[Callback] = (),
    *,
    scaler: Standardizer | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    val_objective: GramObjective | None = None,
    checkpoint=None,
) -> History:
    """``training.train`` for full-batch MSE, with the data replaced by its :class:`GramObjective`.

    Same records (the loss at the parameters each epoch starts from, parameters in the
    data's units, the learning rate, the validation loss), statuses and messages
    (converged by ``tol``/``patience``, diverged on a non-finite loss or growth past
    ``GROWTH_LIMIT``, keeping the last finite parameters), optimizers, schedules and
    callbacks. The gradient is computed in float64 and set as ``p.grad`` in the model's
    dtype; ``optimizer.step()`` does the rest, so every optimizer behaves as in the data loop.

    ``objective`` and ``val_objective``: of the data in its own units; with a ``scaler``
    the model trains on ``objective.standardized(scaler)`` (an objective already
    standardised with that scaler is used as it is) and everything is recorded in the
    data's units. ``val_objective`` is weighted if it was built with weights (``train``'s
    validation loss is unweighted). Mini-batches (``batch_size`` below the number of rows)
    are a ``ConfigError``: they need the data loop (see :func:`select_engine`).
    ``checkpoint``: as in ``training.train``.
    """
    objective = _resolve(objective, scaler, "objective")
    select_engine(config, requested="gram", n_samples=objective.n_samples)  # refuses mini-batches, other losses
    val_objective = None if val_objective is None else _resolve(val_objective, scaler, "val_objective")
    if getattr(model, "fit_intercept", True) != objective.fit_intercept:
        raise ValueError(f"the model's fit_intercept is {model.fit_intercept} but the objective's is "
                         f"{objective.fit_intercept}; build both with the same fit_intercept")
    if (model.in_features, model.out_features) != (objective.n_features, objective.n_targets):
        raise ValueError(f"the model maps {model.in_features} features to {model.out_features} targets, the "
                         f"objective has {objective.n_features} and {objective.n_targets}")
    model.to(getattr(torch, config.dtype))
    gram = Gram(model, objective, scaler=scaler, val_objective=val_objective)
    return loop.train(model, gram, config, callbacks, optimizer=optimizer, checkpoint=checkpoint)


def select_engine(config: TrainConfig, *, requested: str = "auto", tutorial: bool = False,
                  n_samples: int | None = None) -> tuple[str, str]:
    """Which training loop runs: ``("gram" | "data", reason)``.

    ``auto`` chooses the data loop (``training.train``) for the tutorial run (its table is
    the tutorial's loop), for mini-batches (``batch_size`` below ``n_samples``; any
    ``batch_size`` when ``n_samples`` is not given) and for a loss other than the MSE; and
    ``train_gram`` for full-batch MSE on any other data. ``requested="data"`` or ``"gram"``
    forces one; ``"gram"`` with mini-batches or another loss is a ``ConfigError``.
    """
    if requested not in ENGINES:
        raise ConfigError(f"unknown engine {requested!r}; choose one of {', '.join(ENGINES)}")
    loss = getattr(config, "loss", "mse")  # TrainConfig has no loss field yet: the MSE
    batch = config.batch_size
    mini_batch = batch is not None and (n_samples is None or batch < n_samples)
    if requested == "data":
        return "data", "asked for (--engine data): every epoch passes over the data"
    if requested == "gram":
        if mini_batch:
            raise ConfigError(f"{{engine='gram'}} computes full-batch gradients from one pass over the data, but "
                              f"mini-batches of {batch} rows need the rows at every step; drop {{batch_size}} or "
                              "use {engine='data'}")
        if loss != "mse":
            raise ConfigError(f"{{engine='gram'}} works for the mean squared error only, not the {loss} loss; "
                              "use {engine='data'}")
        return "gram", "asked for (--engine gram): one pass over the data, then O(d²) per epoch"
    if tutorial:
        return "data", "the tutorial run keeps the tutorial's loop"
    if mini_batch:
        return "data", f"mini-batches of {batch} rows need the rows at every step"
    if loss != "mse":
        return "data", f"the {loss} loss is not a function of the R factor of [X, 1, y]"
    return "gram", "full-batch MSE: one pass over the data, then each epoch costs O(d²) whatever the number of rows"
