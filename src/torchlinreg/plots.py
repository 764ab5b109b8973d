"""The tutorial's four plots and two of the final model's errors, drawn from the data and the
history (never by training).

Figures are built with ``matplotlib.figure.Figure`` and the Agg canvas, so no display and
no global pyplot state are involved. Their margins are fixed (``MARGINS``) rather than left
to a layout engine, which measures every text by drawing each figure once more than it is
saved (about a third of the plotting time); a figure whose labels turn out too large for
them is saved with the tight layout instead (:func:`save_figure`).

matplotlib is imported by the first figure, not by this module, and the figures need only
NumPy arrays (a :class:`~torchlinreg.data.Dataset` or a :class:`PlotData`): so
:func:`torchlinreg.pictures.save_plots` can hand the drawing to the command's plotting process
(:mod:`torchlinreg.plot_process`) without loading matplotlib or PyTorch there. This module
imports neither of those two: they are built on it.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .history import History, Params
from .outputs import atomic_write_bytes
from .shapes import Table, dimension, predict

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PLOT_FILES = {  # plot name -> file name in the output folder
    "data": "data.png",
    "initial": "initial_model.png",
    "loss": "loss.png",
    "current": "current_model.png",
    "residuals": "residuals.png",
    "predicted": "predicted_vs_actual.png",
}
ANIMATION_FILE = "fit.gif"  # written by pictures.save_plots(..., animation=True) under the name "animation"


# Inches from each edge of the figure to the axes: room for the tutorial's tick labels, axis
# labels and title (what the tight layout gives them, plus a little).
MARGINS = {"left": 0.85, "right": 0.2, "bottom": 0.6, "top": 0.4}
EDGE_PX = 3  # a title or label closer than this to the figure's edge is clipped or cramped


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


def _figure() -> tuple[Figure, object]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.8), dpi=100)
    FigureCanvasAgg(fig)  # saves the PNG; keeps the renderer of the last draw for save_figure's check
    _set_margins(fig)
    return fig, fig.add_subplot()


def _set_margins(fig: Figure, hspace: float | None = None) -> None:
    """``MARGINS`` as fractions of this figure's size (the loss figure grows taller)."""
    width, height = fig.get_size_inches()
    fig.subplots_adjust(left=MARGINS["left"] / width, right=1 - MARGINS["right"] / width,
                        bottom=MARGINS["bottom"] / height, top=1 - MARGINS["top"] / height, hspace=hspace)


def _scatter(ax, data: Table) -> None:
    x = np.asarray(data.X[:, 0])
    for j, name in enumerate(data.target_names):
        ax.scatter(x, np.asarray(data.y[:, j]), s=18, label=name if data.n_targets > 1 else "data")
    ax.set_xlabel(data.feature_names[0])
    ax.set_ylabel(data.target_names[0] if data.n_targets == 1 else "targets")


def _line(ax, data: Table, params: Params, label: str) -> None:
    """The model's line from the smallest to the largest x, as the tutorial draws it."""
    feature = np.asarray(data.X[:, 0])
    x1 = [feature.min().item(), feature.max().item()]
    for j in range(data.n_targets):
        w, b = params["linear.weight"][j][0], params["linear.bias"][j]
        ax.plot(x1, [x * w + b for x in x1], color="red", label=f"{label}: y = {w:.4f}x + {b:.4f}")
    ax.legend()


def data_figure(data: Table) -> Figure:
    fig, ax = _figure()
    _scatter(ax, data)
    ax.set_title("Data")
    return fig


def model_figure(data: Table, params: Params, title: str) -> Figure:
    """The data with the line a model with ``params`` draws, titled ``Initial Model`` or ``Current Model``."""
    fig, ax = _figure()
    _scatter(ax, data)
    _line(ax, data, params, "model")
    ax.set_title(title)
    return fig


def loss_figure(history: History, optimum_loss: float | None = None) -> Figure:
    """Loss per epoch; the held-out loss when there is one; the least-squares optimum as a dashed line."""
    fig, ax = _figure()
    ax.plot(history.epochs, history.losses, marker=".", label="training loss")
    values = list(history.losses)
    if any(v is not None for v in history.val_losses):
        ax.plot(history.epochs, history.val_losses, marker=".", label="validation loss")
        values += [v for v in history.val_losses if v is not None]
    if optimum_loss is not None:
        ax.axhline(optimum_loss, color="gray", linestyle="--", label=f"least-squares optimum {optimum_loss:.6g}")
        values.append(optimum_loss)
    ax.set_xlabel("epoch")
    ax.set_ylabel("MSE loss")
    if len(ax.get_lines()) > 1:
        ax.legend()
    losses = [v for v in values if v > 0]
    if losses and max(losses) / min(losses) > 100:
        ax.set_yscale("log")  # a plain axis hides everything after the first few epochs
        ax.set_ylabel("MSE loss (log scale)")
    ax.set_title("Loss")
    excess = [loss - optimum_loss for loss in history.losses] if optimum_loss is not None else []
    if any(e > 0 for e in excess):
        _excess_panel(fig, ax, history.epochs, excess)
    return fig


