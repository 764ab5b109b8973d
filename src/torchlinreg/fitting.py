"""One fit from start to end, whatever holds the data.

:func:`run_fit` takes a source (:mod:`torchlinreg.sources`: rows in memory, or files streamed)
and goes: one pass for the exact optimum (the R factor of ``[X, 1, y]``, refined when the
design is ill-conditioned) → standardisation (one rule: the columns' means and spreads,
weighted when the rows are) → training (:func:`torchlinreg.loop.train` on the objective the
engine chooses) → one pass at the trained parameters, set beside the optimum. Publishing (the
printed report, the files, the plots, the model) is :class:`torchlinreg.publish.Publish`'s.
The command line calls :func:`run_fit`; so can any script.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field, fields

import numpy as np
import torch

from . import __version__
from .checks import FULL_BATCH_STREAMED, check_fit, checkpointer
from .config import FitOptions, TrainConfig
from .data import Dataset
from .errors import ConfigError
from .gram import GramObjective, select_engine
from .history import History
from .judge import PLOT_SAMPLE_ROWS, divergence_advice, gap, last_pass, warn_if_unfinished
from .model import LinearModel, build_model
from .publish import OUTPUT_FILES, Publish
from .results import Summary, View, drawn_images, fit_heading, html, text
from .scaling import Standardizer
from .exact import solve
from .solve import LstsqSolution, QRAccumulator
from .solve.machine import machine_record
from .data import ArraySource, as_source

__all__ = ["OUTPUT_FILES", "PLOT_SAMPLE_ROWS", "FitOptions", "FitResult", "run_fit"]


@dataclass
class FitResult:
    """Everything a fit produced. Parameters are in the data's units (also with ``standardize``)."""

    data: Dataset  # the rows in memory; a random sample of streamed rows (for the plots)
    config: TrainConfig
    model: LinearModel  # as trained: on standardised data when a scaler was used
    history: History
    weight: np.ndarray  # (n_targets, n_features), float64, the data's units
    bias: np.ndarray  # (n_targets,)
    solution: LstsqSolution  # exact optimum on the training rows
    gap: dict  # relative_excess_loss, distance, relative_distance
    metrics: dict  # split -> {mse, rmse, mae, r2}
    diagnostics: object | None = None  # GDDiagnostics for full-batch SGD on rows in memory, None otherwise
    scaler: Standardizer | None = None
    statistics: list | None = None  # RegressionStatistics per target, when asked for
    files: dict = field(default_factory=dict)
    engine: str = "data"  # the training loop's objective: "data" (the rows) or "gram"
    n_rows: int | None = None  # rows of the whole data when ``data`` holds a sample of them (streamed data)
    reading: dict | None = None  # how streamed data was read, and what each figure comes from

    @property
    def fit_intercept(self) -> bool:
        """Whether the model has a bias (False: a line through the origin, fitted without intercept)."""
        return bool(getattr(self.solution._factor, "fit_intercept", True))

    @property
    def n_samples(self) -> int:
        """Rows of the data (``data`` may hold only a sample of a streamed file's rows)."""
        return self.n_rows if self.n_rows is not None else self.data.n_samples

    def to_dict(self) -> dict:
        """The run as plain JSON-able data (``summary.json``): what was fitted and how; ``trained``, the
        trained model (its weight, bias, loss and metrics); ``optimum``, the exact least-squares optimum on
        the training rows (and its statistics, when computed); ``gap``, how far apart the two are;
        ``machine``, the CPU, the libraries' BLAS and the exact solve's kernels (``solve.kernels``)."""
        statistics = [s.to_dict() for s in self.statistics] if self.statistics is not None else None
        return {
            "torchlinreg_version": __version__,
            "n_samples": self.n_samples,
            "n_train": int(self.solution.n_samples),
            "n_validation": self.n_samples - int(self.solution.n_samples),
            "reading": self.reading if self.reading is not None else {"mode": "memory"},
            "features": list(self.data.feature_names),
            "targets": list(self.data.target_names),
            "settings": self.config.to_dict(),
            "fit_intercept": self.fit_intercept,
            "standardize": self.scaler.to_dict() if self.scaler is not None else None,
            "engine": self.engine,
            "status": self.history.status,
            "message": self.history.message,
            "epochs_run": len(self.history),
            "trained": {"weight": self.weight.tolist(), "bias": self.bias.tolist(), "loss": self.gap["trained_loss"],
                        "metrics": self.metrics},
            "optimum": {**self.solution.to_dict(), "statistics": statistics},
            "gap": self.gap,
            "diagnostics": self.diagnostics.to_dict() if self.diagnostics is not None else None,
            "machine": machine_record(self.solution.kernels),
        }

    def summary(self) -> Summary:
        """The results as text: the trained model beside the exact optimum, the gap, the trained model's
        metrics per split, the optimum's statistics (when computed). See :mod:`torchlinreg.results`."""
        return text(self._view())

    def _repr_html_(self) -> str:
        """The same as HTML tables, with the plots inline (a notebook shows it)."""
        return html(self._view(), drawn_images(self.data, self.history, self.solution.loss))

    def _view(self) -> View:
        solution, history = self.solution, self.history
        return View(tuple(self.data.feature_names), tuple(self.data.target_names),
                    {"weight": self.weight, "bias": self.bias, "loss": self.gap["trained_loss"]},
                    {"weight": solution.coef, "bias": solution.intercept, "loss": solution.loss}, self.gap,
                    self.metrics, self.statistics,
                    fit_heading(self.n_samples, len(history), self.config.optimizer, history.status, history.message),
                    fit_intercept=self.fit_intercept)

    def saved_model(self):
        """The trained model as a :class:`~torchlinreg.persistence.SavedModel` (what ``tl.save_model`` writes):
        its weights in the data's units, the column names, and the settings, scaling and metrics."""
        from .covariances import _Basis
        from .inference import InferenceState
        from .persistence import SavedModel
        from .publish import json_safe

        scaler, history = self.scaler, self.history
        formula = getattr(getattr(self.data, "dataset", self.data), "formula", None)  # rebuilds predict's columns
        return SavedModel(self.weight, self.bias, self.data.feature_names, self.data.target_names,
                          fit_intercept=self.fit_intercept, inference=None if getattr(self.solution, "positive", False)
                          else InferenceState.from_solution(self.solution, _Basis(self.solution)), metadata={
                              "settings": self.config.to_dict(), "standardize": scaler.to_dict() if scaler else None,
                              "metrics": json_safe(self.metrics), "status": history.status,
                              "epochs_run": len(history), "optimum_loss": json_safe(self.solution.loss),
                              **({"formula": formula} if formula is not None else {})})

    def __repr__(self) -> str:
        return f"FitResult({self.data!r}, {self.history!r}, files={sorted(self.files)})"


