"""One fit from start to end.

Data in -> (split, scaling) -> exact optimum and diagnostics -> training with the report
-> comparison with the optimum and metrics -> history, plots and model files on disk.
The command line calls :func:`run_fit`; so can any script.
"""

from __future__ import annotations

import contextlib
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
from .outputs import CHECKPOINT_DIR, atomic_write_text, check_writable_path, prepare_output_dir, remove_stale
from .callbacks import Callback
from .progress import ProgressBar
from .report import PrintReport, format_comparison, format_metrics
from .tensorboard import TensorBoardLogger
from .scaling import Standardizer
from .gram import GramObjective, select_engine, train_gram
from .solve import LstsqSolution, QRAccumulator, _norms, needs_refinement, refine
from .training import train

HISTORY_JSON, HISTORY_CSV, SUMMARY_JSON = "history.json", "history.csv", "summary.json"
# Every file a run may write into its output folder (plots.PLOT_FILES, the GIF, the report and the
# checkpoint folder too).
OUTPUT_FILES = (HISTORY_JSON, HISTORY_CSV, SUMMARY_JSON, "data.png", "initial_model.png", "loss.png",
                "current_model.png", "residuals.png", "predicted_vs_actual.png", "fit.gif", "report.html",
                CHECKPOINT_DIR)


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
    n_rows: int | None = None  # rows of the whole data when ``data`` holds a sample of them (streamed data)
    reading: dict | None = None  # how streamed data was read, and what each figure comes from

    @property
    def n_samples(self) -> int:
        """Rows of the data (``data`` may hold only a sample of a streamed file's rows)."""
        return self.n_rows if self.n_rows is not None else self.data.n_samples

    def summary(self) -> dict:
        """The run as plain JSON-able data."""
        return {
            "torchlinreg_version": __version__,
            "n_samples": self.n_samples,
            "n_train": int(self.solution.n_samples),
            "n_validation": self.n_samples - int(self.solution.n_samples),
            "reading": self.reading if self.reading is not None else {"mode": "memory"},
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
    checkpoint_every: int | None = None,
    resume: bool = False,
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
    shard of the training rows to the R factor and one collective merges them. Full batches
    then train on the merged R (the gram engine; ``engine="data"`` is refused); mini-batches
    (``config.batch_size``) train with ``DistributedDataParallel``, each rank stepping on its
    shard of every batch of single-process training (:func:`torchlinreg.minibatch.shard_steps`),
    so the result equals one process's to rounding. All ranks hold the same model; pass
    ``out_dir``/``save`` on rank 0 only. Data too large to read whole: :func:`run_fit_source`.

    Checkpoints (one process, with ``out_dir``; see :mod:`torchlinreg.checkpoint`): every
    ``checkpoint_every`` epochs the training state goes to ``out_dir/checkpoint``; SIGINT or
    SIGTERM (in the main thread) ends training after the current epoch with a checkpoint and
    raises :class:`~torchlinreg.errors.Interrupted`. ``resume`` continues from the
    checkpoint (same settings and data, else ConfigError) and ends with the files and
    numbers of a run never interrupted; a finished run deletes its checkpoint. Without
    ``resume``, an ``out_dir`` holding a checkpoint needs ``force`` (which starts over).
    """
    from .persistence import model_paths

    _check_run(config, out_dir, report, statistics, conf_level, cov_type)
    train_rows, val_rows = _split(data, validation_fraction, split_seed)
    chosen, why = select_engine(config, requested=engine, tutorial=tutorial, n_samples=len(train_rows))
    several = dist is not None and dist.is_distributed
    full_batch = config.batch_size is None or config.batch_size >= len(train_rows)
    if several and chosen != "gram" and full_batch:
        raise ConfigError(f"across {dist.world_size} processes full-batch training runs on the gram engine (the "
                          f"merged R factor gives the same steps), but {why}; drop --engine data, or add "
                          "--batch-size N for mini-batches with DistributedDataParallel")
    if several and chosen == "data":
        why += (f"; DistributedDataParallel across {dist.world_size} processes, each stepping on its shard of "
                "every batch")
    for path in model_paths(save) if save is not None else ():
        check_writable_path(path)
        if path.exists() and not force:
            raise OutputError(f"{str(path)!r} exists; pass --force to replace it or choose another --save path")
    # resume claims out_dir as this run's (its checkpoint is checked below, even when damaged)
    out = prepare_output_dir(out_dir, owned=OUTPUT_FILES, force=force or resume) if out_dir is not None else None
    X, y = data.X[train_rows].double(), data.y[train_rows].double()
    X_val, y_val = (data.X[val_rows].double(), data.y[val_rows].double()) if val_rows is not None else (None, None)
    w = data.sample_weight[train_rows].double() if data.sample_weight is not None else None
    checkpoint = None
    if out is not None and not several:
        from .checkpoint import Checkpointer, data_sha256, fit_settings

        settings = fit_settings(config, engine=chosen, standardize=standardize, validation_fraction=validation_fraction,
                                split_seed=split_seed, features=data.feature_names, targets=data.target_names)
        checkpoint = Checkpointer(out, settings, lambda: data_sha256(X, y, w, X_val, y_val), every=checkpoint_every,
                                  resume=resume, force=force)
    elif checkpoint_every is not None or resume:
        raise ConfigError("checkpoints need an output folder (--out) and one process (not torchrun)")

    if dist is not None and dist.is_distributed:
        from .distributed import solve_rows

        acc, solution = solve_rows(X, y, w, dist, feature_names=data.feature_names, target_names=data.target_names)
        why += f"; R merged from {dist.world_size} processes"
    else:
        acc = QRAccumulator(data.n_features, data.n_targets).update(X, y, sample_weight=w)  # one pass: R of [X, 1, y]
        solution = acc.solve(feature_names=data.feature_names, target_names=data.target_names)
        if needs_refinement(solution):  # ill-conditioned: passes in double-double restore the digits
            solution = refine(solution, [(X, y) if w is None else (X, y, w)])
    scaler = Standardizer.fit(X, y, sample_weight=w) if standardize else None  # the streamed fit's rule
    Xt, yt = (scaler.transform_X(X), scaler.transform_y(y)) if scaler else (X, y)
    Xv, yv = (scaler.transform_X(X_val), scaler.transform_y(y_val)) if scaler and X_val is not None else (X_val, y_val)

    model = build_model(data.n_features, data.n_targets, seed=config.seed)
    diagnostics = None
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
    val_objective = (GramObjective.from_accumulator(QRAccumulator(data.n_features, data.n_targets).update(X_val, y_val))
                     if X_val is not None and (chosen == "gram" or several) else None)
    stopping = checkpoint.on_signals(on_stop=lambda: bar.on_train_end(None)) if checkpoint else contextlib.nullcontext()
    with stopping:  # SIGINT/SIGTERM: a checkpoint after the current epoch, then Interrupted
        if chosen == "gram":
            objective = GramObjective.from_accumulator(acc)
            history = train_gram(model, objective, config, every, scaler=scaler, val_objective=val_objective,
                                 checkpoint=checkpoint)
        elif several:  # DDP: every rank steps on its shard of each batch; the loss on all rows comes from the merged R
            from .distributed import shard
            from .minibatch import shard_steps, train_minibatches

            mine = shard(len(X), dist)  # this rank's rows, as solve_rows folded them
            steps = shard_steps(Xt[mine], yt[mine], None if w is None else w[mine], len(X), config.batch_size,
                                config.seed, dist)
            history = train_minibatches(model, GramObjective.from_accumulator(acc), steps, config, every,
                                        scaler=scaler, dist=dist, val_objective=val_objective)
        else:
            history = train(model, Xt, yt, config, every, X_val=Xv, y_val=yv, scaler=scaler, sample_weight=w,
                            checkpoint=checkpoint)
    if history.diverged:
        history.message += ". " + divergence_advice(Xt, yt.shape[1], config, y=yt)

    weight = np.asarray(history.final_params["linear.weight"], dtype=np.float64)
    bias = np.asarray(history.final_params["linear.bias"], dtype=np.float64)
    trained_loss = _mse(X, y, weight, bias, w)
    gap = _gap(weight, bias, trained_loss, solution, float(torch.mean(y.double() ** 2)))
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

    _publish(result, trained_loss, stream=stream, statistics=statistics, out=out, plots=plots,
             animation=animation, report=report, save=save, force=force)
    if checkpoint is not None:
        checkpoint.remove()  # every file of the run is written: nothing is left to resume
    return result


def run_fit_source(
    source,
    config: TrainConfig = TrainConfig(),
    out_dir: str | os.PathLike | None = None,
    *,
    standardize: bool = False,
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
    dist=None,
    chunk_rows: int | None = None,
    reading: str = "",
    checkpoint_every: int | None = None,
    resume: bool = False,
) -> FitResult:
    """:func:`run_fit` for data streamed from files, in memory bounded by the chunk and the read size, not the file.

    ``source`` is a :class:`torchlinreg.stream.StreamSource` (see :func:`torchlinreg.stream.open_source`),
    read in chunks of ``chunk_rows`` rows (default ``stream.CHUNK_ROWS``). The data is read in passes:

    1. one pass builds the R factor of ``[X, 1, y]``: the exact optimum (refined by further
       passes when the design is ill-conditioned, in one process), the loss at any
       parameters, full-batch gradients and, with ``standardize``, the columns' means and
       spreads all come from it;
    2. training: full-batch on the gram engine (no pass: O(d²) per epoch), or with
       ``config.batch_size`` mini-batches streamed through :class:`torchlinreg.stream.ShuffledBatches`
       and a ``DataLoader`` (one pass per epoch; the loss of each epoch on all rows comes
       from R);
    3. one pass at the trained parameters for the metrics (exact, over all rows), the
       sums the statistics need beyond R (HC covariances, weights) and a random sample of
       at most ``PLOT_SAMPLE_ROWS`` rows, which ``result.data`` holds and the plots, the
       animation and the report draw.

    Full-batch training on the data loop (``engine="data"``) would read every row every
    epoch and is refused. The gradient-descent diagnostics (which need the rows) are left
    out: ``result.diagnostics`` is None. A bad value anywhere in the data stops the first
    pass, before the output folder is made. ``reading`` says why the data is
    streamed, for the report before epoch 1.

    ``dist`` (a torchrun job): every rank streams its own chunks (chunk ``i`` belongs to
    rank ``i % world_size``); one collective merges the R factors, mini-batch training
    wraps the model in ``DistributedDataParallel`` and each step joins every rank's batch
    (see :func:`torchlinreg.minibatch.stream_steps`), the last pass's sums are gathered;
    the sample for the plots comes from rank 0's chunks. Pass ``out_dir``/``save`` on rank 0 only.

    Checkpoints (``checkpoint_every``, ``resume``; one process, with ``out_dir``): as in
    :func:`run_fit`, on both engines; a resumed run ends with the files of a run never
    interrupted. The data a resumed run must match are fingerprinted from the first pass,
    which every run makes anyway (:func:`torchlinreg.checkpoint.streamed_data_sha256`), so
    resuming costs no extra pass; the refusals that need no data (no checkpoint to resume,
    a checkpoint there without ``resume`` or ``force``) come before that pass.
    """
    from .distributed import Dist, solve_shard
    from .minibatch import stream_steps, train_minibatches
    from .passes import BUFFER_ROWS, CHUNK_ROWS, accumulate

    chunk_rows = CHUNK_ROWS if chunk_rows is None else chunk_rows
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise ConfigError(f"--chunk-rows must be a positive integer, got {chunk_rows!r}; pass e.g. 65536")
    _check_run(config, out_dir, report, statistics, conf_level, cov_type)
    full_batch_data = ("full-batch training with --engine data reads every row in every epoch, which needs the "
                       "rows in memory, but DATA is streamed; use --engine gram (the same steps from one pass over "
                       "the data) or --batch-size N")
    if engine == "data" and config.batch_size is None:
        raise ConfigError(full_batch_data)
    select_engine(config, requested=engine, n_samples=None if engine == "gram" else 1)  # bad names, gram + batches
    several = dist is not None and dist.is_distributed
    checkpoints = out_dir is not None and not several
    if (checkpoint_every is not None or resume) and not checkpoints:
        raise ConfigError("checkpoints need an output folder (--out) and one process (not torchrun)")
    _check_outputs(out_dir, save, force, claim=resume)
    if checkpoints:
        from .checkpoint import check_folder

        check_folder(out_dir, every=checkpoint_every, resume=resume, force=force)  # before the first pass
    dist = dist if several else Dist()  # one process: rank 0 of 1
    d, m = len(source.feature_names), len(source.target_names)

    if several:  # each rank its chunks; one collective merges the R factors, refinement sums across ranks
        acc, counts, solution = solve_shard(source, dist, chunk_rows=chunk_rows)
    else:
        acc = accumulate(source, chunk_rows=chunk_rows)  # one pass: R of [X, 1, y]
        counts = [acc.n_samples]
        solution = acc.solve(feature_names=source.feature_names, target_names=source.target_names)
        if needs_refinement(solution):  # ill-conditioned: passes in double-double restore the digits
            solution = refine(solution, lambda: source.chunks(chunk_rows))
    n_rows = acc.n_samples
    chosen, why = select_engine(config, requested=engine, n_samples=n_rows)
    if chosen == "data" and (config.batch_size is None or config.batch_size >= n_rows):
        raise ConfigError(full_batch_data)
    if several:
        why += f"; R merged from {dist.world_size} processes"
        if chosen == "data":
            why += (f"; DistributedDataParallel across {dist.world_size} processes, each streaming its own "
                    "chunks into every step")
    # resume claims out_dir as this run's (its checkpoint is checked below, even when damaged)
    out = prepare_output_dir(out_dir, owned=OUTPUT_FILES, force=force or resume) if out_dir is not None else None
    checkpoint = None
    if out is not None and checkpoints:
        from .checkpoint import STREAMED_DATA, Checkpointer, fit_settings, streamed_data_sha256

        # Every setting that changes the numbers: config (batch size, seed, dtype, optimizer, ...), the
        # engine, standardisation, and how the rows are read (the chunks decide R's last bits and, with
        # the shuffle buffer, the mini-batches).
        settings = fit_settings(config, engine=chosen, standardize=standardize, reading="stream",
                                chunk_rows=chunk_rows, buffer_rows=BUFFER_ROWS, features=source.feature_names,
                                targets=source.target_names, weights=source.weight_name)
        fingerprint = streamed_data_sha256(acc, source)  # now: of the files as the first pass read them
        checkpoint = Checkpointer(out, settings, lambda: fingerprint, every=checkpoint_every, resume=resume,
                                  force=force, data_what=STREAMED_DATA)

    objective = GramObjective.from_accumulator(acc)
    scaler = objective.standardizer() if standardize else None  # the columns' statistics, from R
    model = build_model(d, m, seed=config.seed)
    notes = [f"reading: {n_rows:,} rows streamed in chunks of {chunk_rows:,}" + (f" ({reading})" if reading else ""),
             f"engine: {chosen} ({why})"]
    bar = ProgressBar(force=False if quiet else progress)
    printer = PrintReport(stream, notes, every=0 if quiet else log_every, write=bar.write)
    extra = [TensorBoardLogger(tensorboard)] if tensorboard is not None else []
    every = [bar, printer, *extra, *callbacks]
    stopping = checkpoint.on_signals(on_stop=lambda: bar.on_train_end(None)) if checkpoint else contextlib.nullcontext()
    with stopping:  # SIGINT/SIGTERM: a checkpoint after the current epoch, then Interrupted
        if chosen == "gram":
            history = train_gram(model, objective, config, every, scaler=scaler, checkpoint=checkpoint)
        else:  # the batches of epoch t depend on the seed and t alone: a resumed run replays them
            steps = stream_steps(source, config.batch_size, counts, dist, seed=config.seed, chunk_rows=chunk_rows,
                                 scaler=scaler)
            history = train_minibatches(model, objective, steps, config, every, scaler=scaler, dist=dist,
                                        checkpoint=checkpoint)
    if history.diverged:
        history.message += ". " + _lr_advice(objective.standardized(scaler) if scaler else objective, config)

    weight = np.asarray(history.final_params["linear.weight"], dtype=np.float64)
    bias = np.asarray(history.final_params["linear.bias"], dtype=np.float64)
    want_sample = dist.is_main and (plots or report) and out is not None
    last = _last_pass(source, chunk_rows, dist, weight, bias, solution, cov_type if statistics or report else None,
                      counts[dist.rank] if want_sample else 0, config.seed)
    trained_loss = float(last.sse.sum() / (acc.sum_weights * m))
    gap = _gap(weight, bias, trained_loss, solution, last.sum_y2 / (n_rows * m))
    _warn_if_unfinished(history, config, gap)
    metrics = {"train": last.metrics.result()}
    stats = None
    if statistics or report:
        from .statistics import solution_statistics

        stats = solution_statistics(solution, last.residuals if last.residuals.needed else None,
                                    conf_level=conf_level, cov_type=cov_type)
    sample = _sample_dataset(last.sample, source, d, m)
    said = {"optimum": "the R factor of all rows", "loss": "the R factor of all rows",
            "metrics": "a pass over all rows at the trained parameters",
            "statistics": "the R factor" + (", and a pass over all rows" if stats and last.residuals.needed else ""),
            "plots": f"a random sample of {sample.n_samples:,} rows" + (" (all of them)" if sample.n_samples == n_rows
                                                                        else "")}
    result = FitResult(sample, config, model, history, weight, bias, solution, gap, metrics, None, scaler, stats,
                       engine=chosen, n_rows=n_rows,
                       reading={"mode": "stream", "reason": reading, "chunk_rows": chunk_rows,
                                "processes": dist.world_size, "plot_sample_rows": sample.n_samples, "from": said})
    lines = [f"streamed: the optimum and the losses come from {said['optimum']}, the metrics from {said['metrics']}"
             + (f"; the plots show {said['plots']}" if want_sample and (plots or report) else "")]
    _publish(result, trained_loss, stream=stream, statistics=statistics, out=out, plots=plots,
             animation=animation, report=report, save=save, force=force, lines=lines)
    if checkpoint is not None:
        checkpoint.remove()  # every file of the run is written: nothing is left to resume
    return result


PLOT_SAMPLE_ROWS = 10_000  # rows of streamed data the plots draw: enough to show the fit, few enough to draw fast


def _check_run(config: TrainConfig, out_dir, report: bool, statistics: bool, conf_level, cov_type) -> None:
    """Settings refused before any data is read or anything is written."""
    if config.device is not None:
        from .devices import resolve_device

        resolve_device(config.device, config.dtype)  # an unavailable device is refused before anything is written
    if report and out_dir is None:
        raise ConfigError("report.html needs an output folder; pass out_dir")
    if statistics or report:
        from .statistics import check_settings

        check_settings(conf_level, cov_type)  # refuse a bad level before training, not after


def _check_outputs(out_dir, save, force: bool, claim: bool = False) -> None:
    """Refuse outputs that could not be written, without creating anything (the data has not been read yet).

    ``claim`` (resuming): ``out_dir`` is this run's, as ``force`` would make it; model files still need ``force``.
    """
    from .persistence import model_paths

    for path in model_paths(save) if save is not None else ():
        check_writable_path(path)
        if path.exists() and not force:
            raise OutputError(f"{str(path)!r} exists; pass --force to replace it or choose another --save path")
    if out_dir is not None:
        if Path(out_dir).exists():
            prepare_output_dir(out_dir, owned=OUTPUT_FILES, force=force or claim)  # there already: checks it only
        else:
            check_writable_path(Path(out_dir) / SUMMARY_JSON)


@dataclass
class _LastPass:
    """What the pass at the trained parameters found (summed over every process's rows)."""

    metrics: object  # metrics.MetricSums
    sse: np.ndarray  # (m,): Σ w r² at the trained parameters
    sum_y2: float  # Σ y² over all entries, for telling an exact fit from rounding
    residuals: object | None  # statistics.ResidualPass at the optimum, or None
    sample: list  # (X, y, w) pieces of this process's sample for the plots


def _last_pass(source, chunk_rows: int, dist, weight: np.ndarray, bias: np.ndarray, solution: LstsqSolution,
               cov_type: str | None, sample_from: int, seed: int) -> _LastPass:
    """One pass over this process's chunks: metrics and loss at the trained parameters, the statistics' sums
    at the optimum (``cov_type`` None: none) and a Bernoulli sample of the ``sample_from`` rows; gathered."""
    from .distributed import gather_vectors
    from .metrics import MetricSums
    from .statistics import ResidualPass

    m = len(source.target_names)
    sums, sse, sum_y2 = MetricSums(m), np.zeros(m), 0.0
    residuals = ResidualPass(solution, cov_type) if cov_type is not None else None
    pick = _sampler(sample_from, PLOT_SAMPLE_ROWS, seed) if sample_from else None
    sample = []
    chunks = source._chunks(chunk_rows, dist.rank, dist.world_size) if dist.is_distributed \
        else source.chunks(chunk_rows)  # noqa: SLF001 - the ranks' parts, as accumulate_shard read them
    for X, y, w in chunks:
        y_pred = X @ weight.T + bias  # (k, m)
        sums.update(y, y_pred)
        squared = (y - y_pred) ** 2
        sse += (squared if w is None else w[:, None] * squared).sum(axis=0)
        sum_y2 += float(np.sum(y**2))
        if residuals is not None and residuals.needed:
            residuals.update(X, y, w)
        if pick is not None:
            keep = pick(len(X))
            if keep.any():
                sample.append((X[keep], y[keep], None if w is None else w[keep]))
    if dist.is_distributed:  # every rank's sums, merged in rank order: the same on every rank
        parts = gather_vectors(sums.to_vector(), dist)
        sums = MetricSums.from_vector(parts[0])
        for part in parts[1:]:
            sums.merge(MetricSums.from_vector(part))
        totals = np.sum(gather_vectors(np.concatenate([sse, [sum_y2]]), dist), axis=0)
        sse, sum_y2 = totals[:m], float(totals[m])
        if residuals is not None and residuals.needed:
            vectors = gather_vectors(residuals.to_vector(), dist)
            residuals = ResidualPass(solution, cov_type)
            for v in vectors:
                residuals.add_vector(v)
    return _LastPass(sums, sse, sum_y2, residuals, sample)


def _sampler(n_rows: int, n_wanted: int, seed: int):
    """``pick(k)``: a mask of the next ``k`` rows, each kept with probability ``n_wanted / n_rows``, seeded,
    at most ``n_wanted`` in all; so the sample spreads over the whole file."""
    rng = np.random.default_rng(seed)
    p = min(1.0, n_wanted / n_rows)
    left = [n_wanted]

    def pick(k: int) -> np.ndarray:
        keep = rng.random(k) < p if p < 1 else np.ones(k, dtype=bool)
        keep[np.flatnonzero(keep)[left[0]:]] = False
        left[0] -= int(keep.sum())
        return keep

    return pick


def _sample_dataset(pieces: list, source, d: int, m: int) -> Dataset:
    """The sampled rows as a Dataset with the source's column names (empty on ranks that sample nothing)."""
    def stack(i: int, width: int) -> torch.Tensor:
        return torch.from_numpy(np.concatenate([p[i] for p in pieces])) if pieces else torch.zeros(0, width,
                                                                                                 dtype=torch.float64)
    weights = (torch.from_numpy(np.concatenate([p[2] for p in pieces]))
               if pieces and source.weight_name is not None else None)
    return Dataset(stack(0, d), stack(1, m), tuple(source.feature_names), tuple(source.target_names),
                   sample_weight=weights)


def _publish(result: FitResult, trained_loss: float, *, stream, statistics: bool, out: Path | None, plots: bool,
             animation: bool, report: bool, save, force: bool, lines: Sequence[str] = ()) -> FitResult:
    """Print the comparison with the optimum, the metrics, ``lines`` and the statistics; write the files."""
    from .persistence import SavedModel, save_model

    data, config, history, solution, gap, metrics = (result.data, result.config, result.history, result.solution,
                                                     result.gap, result.metrics)
    weight, bias, scaler, stats = result.weight, result.bias, result.scaler, result.statistics
    _print(stream, "")
    _print(stream, format_comparison(data.feature_names, data.target_names,
                                     {"weight": weight, "bias": bias, "loss": trained_loss},
                                     {"weight": solution.coef, "bias": solution.intercept, "loss": solution.loss}, gap))
    _print(stream, format_metrics(metrics))
    for line in lines:
        _print(stream, line)
    if statistics:
        for table in stats:
            _print(stream, "")
            _print(stream, table.summary())

    if out is not None:
        result.files["history"] = atomic_write_text(out / HISTORY_JSON, history.to_json() + "\n")
        result.files["history_csv"] = atomic_write_text(out / HISTORY_CSV, history.to_csv())
        result.files["summary"] = atomic_write_text(out / SUMMARY_JSON,
                                                    json.dumps(_json_safe(result.summary()), indent=1) + "\n")
        if plots:
            from .pictures import save_plots  # matplotlib only when plots are asked for

            result.files.update(save_plots(data, history, out, optimum_loss=solution.loss, animation=animation))
        if report:
            from .html_report import write_report

            result.files["report"] = write_report(out, result, statistics=stats)
        remove_stale(out, OUTPUT_FILES, result.files.values())
    if save is not None:
        saved = SavedModel(weight, bias, data.feature_names, data.target_names,
                           {"settings": config.to_dict(), "standardize": scaler.to_dict() if scaler else None,
                            "metrics": _json_safe(metrics), "status": history.status, "epochs_run": len(history),
                            "optimum_loss": _json_safe(solution.loss)})
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


def _json_safe(value):
    """``value`` with every inf and NaN float replaced by None: strict JSON has neither (metrics of a
    model trained on huge values can overflow)."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (float, np.floating)) and not math.isfinite(value):
        return None
    return value


def _gap(weight, bias, trained_loss: float, solution: LstsqSolution, mean_square_y: float) -> dict:
    """How far the trained model is from the optimum; ``exact_fit`` when the optimum's loss is rounding noise."""
    theta = np.concatenate([weight.ravel(), bias.ravel()])
    best = np.concatenate([np.asarray(solution.coef).ravel(), np.asarray(solution.intercept).ravel()])
    distance = float(_norms((theta - best)[:, None])[0])  # no overflow: coefficients may be near float64's range
    norm = float(_norms(best[:, None])[0])
    excess = trained_loss - solution.loss
    return {
        "trained_loss": trained_loss,
        "optimum_loss": solution.loss,
        "relative_excess_loss": excess / solution.loss if solution.loss > 0 else (0.0 if excess <= 0 else math.inf),
        "distance": distance,
        "relative_distance": distance / norm if norm > 0 else (0.0 if distance == 0 else math.inf),
        "exact_fit": solution.loss <= 1e-20 * mean_square_y,
        "unique": solution.rank == weight.shape[1] + 1,  # features plus the intercept all identified
    }


def _print(stream: TextIO | None, text: str) -> None:
    import sys

    print(text, file=stream or sys.stdout, flush=True)


def divergence_advice(X: torch.Tensor, n_targets: int, config: TrainConfig, y: torch.Tensor | None = None) -> str:
    """Why gradient descent diverged on this data and which learning rate avoids it."""
    big = max(float(X.abs().max()) if X.numel() else 0.0, float(y.abs().max()) if y is not None and y.numel() else 0.0)
    if big > math.sqrt(torch.finfo(getattr(torch, config.dtype)).max):  # no learning rate helps then
        also = ", or --dtype float64" if config.dtype != "float64" and big <= 1e150 else ""
        return (f"The data reach {big:.3g}, so the squared errors overflow {config.dtype} from the start, whatever "
                f"the learning rate; use --standardize{also}, or rescale those columns")
    if config.optimizer != "sgd":
        return _advice(math.nan, config)
    return _advice(max_stable_lr(X, n_targets, momentum=config.momentum, nesterov=config.nesterov,
                                 weight_decay=config.weight_decay), config)


def _lr_advice(objective: GramObjective, config: TrainConfig) -> str:
    """:func:`divergence_advice` from the R factor alone: the Hessian is ``2/(Σw·m) · R[:, :d+1]ᵀ R[:, :d+1]``."""
    R = objective.R[:, :objective.n_features + 1]
    largest = np.linalg.eigvalsh(2.0 / (objective.sum_weights * objective.n_targets) * (R.T @ R))[-1]
    factor = 2.0 * (1.0 + config.momentum) / ((1.0 + 2.0 * config.momentum) if config.nesterov else 1.0)
    return _advice(factor / (largest + config.weight_decay), config)


def _advice(bound: float, config: TrainConfig) -> str:
    if config.optimizer != "sgd":
        return f"{config.optimizer} diverged at lr {config.learning_rate:g}; lower --lr (e.g. by 10x) or use --standardize"
    exponent = math.floor(math.log10(0.9 * bound))
    suggestion = math.floor(0.9 * bound / 10**exponent) * 10**exponent
    return (f"On this data gradient descent diverges for learning rates above {bound:.3g} "
            f"(2 / largest eigenvalue of the loss's Hessian); use a smaller one, e.g. --lr {suggestion:.1g}, "
            f"or --standardize")
