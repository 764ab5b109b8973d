"""One fit from start to end.

Data in -> (split, scaling) -> exact optimum and diagnostics -> training with the report
-> comparison with the optimum and metrics -> history, plots and model files on disk.
The command line calls :func:`run_fit`; so can any script.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass, field
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

import numpy as np
import torch

from . import __version__, defaults
from .config import TrainConfig
from .data import Dataset
from .diagnostics import diagnose, max_stable_lr
from .history import History
from .metrics import regression_metrics, train_validation_split
from .model import LinearModel, build_model
from .errors import ConfigError, ConvergenceWarning, OutputError
from .outputs import atomic_write_text, check_writable_path, prepare_output_dir, remove_stale
from .callbacks import Callback
from .progress import ProgressBar
from .report import PrintReport, format_comparison, format_metrics
from .tensorboard import TensorBoardLogger
from .scaling import Standardizer
from .gram import GramObjective, select_engine, train_gram
from .solve import LstsqSolution, QRAccumulator, needs_refinement, refine
from .training import train

HISTORY_JSON, HISTORY_CSV, SUMMARY_JSON = "history.json", "history.csv", "summary.json"
# Every file a run may write into its output folder (plots.PLOT_FILES, the GIF and the report too).
OUTPUT_FILES = (HISTORY_JSON, HISTORY_CSV, SUMMARY_JSON, "data.png", "initial_model.png", "loss.png",
                "current_model.png", "residuals.png", "predicted_vs_actual.png", "fit.gif", "report.html")


@dataclass
class FitResult:
    """Everything a fit produced. Parameters are in the data's units (also with ``standardize``)."""

    data: Dataset
    config: TrainConfig
    model: LinearModel  # as trained: on standardised data when a scaler was used
    history: History
    weight: np.ndarray  # (n_targets, n_features), float64, the data's units
    bias: np.ndarray  # (n_targets,)
    solution: LstsqSolution  # exact optimum on the training rows
    gap: dict  # relative_excess_loss, distance, relative_distance
    metrics: dict  # split -> {mse, rmse, mae, r2}
    diagnostics: object | None = None  # GDDiagnostics for full-batch SGD, None otherwise
    scaler: Standardizer | None = None
    statistics: list | None = None  # RegressionStatistics per target, when asked for
    files: dict[str, Path] = field(default_factory=dict)
    engine: str = "data"  # the training loop that ran: "data" or "gram"

    def summary(self) -> dict:
        """The run as plain JSON-able data."""
        return {
            "torchlinreg_version": __version__,
            "n_samples": self.data.n_samples,
            "n_train": int(self.solution.n_samples),
            "n_validation": self.data.n_samples - int(self.solution.n_samples),
            "features": list(self.data.feature_names),
            "targets": list(self.data.target_names),
            "settings": self.config.to_dict(),
            "standardize": self.scaler.to_dict() if self.scaler is not None else None,
            "engine": self.engine,
            "status": self.history.status,
            "message": self.history.message,
            "epochs_run": len(self.history),
            "weight": self.weight.tolist(),
            "bias": self.bias.tolist(),
            "optimum": self.solution.to_dict(),
            "gap": self.gap,
            "metrics": self.metrics,
            "diagnostics": self.diagnostics.to_dict() if self.diagnostics is not None else None,
            "statistics": [s.to_dict() for s in self.statistics] if self.statistics is not None else None,
        }

    def __repr__(self) -> str:
        return f"FitResult({self.data!r}, {self.history!r}, files={sorted(self.files)})"


