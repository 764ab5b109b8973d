"""The picture files of a run: the PNG plots of :mod:`torchlinreg.plots`, drawn by the command's
plotting process when it has one (:mod:`torchlinreg.plot_process`, which sets :data:`draw_elsewhere`
while it waits), and the animation of :mod:`torchlinreg.animation`. The modules that draw import
none of this one.
"""

from __future__ import annotations

import os
from pathlib import Path
from collections.abc import Callable
from typing import TYPE_CHECKING

from .shapes import Table
from .plots import ANIMATION_FILE, PLOT_FILES, PlotData, save_pngs

if TYPE_CHECKING:
    from .history import History

__all__ = ["ANIMATION_FILE", "PLOT_FILES", "save_plots"]

# ``draw(data, history, out_dir, optimum_loss)``: the PNG files' paths by name, drawn by another process, or
# None when it could not (they are then drawn here). Set by torchlinreg.plot_process while its process waits.
draw_elsewhere: Callable[..., dict[str, Path] | None] | None = None


def save_plots(data: Table, history: History, out_dir: str | os.PathLike,
               optimum_loss: float | None = None, *, animation: bool = False) -> dict[str, Path]:
    """Write the plots into ``out_dir`` and return their paths by name (see ``PLOT_FILES``).

    The loss, residuals, predicted-vs-actual, Q-Q and residuals-against-features plots are
    written for any number of features; the tutorial's data and line plots need a model with
    one input feature. Every plot of the targets has one panel per target (``docs/plots.md``).
    With ``animation`` the fit is also written as ``fit.gif`` (name ``"animation"``), see
    :func:`torchlinreg.animation.save_animation`.

    In the ``torchlinreg`` command the PNG files are drawn by its plotting process when it
    has one (:mod:`torchlinreg.plot_process`); if that fails, they are drawn here, so any
    error is raised here as it would be without it.
    """
    out_dir = Path(out_dir)
    files = draw_elsewhere(data, history, out_dir, optimum_loss) if draw_elsewhere is not None else None
    if files is None:
        files = save_pngs(data, history, out_dir, optimum_loss)
    if animation:
        from .animation import save_animation

        files["animation"] = save_animation(data, history, out_dir / ANIMATION_FILE)
    return files