def run_fit(data, config: TrainConfig = TrainConfig(), out_dir: str | os.PathLike | None = None, *, dist=None,
            **options) -> FitResult:
    """Train a linear model on ``data`` while printing the tutorial's report, and judge it.

    ``data``: a :class:`torchlinreg.data.Dataset` or a source (``torchlinreg.open_source``).
    ``options``: the fields of :class:`FitOptions` (what to compute) and of
    :class:`torchlinreg.publish.Publish` (what to print and write; ``out_dir`` is its first).
    Before epoch 1 the report says what the data implies for gradient descent; after training
    it sets the model beside the exact least-squares optimum and gives the metrics. Settings
    and outputs are checked before any data is read; a bad value anywhere in the data stops the
    first pass, before the output folder is made.

    ``dist`` (a :class:`torchlinreg.distributed.Dist` of a torchrun job): each process adds its
    part of the rows to the R factor and one collective merges them; full batches train on the
    merged R, mini-batches with ``DistributedDataParallel``. All processes hold the same model;
    pass ``out_dir``/``save`` in the main process only.

    Checkpoints (``checkpoint_every``, ``resume``): SIGINT or SIGTERM ends training after the
    current epoch with a checkpoint in ``out_dir/checkpoint`` and raises
    :class:`~torchlinreg.errors.Interrupted`; ``resume`` continues it and ends with the files
    and numbers of a run never interrupted.
    """
    run = _Run(as_source(data), config, dist, *_options(out_dir, options))
    from .sources import check_outside  # a data folder streamed cannot be out_dir (nor hold it)

    check_outside(getattr(run.source, "origin", None), out_dir, OUTPUT_FILES)
    run.check()
    run.solve()  # one pass: the R factor, the optimum
    with run.publish.holding():  # the output folder locked from its preparation to its last file
        run.prepare()
        history = run.train()
        return run.judge(history)


def _options(out_dir, options: dict) -> tuple[FitOptions, Publish]:
    fit_names = {f.name for f in fields(FitOptions)}
    unknown = sorted(set(options) - fit_names - Publish.field_names())
    if unknown:
        raise TypeError(f"run_fit() got unexpected keyword argument(s): {', '.join(unknown)}")
    publish = Publish(out_dir, **{k: v for k, v in options.items() if k not in fit_names})
    return FitOptions(**{k: v for k, v in options.items() if k in fit_names}), publish