def _excess_panel(fig: Figure, ax, epochs: list[int], excess: list[float]) -> None:
    """Below the loss: how far above the optimum it still is, on a log axis, where a plateau shows."""
    fig.set_size_inches(6.4, 7.2)
    _set_margins(fig, hspace=0.35)  # between the panels: the tick labels above, the title below
    gs = fig.add_gridspec(3, 1)
    ax.set_subplotspec(gs[:2, 0])
    ax.set_xlabel("")
    below = fig.add_subplot(gs[2, 0], sharex=ax)
    shown = [(e, v) for e, v in zip(epochs, excess) if v > 0]
    below.plot([e for e, _ in shown], [v for _, v in shown], marker=".", color="tab:red")
    below.set_yscale("log")
    below.set_xlabel("epoch")
    below.set_ylabel("loss − optimum")
    last = (f"{excess[-1]:.4g} at epoch {epochs[-1]}" if excess[-1] > 0
            else f"at the optimum by epoch {epochs[-1]} (to the training precision)")
    below.set_title(f"Excess over the optimum: {last}", fontsize="medium")


def _targets(ax, data: Table, x: np.ndarray, y: np.ndarray) -> None:
    """One scatter per target (one colour each), labelled when there are several."""
    for j, name in enumerate(data.target_names):
        ax.scatter(x[:, j], y[:, j], s=14, alpha=0.8, color=f"C{j}", label=name)
    if data.n_targets > 1:
        ax.legend()


def residuals_figure(data: Table, params: Params) -> Figure:
    """Residuals ``y - ŷ`` against the predictions ``ŷ`` of a model with ``params``, with the zero line.

    Any number of features; one colour per target. A good linear fit leaves a band around
    zero with no trend and no funnel.
    """
    fig, ax = _figure()
    y_hat = predict(np.asarray(data.X, dtype=np.float64), params)  # (n, m)
    ax.axhline(0.0, color="gray", linewidth=1, zorder=0)
    _targets(ax, data, y_hat, np.asarray(data.y, dtype=np.float64) - y_hat)
    ax.set_xlabel("predicted" if data.n_targets > 1 else f"predicted {data.target_names[0]}")
    ax.set_ylabel("residual (actual − predicted)")
    ax.set_title("Residuals")
    return fig


def predicted_figure(data: Table, params: Params) -> Figure:
    """Predictions of a model with ``params`` against the actual targets, with the diagonal ``ŷ = y``.

    Any number of features; one colour per target. Points on the diagonal are predicted exactly.
    """
    fig, ax = _figure()
    y = np.asarray(data.y, dtype=np.float64)  # (n, m)
    y_hat = predict(np.asarray(data.X, dtype=np.float64), params)
    both = np.concatenate([y.ravel(), y_hat.ravel()])
    both = both[np.isfinite(both)]
    lo, hi = (both.min(), both.max()) if both.size else (0.0, 1.0)
    ax.plot([lo, hi], [lo, hi], color="gray", linestyle="--", linewidth=1, zorder=0)
    _targets(ax, data, y, y_hat)
    ax.set_xlabel("actual" if data.n_targets > 1 else f"actual {data.target_names[0]}")
    ax.set_ylabel("predicted" if data.n_targets > 1 else f"predicted {data.target_names[0]}")
    ax.set_title("Predicted vs actual")
    return fig


def save_figure(fig: Figure, path: str | os.PathLike) -> Path:
    """Write ``fig`` as a PNG file, atomically; drawn again with the tight layout if a label fell off its edge."""
    if not hasattr(fig.canvas, "get_renderer"):  # a figure made elsewhere: give it the Agg canvas ours have
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        FigureCanvasAgg(fig)
    png = _png(fig)
    if fig.get_layout_engine() is None and _clipped(fig):
        fig.set_layout_engine("tight")  # long tick labels (large or many-digit values): measure, then draw
        png = _png(fig)
    return atomic_write_bytes(path, png)


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _clipped(fig: Figure) -> bool:
    """Whether a title, axis label or offset text of the last draw lies within ``EDGE_PX`` of the edge or beyond.

    Each axis label is drawn beyond its tick labels and each title above the axes' top
    texts, so these few boxes tell whether the margins held everything.
    """
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        for text in (ax.title, ax.xaxis.label, ax.yaxis.label, ax.xaxis.offsetText, ax.yaxis.offsetText):
            if not (text.get_visible() and text.get_text()):
                continue
            box = text.get_window_extent(renderer)
            if (box.x0 < EDGE_PX or box.y0 < EDGE_PX or box.x1 > renderer.width - EDGE_PX
                    or box.y1 > renderer.height - EDGE_PX):
                return True
    return False


def save_pngs(data: Table, history: History, out_dir: Path,
              optimum_loss: float | None = None) -> dict[str, Path]:
    """The PNG files of :func:`torchlinreg.pictures.save_plots`, drawn in this process; ``out_dir`` is made
    when missing (a folder that cannot be made is named by the first file that cannot be written)."""
    try:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
    except OSError:
        pass  # atomic_write_bytes below says what stops the write
    figures = {"loss": loss_figure(history, optimum_loss)}
    if data.n_features == 1:
        figures["data"] = data_figure(data)
        figures["initial"] = model_figure(data, history.initial_params, "Initial Model")
        figures["current"] = model_figure(data, history.final_params, "Current Model")
    figures["residuals"] = residuals_figure(data, history.final_params)
    figures["predicted"] = predicted_figure(data, history.final_params)
    return {name: save_figure(figures[name], out_dir / PLOT_FILES[name]) for name in PLOT_FILES if name in figures}
