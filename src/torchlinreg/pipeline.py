"""One fit from start to end: model, training with the report, history and plots on disk."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from .config import TrainConfig
from .data import Dataset
from .diagnostics import max_stable_lr
from .history import History
from .model import LinearModel, build_model
from .outputs import atomic_write_text, prepare_output_dir
from .report import PrintReport
from .train import train

HISTORY_FILE = "history.json"


@dataclass
class FitResult:
    """Everything a fit produced; ``files`` maps output names to the paths written."""

    data: Dataset
    config: TrainConfig
    model: LinearModel
    history: History
    files: dict[str, Path] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"FitResult({self.data!r}, {self.history!r}, files={sorted(self.files)})"


def run_fit(
    data: Dataset,
    config: TrainConfig = TrainConfig(),
    out_dir: str | os.PathLike | None = None,
    *,
    stream: TextIO | None = None,
    plots: bool = True,
) -> FitResult:
    """Build the model, train it while printing the tutorial's report, and save the results.

    The report goes to ``stream`` (standard output by default). With ``out_dir`` the
    history (``history.json``) and, with ``plots``, the four plots are written there;
    the folder is checked before training starts, so a bad folder fails fast.
    """
    out = prepare_output_dir(out_dir) if out_dir is not None else None
    model = build_model(data.n_features, data.n_targets, seed=config.seed)
    history = train(model, data.X, data.y, config, callbacks=[PrintReport(stream)])
    if history.diverged:
        history.message += ". " + divergence_advice(data, config)
    result = FitResult(data, config, model, history)
    if out is not None:
        result.files["history"] = atomic_write_text(out / HISTORY_FILE, history.to_json() + "\n")
        if plots:
            from .plots import save_plots  # matplotlib only when plots are asked for

            result.files.update(save_plots(data, history, out))
    return result


def divergence_advice(data: Dataset, config: TrainConfig) -> str:
    """Why gradient descent diverged on this data and which learning rate avoids it."""
    bound = max_stable_lr(data.X, data.n_targets, momentum=config.momentum,
                          nesterov=config.nesterov, weight_decay=config.weight_decay)
    exponent = math.floor(math.log10(0.9 * bound))
    suggestion = math.floor(0.9 * bound / 10**exponent) * 10**exponent
    return (f"On this data gradient descent diverges for learning rates above {bound:.3g} "
            f"(2 / largest eigenvalue of the loss's Hessian); use a smaller one, e.g. --lr {suggestion:.1g}")
