"""The tutorial's four plots and the final model's errors, drawn from the data and the history (never by
training): one panel per target, each with its own scale.

Figures are built with ``matplotlib.figure.Figure`` and the Agg canvas (:mod:`torchlinreg.canvas`), so no
display and no global pyplot state are involved. Their margins are fixed rather than left to a layout
engine, which measures every text by drawing each figure once more than it is saved (about a third of
the plotting time); a figure whose labels turn out too large for them is saved with the tight layout
instead (:func:`save_figure`).

matplotlib is imported by the first figure, not by this module, and the figures need only
NumPy arrays (a :class:`~torchlinreg.data.Dataset` or a :class:`PlotData`): so
:func:`torchlinreg.pictures.save_plots` can hand the drawing to the command's plotting process
(:mod:`torchlinreg.plot_process`) without loading matplotlib or PyTorch there. This module
imports neither of those two: they are built on it. The figures for a notebook, from a fit's
result or from arrays, are :mod:`torchlinreg.figures`'.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .band import LEVEL, line_band
from .canvas import EDGE_PX, MARGINS, MAX_PANELS, clipped, target_panels
from .history import History, Params
from .lossplot import loss_figure
from .outputs import atomic_write_bytes
from .residualplots import qq_figure, residuals_features_figure
from .shapes import Table, dimension, predict

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["ANIMATION_FILE", "EDGE_PX", "MARGINS", "MAX_PANELS", "PLOT_FILES", "PlotData", "data_figure",
           "loss_figure", "model_figure", "predicted_figure", "qq_figure", "residuals_features_figure",
           "residuals_figure", "save_figure", "save_pngs"]

PLOT_FILES = {  # plot name -> file name in the output folder
    "data": "data.png",
    "initial": "initial_model.png",
    "loss": "loss.png",
    "current": "current_model.png",
    "residuals": "residuals.png",
    "predicted": "predicted_vs_actual.png",
    "qq": "qq.png",
    "residuals_features": "residuals_vs_features.png",
}
ANIMATION_FILE = "fit.gif"  # written by pictures.save_plots(..., animation=True) under the name "animation"
LINE_PLOTS = ("data", "initial", "current")  # drawn over the one feature: for one-feature data only
BAND_POINTS = 50  # where the confidence band is evaluated, evenly from the smallest to the largest x


@dataclass(frozen=True)
class PlotData:
    """What the plots use of a :class:`~torchlinreg.data.Dataset`: its ``X`` (n_samples, n_features),
    ``y`` (n_samples, n_targets) and column names, with NumPy arrays for tensors (no PyTorch needed)."""

    X: np.ndarray
    y: np.ndarray
    feature_names: tuple[str, ...]
    target_names: tuple[str, ...]

    @classmethod
    def of(cls, data: Table) -> PlotData:
        return cls(np.asarray(data.X), np.asarray(data.y), tuple(data.feature_names), tuple(data.target_names))

    n_samples = dimension("X", 0)
    n_features = dimension("X", 1)
    n_targets = dimension("y", 1)


def _scatter(ax, data: Table, j: int) -> None:
    """The data of target ``j`` against the one feature."""
    ax.scatter(np.asarray(data.X[:, 0]), np.asarray(data.y[:, j]), s=18, color=f"C{j}", label="data")
    ax.set_xlabel(data.feature_names[0])
    ax.set_ylabel(data.target_names[j])


def _line(ax, data: Table, params: Params, j: int, label: str) -> None:
    """Target ``j``'s model line from the smallest to the largest x, as the tutorial draws it."""
    feature = np.asarray(data.X[:, 0])
    x1 = [feature.min().item(), feature.max().item()]
    w, b = params["linear.weight"][j][0], params["linear.bias"][j]
    ax.plot(x1, [x * w + b for x in x1], color="red", label=f"{label}: y = {w:.4f}x + {b:.4f}")


def _band(ax, data: Table, j: int) -> None:
    """The confidence band of the least-squares line of target ``j`` on the feature, from the rows drawn."""
    x = np.asarray(data.X[:, 0], dtype=np.float64)
    finite = x[np.isfinite(x)]
    if not finite.size:
        return
    at = np.linspace(finite.min(), finite.max(), BAND_POINTS)
    band = line_band(x, np.asarray(data.y[:, j], dtype=np.float64), at)
    if band is not None:
        ax.fill_between(at, band[1], band[2], color="red", alpha=0.15, linewidth=0, zorder=0,
                        label=f"{LEVEL:.0%} confidence band of the least-squares line")


def data_figure(data: Table) -> Figure:
    """The data of one feature: one panel per target (the first ``MAX_PANELS``), titled ``Data``."""
    fig, panels = target_panels(data.target_names, "Data")
    for j, ax in panels:
        _scatter(ax, data, j)
    return fig