class _Run:
    """The steps of :func:`run_fit`, sharing what each finds."""

    def __init__(self, source, config: TrainConfig, dist, options: FitOptions, publish: Publish):
        self.source, self.config, self.options, self.publish = source, config, options, publish
        self.dist = dist if dist is not None and dist.is_distributed else None
        self.in_memory = bool(getattr(source, "in_memory", False))
        self.val = None  # held-out rows (a Dataset), in memory only
        self.all_rows = source.dataset if self.in_memory else None  # validation rows included: what the plots draw
        self.checkpoint = None

    def check(self) -> None:
        """Settings and outputs refused before any data is read or anything is written."""
        check_fit(self)
        if self.options.validation_fraction:
            from .metrics import train_validation_split

            data = self.all_rows = self.source.dataset
            train_rows, val_rows = train_validation_split(data.n_samples, self.options.validation_fraction,
                                                          seed=self.options.split_seed)
            self.source, self.val = ArraySource(_rows(data, train_rows)), _rows(data, val_rows)

    def solve(self) -> None:
        self.acc, self.counts, self.solution = solve(self.source, self.dist, self.options.chunk_rows,
                                                     fit_intercept=self.options.fit_intercept)
        if self.options.positive:  # the optimum the projected training aims at: non-negative least squares
            from .nnls import positive_solution

            self.solution = positive_solution(self.acc, self.solution)
        self.n_rows = self.acc.n_samples
        self.engine, self.why = _engine(self)

    def prepare(self) -> None:
        """The output folder, the checkpoint, the scaler, the model and the notes before epoch 1."""
        out = self.publish.prepare(claim=self.options.resume)
        self.checkpoint = checkpointer(self, out) if out is not None and self.dist is None else None
        self.objective = GramObjective.from_accumulator(self.acc)
        self.scaler = None
        # the columns' (weighted) means and spreads: of the rows, else from R; without intercept their root
        # mean squares and no centring (a shift would need the bias the model lacks: see Standardizer.root_mean_squares)
        if self.options.standardize:
            if self.in_memory:
                X, y, w = self._tensors()
                self.scaler = Standardizer.fit(X, y, sample_weight=w, center=self.options.fit_intercept)
            else:
                self.scaler = self.objective.standardizer()
        self.model = build_model(len(self.source.feature_names), len(self.source.target_names), seed=self.config.seed,
                                 fit_intercept=self.options.fit_intercept)
        self.diagnostics = _diagnostics(self)
        notes = [f"note: {m}" for m in self.diagnostics.messages(self.publish.flags)] \
            if self.diagnostics is not None else []
        if not self.in_memory:
            notes.insert(0, f"reading: {self.n_rows:,} rows streamed in chunks of {self.options.chunk_rows:,}"
                         + (f" ({self.options.reading})" if self.options.reading else ""))
        first = [f"settings chosen for this data: {self.options.chosen} ({{optimizer}} and {{lr}} not given: the "
                 "tutorial's SGD at lr 0.001 diverges on most real data)"] if self.options.chosen else []
        self.reporters = self.publish.reporters([*notes, f"engine: {self.engine} ({self.why})"], first)

    def _projected(self):
        """With ``positive``: the weights projected onto >= 0 after every optimizer step (``nnls``)."""
        if not self.options.positive:
            return contextlib.nullcontext()
        from .nnls import nonnegative_steps

        return nonnegative_steps(self.model.linear.weight)

    def train(self) -> History:
        checkpoint, bar = self.checkpoint, self.publish.bar
        on_stop = (lambda: bar.on_train_end(None)) if bar is not None else None  # close the bar before the message
        stopping = checkpoint.on_signals(on_stop=on_stop) if checkpoint else contextlib.nullcontext()
        with stopping, self._projected():  # SIGINT/SIGTERM: a checkpoint after the current epoch, then Interrupted
            history = _train(self)
        if history.diverged:
            objective = self.objective.standardized(self.scaler) if self.scaler else self.objective
            history.message += ". " + self.publish.text(divergence_advice(objective, self.config, _largest(self)))
        return history

    def judge(self, history: History) -> FitResult:
        """One pass at the trained parameters; the result, published."""
        options, dist, source = self.options, self.dist, self.source
        weight = np.asarray(history.final_params["linear.weight"], dtype=np.float64)
        bias = np.asarray(history.final_params["linear.bias"], dtype=np.float64)
        stats_wanted = options.statistics or self.publish.report
        main = dist is None or dist.is_main
        want_sample = not self.in_memory and main and (self.publish.plots or self.publish.report) \
            and self.publish.out is not None
        last = last_pass(source, options.chunk_rows, dist, weight, bias, self.solution,
                         options.cov_type if stats_wanted else None,
                         self.counts[0 if dist is None else dist.rank] if want_sample else 0, self.config.seed,
                         maxlags=options.maxlags if stats_wanted else None,
                         groups=options.groups if stats_wanted else None)
        m = len(source.target_names)
        trained_loss = float(last.sse.sum() / (self.acc.sum_weights * m))
        result_gap = gap(weight, bias, trained_loss, self.solution, last.sum_y2 / (self.n_rows * m))
        warn_if_unfinished(history, self.config, result_gap)
        metrics = {"train": last.metrics.result()}
        if self.val is not None:
            metrics["validation"] = last_pass(ArraySource(self.val), options.chunk_rows, None, weight, bias,
                                              self.solution, None).metrics.result()
        stats = None
        if stats_wanted:
            from .statistics import solution_statistics

            residuals = last.residuals if last.residuals is not None and last.residuals.needed else None
            stats = solution_statistics(self.solution, residuals, conf_level=options.conf_level,
                                        cov_type=options.cov_type)
        result = FitResult(self._shown_data(last), self.config, self.model, history, weight, bias, self.solution,
                           result_gap, metrics, self.diagnostics, self.scaler, stats, engine=self.engine)
        lines = [] if self.in_memory else _streamed(self, result, last, want_sample)
        self.publish.write(result, trained_loss, lines, statistics=options.statistics)
        if self.checkpoint is not None:
            self.checkpoint.remove()  # every file of the run is written: nothing is left to resume
        return result

    def _tensors(self):
        """The training rows as float64 tensors ``(X, y, w)`` (rows in memory only)."""
        data = self.source.dataset
        w = None if data.sample_weight is None else data.sample_weight.double()
        return data.X.double(), data.y.double(), w

    def _shown_data(self, last) -> Dataset:
        return self.all_rows if self.in_memory else _sample_dataset(last.sample, self.source)