def run_fit(
    data: Dataset,
    config: TrainConfig = TrainConfig(),
    out_dir: str | os.PathLike | None = None,
    *,
    standardize: bool = False,
    validation_fraction: float = 0.0,
    split_seed: int = defaults.DATA_SEED,
    save: str | os.PathLike | None = None,
    force: bool = False,
    plots: bool = True,
    stream: TextIO | None = None,
    log_every: int = 1,
    quiet: bool = False,
    progress: bool | None = None,
    tensorboard: str | os.PathLike | None = None,
    callbacks: Sequence[Callback] = (),
    animation: bool = False,
    statistics: bool = False,
    conf_level: float = 0.95,
    cov_type: str = "nonrobust",
    report: bool = False,
    engine: str = "auto",
    tutorial: bool = False,
    dist=None,
) -> FitResult:
    """Train a linear model on ``data`` while printing the tutorial's report, and judge it.

    Before epoch 1 the report says what the data implies for gradient descent (stable
    learning rates, epochs needed); after training it sets the model beside the exact
    least-squares optimum and gives the metrics. With ``out_dir`` the history (JSON and
    CSV), a summary and, with ``plots``, the plots are written there; with ``save`` the
    model files. Folders and existing files are checked before training starts: an
    ``out_dir`` of an earlier run is replaced whole (files this run does not write are
    removed), any other folder holding files of the same names needs ``force``, and so do
    existing model files.

    Printing: ``log_every`` thins the epoch lines (1: every epoch, as the tutorial);
    ``quiet`` drops them and the progress bar. ``progress``: True/False forces the bar on
    or off; None shows it when stderr is a terminal and the run takes a moment.
    ``tensorboard``: a folder for TensorBoard logs. ``callbacks`` run as well.

    ``statistics`` prints the inference table of the exact solution (standard errors,
    tests, intervals at ``conf_level``, ``cov_type`` covariance); ``report`` writes
    ``report.html`` (with the statistics); ``animation`` writes ``fit.gif``. Rows with
    ``data.sample_weight`` are fitted by weighted least squares throughout.

    ``engine``: "auto", "data" (every epoch passes over the rows: the tutorial's loop) or
    "gram" (one pass builds the R factor of [X, 1, y]; each epoch then costs O(d²)); see
    :func:`torchlinreg.gram.select_engine`. ``tutorial`` marks the tutorial's own run,
    which keeps the tutorial's loop.

    ``dist`` (a :class:`torchlinreg.distributed.Dist` of a torchrun job): each rank adds its
    shard of the training rows to the R factor, one collective merges them, and every rank
    then trains on the merged R (the gram engine), so all ranks hold the same model; pass
    ``out_dir``/``save`` on rank 0 only.
    """
    from .persistence import SavedModel, model_paths, save_model

    if config.device is not None:
        from .devices import resolve_device

        resolve_device(config.device, config.dtype)  # an unavailable device is refused before anything is written
    if report and out_dir is None:
        raise ConfigError("report.html needs an output folder; pass out_dir")
    if statistics or report:
        from .statistics import check_settings

        check_settings(conf_level, cov_type)  # refuse a bad level before training, not after
    train_rows, val_rows = _split(data, validation_fraction, split_seed)
    chosen, why = select_engine(config, requested=engine, tutorial=tutorial, n_samples=len(train_rows))
    if dist is not None and dist.is_distributed and chosen != "gram":
        raise ConfigError(f"across {dist.world_size} processes fit trains on the gram engine (full batch, from "
                          f"the merged R factor), but {why}; drop --batch-size / --engine data, or run one process")
    for path in model_paths(save) if save is not None else ():
        check_writable_path(path)
        if path.exists() and not force:
            raise OutputError(f"{str(path)!r} exists; pass --force to replace it or choose another --save path")
    out = prepare_output_dir(out_dir, owned=OUTPUT_FILES, force=force) if out_dir is not None else None
    X, y = data.X[train_rows].double(), data.y[train_rows].double()
    X_val, y_val = (data.X[val_rows].double(), data.y[val_rows].double()) if val_rows is not None else (None, None)
    w = data.sample_weight[train_rows].double() if data.sample_weight is not None else None

    if dist is not None and dist.is_distributed:
        from .distributed import merge_accumulators, shard

        mine = shard(len(X), dist)  # this rank's rows; one collective merges the ranks' R factors
        acc = merge_accumulators(QRAccumulator(data.n_features, data.n_targets).update(
            X[mine], y[mine], sample_weight=None if w is None else w[mine]), dist)
        why += f"; R merged from {dist.world_size} processes"
        solution = acc.solve(feature_names=data.feature_names, target_names=data.target_names)
    else:
        acc = QRAccumulator(data.n_features, data.n_targets).update(X, y, sample_weight=w)  # one pass: R of [X, 1, y]
        solution = acc.solve(feature_names=data.feature_names, target_names=data.target_names)
        if needs_refinement(solution):  # ill-conditioned: passes in double-double restore the digits
            solution = refine(solution, [(X, y) if w is None else (X, y, w)])
    scaler = Standardizer.fit(X, y) if standardize else None
    Xt, yt = (scaler.transform_X(X), scaler.transform_y(y)) if scaler else (X, y)
    Xv, yv = (scaler.transform_X(X_val), scaler.transform_y(y_val)) if scaler and X_val is not None else (X_val, y_val)

    model = build_model(data.n_features, data.n_targets, seed=config.seed)
    diagnostics = None
    full_batch = config.batch_size is None or config.batch_size >= len(train_rows)
    if config.optimizer == "sgd" and full_batch and w is None:  # the diagnostics assume unweighted full batches
        diagnostics = diagnose(Xt, yt, lr=config.learning_rate, momentum=config.momentum, nesterov=config.nesterov,
                               weight_decay=config.weight_decay, epochs=config.epochs, standardized=standardize,
                               initial_weight=model.linear.weight.detach().double().numpy(),
                               initial_bias=model.linear.bias.detach().double().numpy())
    notes = [f"note: {m}" for m in diagnostics.messages()] if diagnostics is not None else []
    notes.append(f"engine: {chosen} ({why})")
    bar = ProgressBar(force=False if quiet else progress)
    printer = PrintReport(stream, notes, every=0 if quiet else log_every, write=bar.write)
    extra = [TensorBoardLogger(tensorboard)] if tensorboard is not None else []
    every = [bar, printer, *extra, *callbacks]
    if chosen == "gram":
        objective = GramObjective.from_accumulator(acc)
        val_objective = (GramObjective.from_accumulator(QRAccumulator(data.n_features, data.n_targets).update(X_val, y_val))
                         if X_val is not None else None)
        history = train_gram(model, objective, config, every, scaler=scaler, val_objective=val_objective)
    else:
        history = train(model, Xt, yt, config, every, X_val=Xv, y_val=yv, scaler=scaler, sample_weight=w)
    if history.diverged:
        history.message += ". " + divergence_advice(Xt, yt.shape[1], config)

    weight = np.asarray(history.final_params["linear.weight"], dtype=np.float64)
    bias = np.asarray(history.final_params["linear.bias"], dtype=np.float64)
    trained_loss = _mse(X, y, weight, bias, w)
    gap = _gap(weight, bias, trained_loss, solution, y)
    _warn_if_unfinished(history, config, gap)
    metrics = {"train": _metrics(X, y, weight, bias)}
    if X_val is not None:
        metrics["validation"] = _metrics(X_val, y_val, weight, bias)
    stats = None
    if statistics or report:
        from .statistics import regression_statistics

        stats = regression_statistics(X.numpy(), y.numpy(), sample_weight=None if w is None else w.numpy(),
                                      conf_level=conf_level, cov_type=cov_type,
                                      feature_names=data.feature_names, target_names=data.target_names)
    result = FitResult(data, config, model, history, weight, bias, solution, gap, metrics, diagnostics, scaler,
                       stats, engine=chosen)

    _print(stream, "")
    _print(stream, format_comparison(data.feature_names, data.target_names,
                                     {"weight": weight, "bias": bias, "loss": trained_loss},
                                     {"weight": solution.coef, "bias": solution.intercept, "loss": solution.loss}, gap))
    _print(stream, format_metrics(metrics))
    if statistics:
        for table in stats:
            _print(stream, "")
            _print(stream, table.summary())

    if out is not None:
        result.files["history"] = atomic_write_text(out / HISTORY_JSON, history.to_json() + "\n")
        result.files["history_csv"] = atomic_write_text(out / HISTORY_CSV, history.to_csv())
        result.files["summary"] = atomic_write_text(out / SUMMARY_JSON, json.dumps(result.summary(), indent=1) + "\n")
        if plots:
            from .plots import save_plots  # matplotlib only when plots are asked for

            result.files.update(save_plots(data, history, out, optimum_loss=solution.loss, animation=animation))
        if report:
            from .html_report import write_report

            result.files["report"] = write_report(out, result, statistics=stats)
        remove_stale(out, OUTPUT_FILES, result.files.values())
    if save is not None:
        saved = SavedModel(weight, bias, data.feature_names, data.target_names,
                           {"settings": config.to_dict(), "standardize": scaler.to_dict() if scaler else None,
                            "metrics": metrics, "status": history.status, "epochs_run": len(history),
                            "optimum_loss": solution.loss})
        result.files["model"], result.files["model_json"] = save_model(save, saved, force=force)
    return result


