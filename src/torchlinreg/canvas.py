"""The canvas every picture is drawn on: a ``matplotlib.figure.Figure`` on the Agg canvas (no display, no
pyplot state), with fixed margins, holding one panel or a grid of them.

The margins are fixed in inches (``MARGINS``, and ``GAPS`` between panels) rather than left to a layout
engine, which measures every text by drawing each figure once more than it is saved (about a third of
the plotting time); :func:`torchlinreg.plots.save_figure` falls back on the tight layout when a label
turns out too large for them (:func:`clipped`). matplotlib is imported by the first figure, not by this
module, which imports nothing of torchlinreg: the modules that draw build on it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure

SIZE = (6.4, 4.8)  # inches, one panel: matplotlib's default figure, the tutorial's pictures
# Inches from each edge of the figure to the axes: room for the tutorial's tick labels, axis
# labels and title (what the tight layout gives them, plus a little).
MARGINS = {"left": 0.85, "right": 0.2, "bottom": 0.6, "top": 0.4}
PANEL = (3.9, 2.9)  # inches of one panel's axes in a grid of several
GAPS = {"w": 1.05, "h": 1.0}  # inches between panels: the next one's tick and axis labels; the x label and the title
SUPTITLE = 0.35  # inches above the panels' own titles for the figure's title
EDGE_PX = 3  # a title or label closer than this to the figure's edge is clipped or cramped


def new_figure(size: tuple[float, float] = SIZE) -> Figure:
    """An empty figure on the Agg canvas (which saves the PNG and keeps the renderer of the last draw)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=100)
    FigureCanvasAgg(fig)
    return fig


def single() -> tuple[Figure, object]:
    """The tutorial's figure: 6.4 x 4.8 inches, one panel within ``MARGINS``."""
    fig = new_figure()
    set_margins(fig)
    return fig, fig.add_subplot()


def set_margins(fig: Figure, hspace: float | None = None) -> None:
    """``MARGINS`` as fractions of this figure's size (the loss figure grows taller)."""
    width, height = fig.get_size_inches()
    fig.subplots_adjust(left=MARGINS["left"] / width, right=1 - MARGINS["right"] / width,
                        bottom=MARGINS["bottom"] / height, top=1 - MARGINS["top"] / height, hspace=hspace)


def grid(rows: int, cols: int, title: str, *, sharey_rows: bool = False) -> tuple[Figure, list[list]]:
    """A figure of ``rows`` x ``cols`` panels of ``PANEL`` inches each, titled ``title`` above them all.

    One panel is :func:`single`'s figure with ``title`` on its axes (the tutorial's look); several
    get the figure's title above their own. ``sharey_rows``: the panels of a row share their y axis.
    Returns the figure and its axes as a list of rows.
    """
    if rows * cols == 1:
        fig, ax = single()
        ax.set_title(title)
        return fig, [[ax]]
    top = MARGINS["top"] + SUPTITLE
    width = MARGINS["left"] + cols * PANEL[0] + (cols - 1) * GAPS["w"] + MARGINS["right"]
    height = MARGINS["bottom"] + rows * PANEL[1] + (rows - 1) * GAPS["h"] + top
    fig = new_figure((width, height))
    fig.subplots_adjust(left=MARGINS["left"] / width, right=1 - MARGINS["right"] / width,
                        bottom=MARGINS["bottom"] / height, top=1 - top / height,
                        wspace=GAPS["w"] / PANEL[0], hspace=GAPS["h"] / PANEL[1])
    axes = fig.subplots(rows, cols, squeeze=False, sharey="row" if sharey_rows else False)
    fig.suptitle(title, y=1 - (MARGINS["top"] / 2) / height, va="center")
    return fig, [list(row) for row in axes]


def panels(n: int, title: str) -> tuple[Figure, list]:
    """``n`` panels in rows of up to three (two by two for four), unused places of the last row removed."""
    cols = n if n <= 3 else 2 if n == 4 else 3
    rows = -(-n // cols)
    fig, axes = grid(rows, cols, title)
    flat = [ax for row in axes for ax in row]
    for ax in flat[n:]:
        fig.delaxes(ax)
    return fig, flat[:n]


def clipped(fig: Figure) -> bool:
    """Whether the last draw left a title, axis label or offset text within ``EDGE_PX`` of the figure's edge or
    beyond, or on another panel.

    Each axis label is drawn beyond its tick labels and each title above the axes' top texts,
    so these few boxes tell whether the margins and the gaps between panels held everything.
    """
    renderer = fig.canvas.get_renderer()
    frames = [ax.get_window_extent(renderer) for ax in fig.axes] if len(fig.axes) > 1 else []
    texts = [(None, fig._suptitle)] if fig._suptitle is not None else []
    for i, ax in enumerate(fig.axes):
        texts += [(i, t) for t in (ax.title, ax.xaxis.label, ax.yaxis.label, ax.xaxis.offsetText, ax.yaxis.offsetText)]
    for i, text in texts:
        if not (text.get_visible() and text.get_text()):
            continue
        box = text.get_window_extent(renderer)
        if (box.x0 < EDGE_PX or box.y0 < EDGE_PX or box.x1 > renderer.width - EDGE_PX
                or box.y1 > renderer.height - EDGE_PX):
            return True
        if any(j != i and box.overlaps(frame) for j, frame in enumerate(frames)):
            return True
    return False


MAX_PANELS = 6  # targets drawn, one panel each; wider outputs show their first ones and say so


def target_panels(target_names, title: str) -> tuple[Figure, list[tuple[int, object]]]:
    """One panel per target (the first ``MAX_PANELS``, the title saying so), each titled by its target's name
    when there are several; one target is the tutorial's single panel titled ``title``.

    Returns the figure and ``(target index, axes)`` pairs.
    """
    m = len(target_names)
    shown = min(m, MAX_PANELS)
    fig, axes = panels(shown, title + (f" (the first {shown} of {m} targets)" if shown < m else ""))
    if m > 1:
        for j, ax in enumerate(axes):
            ax.set_title(target_names[j])
    return fig, list(enumerate(axes))