def _rows(data: Dataset, rows) -> Dataset:
    rows = torch.as_tensor(rows)
    w = None if data.sample_weight is None else data.sample_weight[rows]
    return Dataset(data.X[rows], data.y[rows], data.feature_names, data.target_names, sample_weight=w,
                   formula=data.formula)


def _engine(run: _Run) -> tuple[str, str]:
    """Which objective the loop trains on, and why (:func:`torchlinreg.gram.select_engine`), for these rows."""
    config, n_rows, dist = run.config, run.n_rows, run.dist
    chosen, why = select_engine(config, requested=run.options.engine, tutorial=run.options.tutorial, n_samples=n_rows)
    full_batch = config.batch_size is None or config.batch_size >= n_rows
    if chosen == "data" and full_batch and not run.in_memory:
        raise ConfigError(FULL_BATCH_STREAMED)
    if dist is not None and chosen == "data" and full_batch:
        raise ConfigError(f"across {dist.world_size} processes full-batch training runs on the gram engine (the "
                          f"merged R factor gives the same steps), but {why}; drop {{engine='data'}}, or add "
                          "{batch_size=N} for mini-batches with DistributedDataParallel")
    if dist is not None:
        why += f"; R merged from {dist.world_size} processes"
        if chosen == "data":
            why += (f"; DistributedDataParallel across {dist.world_size} processes, each "
                    + ("stepping on its shard of every batch" if run.in_memory
                       else "streaming its own chunks into every step"))
    return chosen, why


def _diagnostics(run: _Run):
    """What the data implies for full-batch SGD (stable learning rates, epochs needed): rows in memory only."""
    config = run.config
    full_batch = config.batch_size is None or config.batch_size >= run.n_rows
    if not (run.in_memory and config.optimizer == "sgd" and full_batch and run.options.fit_intercept):
        return None  # the diagnostics assume full batches of rows in memory, and a bias
    from .diagnostics import diagnose

    X, y, w = run._tensors()
    if run.scaler is not None:
        X, y = run.scaler.transform_X(X), run.scaler.transform_y(y)
    return diagnose(X, y, lr=config.learning_rate, momentum=config.momentum, nesterov=config.nesterov,
                    weight_decay=config.weight_decay, epochs=config.epochs, standardized=run.scaler is not None,
                    sample_weight=w, feature_names=run.source.feature_names, rank=run.solution.rank,
                    initial_weight=run.model.linear.weight.detach().double().numpy(),
                    initial_bias=run.model.linear.bias.detach().double().numpy())


