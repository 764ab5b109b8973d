"""A fit's results made public: the printed report, the files of the output folder, the model files.

:class:`Publish` holds where and how a run reports (``out_dir``, ``save``, ``plots``, ...). It
checks the outputs before any data is read (:meth:`Publish.check`), gives the training loop
its reporting callbacks (:meth:`Publish.reporters`: the epoch lines, the progress bar,
TensorBoard) and, after training, prints the comparison with the optimum and writes the
history, summary, plots, report and model files (:meth:`Publish.write`). Nothing here
computes a figure; everything comes from the :class:`torchlinreg.fitting.FitResult`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TextIO

import numpy as np

from .callbacks import Callback
from .errors import ConfigError, OutputError, render
from .locks import hold
from .outputs import (CHECKPOINT_DIR, atomic_write_text, check_output_dir, check_path, check_writable_path,
                      commit_generation, generation_record, new_generation, prepare_output_dir, reason, recover)
from .report import PrintReport, format_comparison, format_metrics, format_statistics

HISTORY_JSON, HISTORY_CSV, SUMMARY_JSON = "history.json", "history.csv", "summary.json"
# Every file a run may write into its output folder (plots.PLOT_FILES, the GIF, the report and the
# checkpoint folder too).
OUTPUT_FILES = (HISTORY_JSON, HISTORY_CSV, SUMMARY_JSON, "data.png", "initial_model.png", "loss.png",
                "current_model.png", "residuals.png", "predicted_vs_actual.png", "qq.png",
                "residuals_vs_features.png", "fit.gif", "report.html", CHECKPOINT_DIR)


@dataclass
class Publish:
    """Where and how a fit reports.

    ``out_dir``: the folder for the history (JSON and CSV), the summary and, with ``plots``,
    the plots (``animation``: also ``fit.gif``; ``report``: also ``report.html``). An
    ``out_dir`` of an earlier run is replaced whole (files this run does not write are
    removed); any other folder holding files of the same names needs ``force``, and so do
    existing model files at ``save``. ``stream``: where the report is printed (stdout);
    ``log_every`` thins the epoch lines (0: none); ``quiet`` prints nothing at all (the files are still written);
    ``progress`` True/False forces the bar on or off (None: when stderr is a terminal and the
    run takes a moment); ``tensorboard``: a folder for TensorBoard logs; ``callbacks`` run too.
    ``flags``: the settings the notes and advice name, written as the command's flags
    (:func:`torchlinreg.errors.render`); None writes them as the library's keywords.
    ``print_statistics``: print the statistics tables when the fit computes them (``statistics``).
    """

    out_dir: str | os.PathLike | None = None
    save: str | os.PathLike | None = None
    force: bool = False
    plots: bool = True
    animation: bool = False
    report: bool = False
    stream: TextIO | None = None
    log_every: int = 1
    quiet: bool = False
    progress: bool | None = None
    tensorboard: str | os.PathLike | None = None
    callbacks: Sequence[Callback] = ()
    flags: dict[str, str] | None = None
    print_statistics: bool = True
    out: Path | None = field(default=None, init=False, repr=False)  # the folder, once prepared
    bar: object = field(default=None, init=False, repr=False)  # the progress bar while training, unless quiet
    _held: contextlib.ExitStack | None = field(default=None, init=False, repr=False)  # the folder's lock, inside holding()

    @classmethod
    def field_names(cls) -> frozenset[str]:
        return frozenset(f.name for f in fields(cls) if f.init)

    def check(self, *, claim: bool = False) -> None:
        """Refuse outputs that could not be written, without creating anything (no data is read yet).

        ``claim`` (resuming): ``out_dir`` is this run's, as ``force`` would make it; model files still
        need ``force``.
        """
        from .persistence import model_paths

        if self.report and self.out_dir is None:
            raise ConfigError("report.html needs an output folder; pass out_dir")
        for path in model_paths(self.save) if self.save is not None else ():
            check_writable_path(path)
            if path.exists() and not self.force:
                raise OutputError(f"{str(path)!r} exists; pass {{force=True}} to replace it or choose another {{save}} path")
        if self.out_dir is not None:
            check_output_dir(self.out_dir, owned=OUTPUT_FILES, force=self.force or claim)

    @contextlib.contextmanager
    def holding(self) -> Iterator[Publish]:
        """While inside, the output folder :meth:`prepare` makes stays locked (:mod:`torchlinreg.locks`): from
        its preparation to the last file written, no other run writes there."""
        with contextlib.ExitStack() as held:
            self._held = held
            try:
                yield self
            finally:
                self._held = None

    def prepare(self, *, claim: bool = False) -> Path | None:
        """Make (or claim) the output folder, once the data has been read without error; inside
        :meth:`holding`, lock it for the rest of the run."""
        if self.out_dir is not None:
            force = self.force or claim
            self.out = self._held.enter_context(claim_output_dir(self.out_dir, owned=OUTPUT_FILES, force=force)) \
                if self._held is not None else prepare_output_dir(self.out_dir, owned=OUTPUT_FILES, force=force)
        return self.out

    def text(self, template: str) -> str:
        """A note or advice whose placeholders name settings, written for this run's reader (``flags``)."""
        return render(template, self.flags)

    def reporters(self, notes: list[str], first: Sequence[str] = ()) -> list[Callback]:
        """The training loop's reporting callbacks: progress bar, epoch lines (``first`` before everything,
        ``notes`` after the initial parameters), TensorBoard."""
        from .progress import ProgressBar

        extra = []
        if self.tensorboard is not None:
            from .tensorboard import TensorBoardLogger

            extra.append(TensorBoardLogger(self.tensorboard))
        if self.quiet:
            return [*extra, *self.callbacks]
        self.bar = ProgressBar(force=self.progress)
        printer = PrintReport(self.stream, [self.text(n) for n in notes], every=self.log_every, write=self.bar.write,
                              first=[self.text(line) for line in first])
        return [self.bar, printer, *extra, *self.callbacks]

    def write(self, result, trained_loss: float, lines: Sequence[str] = (), *, statistics: bool = False) -> None:
        """Print the comparison with the optimum, the metrics, ``lines`` and (``statistics``) the statistics
        tables; write the files."""
        solution = result.solution
        self.print("")
        self.print(format_comparison(result.data.feature_names, result.data.target_names,
                                     {"weight": result.weight, "bias": result.bias, "loss": trained_loss},
                                     {"weight": solution.coef, "bias": solution.intercept, "loss": solution.loss},
                                     result.gap, fit_intercept=result.fit_intercept))
        self.print(format_metrics(result.metrics))
        for line in lines:
            self.print(line)
        if statistics and self.print_statistics:
            self.print("")
            self.print(format_statistics(result.statistics))
        if self.out is not None:
            self._write_folder(result)
        if self.save is not None:
            self._save_model(result)

    def _write_folder(self, result) -> None:
        """The run's files as one generation (:func:`torchlinreg.outputs.commit_generation`): written into a
        staging folder, ``summary.json`` last with the SHA-256 of every other file, then moved into place."""
        out, history, files = self.out, result.history, {}
        stage = new_generation(out)
        try:
            files["history"] = atomic_write_text(stage / HISTORY_JSON, history.to_json() + "\n")
            files["history_csv"] = atomic_write_text(stage / HISTORY_CSV, history.to_csv())
            if self.plots:
                from .pictures import save_plots  # matplotlib only when plots are asked for

                files.update(save_plots(result.data, history, stage, optimum_loss=result.solution.loss,
                                        animation=self.animation))
            if self.report:
                from .html_report import write_report

                files["report"] = write_report(stage, result, statistics=result.statistics, files=files, flags=self.flags)
            summary = {**json_safe(result.to_dict()), "run": generation_record(stage)}
            files["summary"] = atomic_write_text(stage / SUMMARY_JSON, json.dumps(summary, indent=1) + "\n")
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)  # the previous generation stays whole
            raise
        moved = commit_generation(out, stage, OUTPUT_FILES)
        for key in ("history", "history_csv", "summary", *files):  # the order the command names them in
            result.files[key] = moved[Path(files[key]).name]

    def _save_model(self, result) -> None:
        from .persistence import save_model

        result.files["model"], result.files["model_json"] = save_model(self.save, result, force=self.force)

    def print(self, text: str) -> None:
        if not self.quiet:
            print(text, file=self.stream or sys.stdout, flush=True)


@contextlib.contextmanager
def claim_output_dir(path: str | os.PathLike, *, owned: tuple[str, ...] = (), force: bool = False) -> Iterator[Path]:
    """:func:`prepare_output_dir` under the folder's lock, held while inside (one writer at a time).

    A second run into the same folder is refused (:class:`~torchlinreg.errors.OutputError`
    naming the holder's pid and start time); a lock left by a killed run is taken over, and
    what that run left half-done is settled first (:func:`recover`).
    """
    out = Path(path)
    check_path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot make output folder {str(out)!r} ({reason(exc)}); "
                          "pass {out_dir} with a folder you can write to") from None
    with hold(out, what=f"the output folder {str(out)!r}", fix="wait for it to finish, or choose another {out_dir}"):
        recover(out, owned)
        yield prepare_output_dir(out, owned=owned, force=force)


def json_safe(value):
    """``value`` with every inf and NaN float replaced by None: strict JSON has neither (metrics of a
    model trained on huge values can overflow)."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (float, np.floating)) and not math.isfinite(value):
        return None
    return value