def model_figure(data: Table, params: Params, title: str, *, band: bool = False) -> Figure:
    """The data with the line a model with ``params`` draws, titled ``Initial Model`` or ``Current Model``.

    One feature; one panel per target. With ``band``, each panel also shades the ``LEVEL`` confidence
    band of the least-squares line of the rows drawn (:func:`torchlinreg.band.line_band`).
    """
    fig, panels = target_panels(data.target_names, title)
    for j, ax in panels:
        _scatter(ax, data, j)
        if band:
            _band(ax, data, j)
        _line(ax, data, params, j, "model")
        ax.legend()
    return fig


def _errors(data: Table, params: Params) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The targets, the predictions of a model with ``params`` and the residuals, float64 (n, m) each."""
    y = np.asarray(data.y, dtype=np.float64)
    y_hat = predict(np.asarray(data.X, dtype=np.float64), params)
    with np.errstate(all="ignore"):  # a diverged model's predictions may be inf
        return y, y_hat, y - y_hat


def residuals_figure(data: Table, params: Params) -> Figure:
    """Residuals ``y - ŷ`` against the predictions ``ŷ`` of a model with ``params``, with the zero line.

    Any number of features; one panel per target. A good linear fit leaves a band around
    zero with no trend and no funnel.
    """
    fig, panels = target_panels(data.target_names, "Residuals")
    _, y_hat, residuals = _errors(data, params)
    for j, ax in panels:
        ax.axhline(0.0, color="gray", linewidth=1, zorder=0)
        ax.scatter(y_hat[:, j], residuals[:, j], s=14, alpha=0.8, color=f"C{j}")
        ax.set_xlabel(f"predicted {data.target_names[j]}")
        ax.set_ylabel("residual (actual − predicted)")
    return fig


def predicted_figure(data: Table, params: Params) -> Figure:
    """Predictions of a model with ``params`` against the actual targets, with the diagonal ``ŷ = y``.

    Any number of features; one panel per target. Points on the diagonal are predicted exactly.
    """
    fig, panels = target_panels(data.target_names, "Predicted vs actual")
    y, y_hat, _ = _errors(data, params)
    for j, ax in panels:
        both = np.concatenate([y[:, j], y_hat[:, j]])
        both = both[np.isfinite(both)]
        lo, hi = (both.min(), both.max()) if both.size else (0.0, 1.0)
        ax.plot([lo, hi], [lo, hi], color="gray", linestyle="--", linewidth=1, zorder=0)
        ax.scatter(y[:, j], y_hat[:, j], s=14, alpha=0.8, color=f"C{j}")
        ax.set_xlabel(f"actual {data.target_names[j]}")
        ax.set_ylabel(f"predicted {data.target_names[j]}")
    return fig


def save_figure(fig: Figure, path: str | os.PathLike) -> Path:
    """Write ``fig`` as a PNG file, atomically, making its folder when missing; drawn again with the tight layout
    if a label fell off its edge or onto another panel (:func:`torchlinreg.canvas.clipped`)."""
    _make_folder(Path(path).parent)
    if not hasattr(fig.canvas, "get_renderer"):  # a figure made elsewhere: give it the Agg canvas ours have
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        FigureCanvasAgg(fig)
    png = _png(fig)
    if fig.get_layout_engine() is None and clipped(fig):
        fig.set_layout_engine("tight")  # long tick labels (large or many-digit values): measure, then draw
        png = _png(fig)
    return atomic_write_bytes(path, png)


def _make_folder(folder: str | os.PathLike) -> None:
    """``folder`` and its parents, when missing; one that cannot be made is named by the write that fails."""
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
    except OSError:
        pass  # atomic_write_bytes says what stops the write


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def drawers(data: Table, history: History, optimum_loss: float | None = None) -> dict:
    """What draws each figure of ``PLOT_FILES`` for ``data`` and ``history``: name -> a function of no
    arguments returning the Figure, in that order; the data and the model lines (``LINE_PLOTS``) for
    one-feature data only. Drawn one at a time, the figures are not all held at once."""
    final = history.final_params
    draw = {"data": lambda: data_figure(data),
            "initial": lambda: model_figure(data, history.initial_params, "Initial Model"),
            "loss": lambda: loss_figure(history, optimum_loss),
            "current": lambda: model_figure(data, final, "Current Model", band=True),
            "residuals": lambda: residuals_figure(data, final),
            "predicted": lambda: predicted_figure(data, final),
            "qq": lambda: qq_figure(data, final),
            "residuals_features": lambda: residuals_features_figure(data, final)}
    return {name: draw[name] for name in PLOT_FILES if data.n_features == 1 or name not in LINE_PLOTS}


def save_pngs(data: Table, history: History, out_dir: Path,
              optimum_loss: float | None = None) -> dict[str, Path]:
    """The PNG files of :func:`torchlinreg.pictures.save_plots`, drawn in this process; ``out_dir`` is made
    when missing (a folder that cannot be made is named by the first file that cannot be written)."""
    _make_folder(out_dir)
    return {name: save_figure(draw(), Path(out_dir) / PLOT_FILES[name])
            for name, draw in drawers(data, history, optimum_loss).items()}
