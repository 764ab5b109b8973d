"""The loss per epoch, as a picture: the training (and held-out) loss, the least-squares optimum and the
excess over it; losses that are not finite are left out and where training diverged is marked, and a run
of one epoch (or none) gets a readable axis around its point and a line saying what happened."""

from __future__ import annotations

import math
import textwrap
from typing import TYPE_CHECKING

from .canvas import set_margins, single
from .history import History

if TYPE_CHECKING:
    from matplotlib.figure import Figure

SHORT_RUN = 10  # epochs up to which the epoch axis has whole-number ticks only


def loss_figure(history: History, optimum_loss: float | None = None) -> Figure:
    """Loss per epoch; the held-out loss when there is one; the least-squares optimum as a dashed line.

    Losses that are not finite are skipped; a diverged run (``history.status``) is marked at the
    epoch where it diverged. With one finite loss or none, the axes are set around that point and
    a text in them says why (``history.message``) or that the run had one epoch. Below, with an
    optimum: how far above it the loss still is, on a log axis.
    """
    fig, ax = single()
    epochs, losses = _finite(history.epochs, history.losses)
    ax.plot(epochs, losses, marker="o" if len(losses) == 1 else ".", label="training loss")
    values = list(losses)
    if any(v is not None for v in history.val_losses):
        val_epochs, val = _finite(history.epochs, history.val_losses)
        ax.plot(val_epochs, val, marker="o" if len(val) == 1 else ".", label="validation loss")
        values += val
    if optimum_loss is not None and math.isfinite(optimum_loss):
        ax.axhline(optimum_loss, color="gray", linestyle="--", label=f"least-squares optimum {optimum_loss:.6g}")
        values.append(optimum_loss)
    diverged_at = _diverged_at(history)
    if diverged_at is not None:
        ax.axvline(diverged_at, color="tab:red", linestyle=":", label=f"diverged at epoch {diverged_at}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("MSE loss")
    positive = [v for v in values if v > 0]
    if positive and max(positive) / min(positive) > 100:
        ax.set_yscale("log")  # a plain axis hides everything after the first few epochs
        ax.set_ylabel("MSE loss (log scale)")
    ax.set_title("Loss")
    if len(losses) <= 1:
        _around_one_point(ax, history, epochs, values, diverged_at)
    elif len(history) <= SHORT_RUN or (diverged_at is not None and diverged_at <= SHORT_RUN):
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if len(ax.get_lines()) > 1:
        ax.legend()
    excess = [loss - optimum_loss for loss in losses] if optimum_loss is not None else []
    if any(e > 0 for e in excess):
        _excess_panel(fig, ax, epochs, excess)
    return fig


def _finite(epochs: list[int], values: list) -> tuple[list[int], list[float]]:
    """The epochs whose value is a finite number, and those values."""
    kept = [(e, v) for e, v in zip(epochs, values) if v is not None and math.isfinite(v)]
    return [e for e, _ in kept], [v for _, v in kept]


def _diverged_at(history: History) -> int | None:
    """The first epoch whose loss is not finite; for a run stopped as diverged with every recorded loss
    finite (the guard stops before recording), the epoch after the last recorded one; else None."""
    for record in history.records:
        if not math.isfinite(record.loss):
            return record.epoch
    if history.diverged:
        return history.records[-1].epoch + 1 if history.records else 1
    return None


def _around_one_point(ax, history: History, epochs: list[int], values: list[float], diverged_at) -> None:
    """Limits that show one loss (or none) with room around it, and a text saying what happened."""
    from matplotlib.ticker import MaxNLocator

    first = epochs[0] if epochs else 1
    last = max(first, diverged_at or first)
    ax.set_xlim(first - 1, last + 1)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if values and max(values) == min(values):  # one level: matplotlib would span ±4% of it
        v = values[0]
        ax.set_ylim(*((0.0, 2 * v) if v > 0 else (2 * v, 0.0) if v < 0 else (0.0, 1.0)))
    if diverged_at is not None:
        reason = history.message.split(";")[0].strip()  # "the loss became inf at epoch 2", from the guard
        text = f"training diverged: {reason}" if reason else f"diverged at epoch {diverged_at}: no later loss is finite"
    elif epochs:
        text = f"1 epoch: loss {values[0]:.6g}"
    else:
        text = "no epochs run" if not history.records else "no finite loss"
    ax.text(0.5, 0.8, textwrap.fill(text, 56), transform=ax.transAxes, ha="center", va="center",
            bbox={"boxstyle": "round", "facecolor": "white", "edgecolor": "lightgray"})


def _excess_panel(fig: Figure, ax, epochs: list[int], excess: list[float]) -> None:
    """Below the loss: how far above the optimum it still is, on a log axis, where a plateau shows."""
    fig.set_size_inches(6.4, 7.2)
    set_margins(fig, hspace=0.35)  # between the panels: the tick labels above, the title below
    gs = fig.add_gridspec(3, 1)
    ax.set_subplotspec(gs[:2, 0])
    ax.set_xlabel("")
    below = fig.add_subplot(gs[2, 0], sharex=ax)
    shown = [(e, v) for e, v in zip(epochs, excess) if v > 0]
    below.plot([e for e, _ in shown], [v for _, v in shown], marker="o" if len(shown) == 1 else ".",
               color="tab:red")
    below.set_yscale("log")
    below.set_xlabel("epoch")
    below.set_ylabel("loss − optimum")
    last = (f"{excess[-1]:.4g} at epoch {epochs[-1]}" if excess[-1] > 0
            else f"at the optimum by epoch {epochs[-1]} (to the training precision)")
    below.set_title(f"Excess over the optimum: {last}", fontsize="medium")