def _largest(run: _Run) -> float | None:
    """The largest magnitude in the rows the model trains on (in memory only), for the overflow advice."""
    if not run.in_memory:
        return None
    X, y, _ = run._tensors()
    if run.scaler is not None:
        X, y = run.scaler.transform_X(X), run.scaler.transform_y(y)
    return max(float(X.abs().max()) if X.numel() else 0.0, float(y.abs().max()) if y.numel() else 0.0)


def _streamed(run: _Run, result: FitResult, last, sampled: bool) -> list[str]:
    """What each figure of streamed data comes from: in the result, and one line of the report."""
    n_sample = result.data.n_samples
    passed = result.statistics and last.residuals is not None and last.residuals.needed
    said = {"optimum": "the R factor of all rows", "loss": "the R factor of all rows",
            "metrics": "a pass over all rows at the trained parameters",
            "statistics": "the R factor" + (", and a pass over all rows" if passed else ""),
            "plots": f"a random sample of {n_sample:,} rows" + (" (all of them)" if n_sample == run.n_rows else "")}
    result.n_rows = run.n_rows
    result.reading = {"mode": "stream", "reason": run.options.reading, "chunk_rows": run.options.chunk_rows,
                      "processes": 1 if run.dist is None else run.dist.world_size, "plot_sample_rows": n_sample,
                      "from": said}
    return [f"streamed: the optimum and the losses come from {said['optimum']}, the metrics from {said['metrics']}"
            + (f"; the plots show {said['plots']}" if sampled else "")]


def _sample_dataset(pieces: list, source) -> Dataset:
    """The sampled rows as a Dataset with the source's column names (empty in processes that sample nothing)."""
    d, m = len(source.feature_names), len(source.target_names)

    def stack(i: int, width: int) -> torch.Tensor:
        if not pieces:
            return torch.zeros(0, width, dtype=torch.float64)
        return torch.from_numpy(np.concatenate([p[i] for p in pieces]))

    weights = (torch.from_numpy(np.concatenate([p[2] for p in pieces]))
               if pieces and source.weight_name is not None else None)
    return Dataset(stack(0, d), stack(1, m), tuple(source.feature_names), tuple(source.target_names),
                   sample_weight=weights, formula=getattr(source, "formula", None))


def _train(run: _Run) -> History:
    """The loop on the engine's objective: the R factor (gram), the rows in memory, or mini-batches of a
    process's share or streamed from files."""
    config, scaler, model, every = run.config, run.scaler, run.model, run.reporters
    val_objective = None
    if run.val is not None and (run.engine == "gram" or run.dist is not None):
        val = run.val
        val_objective = GramObjective.from_accumulator(
            QRAccumulator(val.n_features, val.n_targets, fit_intercept=run.options.fit_intercept).update(
                val.X.double(), val.y.double()))
    if run.engine == "gram":
        from .gram import train_gram

        return train_gram(model, run.objective, config, every, scaler=scaler, val_objective=val_objective,
                          checkpoint=run.checkpoint)
    if not run.in_memory:  # the batches of epoch t depend on the seed and t alone: a resumed run replays them
        from .distributed import Dist
        from .minibatch import stream_steps, train_minibatches

        steps = stream_steps(run.source, config.batch_size, run.counts, run.dist or Dist(), seed=config.seed,
                             chunk_rows=run.options.chunk_rows, scaler=scaler)
        return train_minibatches(model, run.objective, steps, config, every, scaler=scaler, dist=run.dist,
                                 checkpoint=run.checkpoint)
    X, y, w = run._tensors()
    Xt, yt = (scaler.transform_X(X), scaler.transform_y(y)) if scaler else (X, y)
    if run.dist is not None:  # DDP: every process steps on its shard of each batch; the loss on all rows from R
        from .distributed import shard
        from .minibatch import shard_steps, train_minibatches

        mine = shard(len(X), run.dist)
        steps = shard_steps(Xt[mine], yt[mine], None if w is None else w[mine], len(X), config.batch_size,
                            config.seed, run.dist)
        return train_minibatches(model, run.objective, steps, config, every, scaler=scaler, dist=run.dist,
                                 val_objective=val_objective)
    from .training import train

    Xv = yv = None
    if run.val is not None:
        Xv, yv = run.val.X.double(), run.val.y.double()
        Xv, yv = (scaler.transform_X(Xv), scaler.transform_y(yv)) if scaler else (Xv, yv)
    return train(model, Xt, yt, config, every, X_val=Xv, y_val=yv, scaler=scaler, sample_weight=w,
                 checkpoint=run.checkpoint)