def _warn_if_unfinished(history: History, config: TrainConfig, gap: dict) -> None:
    """A ConvergenceWarning when the stopping rule was asked for and did not mean what it says."""
    if config.tol is None:
        return
    if history.status == "completed":
        warnings.warn(f"the stopping rule (tol {config.tol:g}, patience {config.patience}) was not met in "
                      f"{config.epochs} epochs; the loss was still improving: raise --epochs", ConvergenceWarning,
                      stacklevel=3)
    elif history.status == "converged" and not gap["exact_fit"] and gap["relative_excess_loss"] > 100 * config.tol:
        warnings.warn(f"training stopped by the stopping rule at epoch {len(history)}, but the loss is still "
                      f"{gap['relative_excess_loss']:.2e} (relative) above the optimum's: it fell too slowly to "
                      "pass --tol, it had not finished; see the notes before epoch 1 (--standardize or "
                      "--optimizer lbfgs converge faster)", ConvergenceWarning, stacklevel=3)


def _split(data: Dataset, fraction: float, seed: int):
    if not fraction:
        return torch.arange(data.n_samples), None
    train_rows, val_rows = train_validation_split(data.n_samples, fraction, seed=seed)
    return torch.as_tensor(train_rows), torch.as_tensor(val_rows)


def _predict(X: torch.Tensor, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    return X.double().numpy() @ weight.T + bias


def _mse(X, y, weight, bias, sample_weight=None) -> float:
    """The (weighted) mean squared error, as the training loss and the solver define it."""
    squared = (_predict(X, weight, bias) - y.double().numpy()) ** 2  # (n, m)
    if sample_weight is None:
        return float(np.mean(squared))
    w = sample_weight.double().numpy()
    return float((w[:, None] * squared).sum() / (w.sum() * squared.shape[1]))


def _metrics(X, y, weight, bias) -> dict:
    m = regression_metrics(y.double().numpy(), _predict(X, weight, bias))
    return {k: m[k] for k in ("mse", "rmse", "mae", "r2")}


def _gap(weight, bias, trained_loss: float, solution: LstsqSolution, y: torch.Tensor) -> dict:
    """How far the trained model is from the optimum; ``exact_fit`` when the optimum's loss is rounding noise."""
    theta = np.concatenate([weight.ravel(), bias.ravel()])
    best = np.concatenate([np.asarray(solution.coef).ravel(), np.asarray(solution.intercept).ravel()])
    distance = float(np.linalg.norm(theta - best))
    norm = float(np.linalg.norm(best))
    excess = trained_loss - solution.loss
    return {
        "trained_loss": trained_loss,
        "optimum_loss": solution.loss,
        "relative_excess_loss": excess / solution.loss if solution.loss > 0 else (0.0 if excess <= 0 else math.inf),
        "distance": distance,
        "relative_distance": distance / norm if norm > 0 else (0.0 if distance == 0 else math.inf),
        "exact_fit": solution.loss <= 1e-20 * float(torch.mean(y.double() ** 2)),
        "unique": solution.rank == weight.shape[1] + 1,  # features plus the intercept all identified
    }


def _print(stream: TextIO | None, text: str) -> None:
    import sys

    print(text, file=stream or sys.stdout, flush=True)


def divergence_advice(X: torch.Tensor, n_targets: int, config: TrainConfig) -> str:
    """Why gradient descent diverged on this data and which learning rate avoids it."""
    if config.optimizer != "sgd":
        return f"{config.optimizer} diverged at lr {config.learning_rate:g}; lower --lr (e.g. by 10x) or use --standardize"
    bound = max_stable_lr(X, n_targets, momentum=config.momentum, nesterov=config.nesterov,
                          weight_decay=config.weight_decay)
    exponent = math.floor(math.log10(0.9 * bound))
    suggestion = math.floor(0.9 * bound / 10**exponent) * 10**exponent
    return (f"On this data gradient descent diverges for learning rates above {bound:.3g} "
            f"(2 / largest eigenvalue of the loss's Hessian); use a smaller one, e.g. --lr {suggestion:.1g}, "
            f"or --standardize")
