"""A fit's results as one object shows them: text (``summary()``) and HTML with the plots (a notebook's view).

Every results object shows the same parts, in this order: the trained model beside the exact
least-squares optimum (per target each weight by feature name, the bias, the loss; columns
"trained", "optimum", "difference"), the gap between them, the metrics of the trained model per
split, and the statistics of the optimum (statsmodels' layout) when they were computed. The
trained model's figures and the optimum's are labelled apart everywhere: an R² among the
metrics is the trained model's, the R² of the statistics the optimum's.

:class:`View` holds those parts as plain data; :func:`text` and :func:`html` lay them out.
:class:`torchlinreg.fitting.FitResult` (``run_fit``), :class:`torchlinreg.runs.LoadedResult`
(``load_result``: a run's folder read back) and ``LinearRegression.summary()`` all make a View.
"""

from __future__ import annotations

import base64
import html as _html
import io
from collections.abc import Sequence
from dataclasses import dataclass

from .report import (MAX_TABLE_ROWS, METRICS_TITLE, STATISTICS_TITLE, comparison_rows, format_comparison,
                     format_metrics, format_statistics, gap_sentences)

COMPARISON_TITLE = "Trained model and the exact least-squares optimum (training data)"
INLINE_PLOTS = ("loss", "current", "residuals", "predicted")  # the plots a notebook shows, in this order
PNG = b"\x89PNG\r\n\x1a\n"
CAPTIONS = {"loss": "Loss per epoch, and the optimum's", "current": "The trained model and the data",
            "residuals": "Residuals of the trained model", "predicted": "Predicted (trained model) against actual"}


class Summary(str):
    """The text of a results object: a ``str`` that the prompt and a notebook show as it reads."""

    def __repr__(self) -> str:
        return str(self)


@dataclass(frozen=True)
class View:
    """What a results object shows, as plain data.

    ``trained`` and ``optimum`` hold ``weight`` (n_targets, n_features), ``bias`` (n_targets,)
    and ``loss``; ``gap`` is :func:`torchlinreg.judge.gap`'s; ``metrics`` maps a split to the
    trained model's ``{mse, rmse, mae, r2}`` (None: not computed); ``statistics`` holds the
    optimum's :class:`~torchlinreg.statistics.RegressionStatistics`, one per target (None: not
    computed); ``heading`` is the first line (what was fitted, how it ended).
    """

    feature_names: tuple[str, ...]
    target_names: tuple[str, ...]
    trained: dict
    optimum: dict
    gap: dict
    metrics: dict | None = None
    statistics: Sequence | None = None
    heading: str = ""
    fit_intercept: bool = True  # False: no bias rows (a model fitted without intercept)


def fit_heading(n_rows: int, epochs: int, optimizer: str, status: str, message: str = "") -> str:
    """The first line of a fit's results: its rows, its epochs, how training ended."""
    return f"Fit on {n_rows:,} rows: {epochs} epochs of {optimizer}, {status}" + (f" ({message})" if message else "")


def text(view: View) -> Summary:
    """The results as text: the heading, the comparison with the optimum and the gap, the trained model's
    metrics, the optimum's statistics."""
    parts = [view.heading] if view.heading else []
    parts.append(format_comparison(view.feature_names, view.target_names, view.trained, view.optimum, view.gap,
                                   fit_intercept=view.fit_intercept))
    if view.metrics:
        parts.append(format_metrics(view.metrics))
    if view.statistics:
        parts.append(format_statistics(view.statistics))
    return Summary("\n\n".join(parts))


def html(view: View, images: dict[str, bytes] | None = None) -> str:
    """The same content as :func:`text`, as HTML tables, then ``images`` (name -> PNG bytes) inline as
    base64 ``<img>``. Every name is escaped; there is no script, and nothing is loaded from elsewhere."""
    parts = [f"<p><strong>{_esc(view.heading)}</strong></p>"] if view.heading else []
    parts += [f"<h4>{_esc(COMPARISON_TITLE)}</h4>", _comparison_table(view)]
    parts += [f"<p>gap: {_esc(line)}</p>" for line in gap_sentences(view.gap)]
    if view.metrics:
        parts += [f"<h4>{_esc(METRICS_TITLE)}</h4>", _metrics_table(view.metrics)]
    if view.statistics:
        parts += [f"<h4>{_esc(STATISTICS_TITLE)}</h4>", *(s._repr_html_() for s in view.statistics)]
    if images:
        parts += ["<h4>Plots</h4>", "<div>", *(_img(name, png) for name, png in images.items()), "</div>"]
    return '<div class="torchlinreg-result">\n' + "\n".join(parts) + "\n</div>"


def _comparison_table(view: View) -> str:
    rows = comparison_rows(view.feature_names, view.target_names, view.trained, view.optimum, arrow="→",
                           fit_intercept=view.fit_intercept)
    hidden = max(0, len(rows) - MAX_TABLE_ROWS)
    rows = rows[:MAX_TABLE_ROWS] + [("loss (MSE)", view.trained["loss"], view.optimum["loss"])]
    body = [[name, _fixed(a), _fixed(b), f"{a - b:.4g}"] for name, a, b in rows]
    table = _table(["", "trained", "optimum", "difference"], body)
    return table + (f"\n<p>… {hidden} more parameters (all of them: torchlinreg solve --json, or --save)</p>"
                    if hidden else "")


def _metrics_table(metrics: dict) -> str:
    return _table(["rows", "MSE", "RMSE", "MAE", "R²"],
                  [[split, *(f"{m[k]:.6g}" for k in ("mse", "rmse", "mae", "r2"))] for split, m in metrics.items()])


def _table(header: list[str], rows: list[list[str]]) -> str:
    """An HTML table of escaped text: the first column names the row."""
    head = "<tr>" + "".join(f"<th>{_esc(h)}</th>" for h in header) + "</tr>"
    body = ["<tr><th>" + _esc(row[0]) + "</th>" + "".join(f"<td>{_esc(c)}</td>" for c in row[1:]) + "</tr>"
            for row in rows]
    return "<table>\n" + head + "\n" + "\n".join(body) + "\n</table>"


def _img(name: str, png: bytes) -> str:
    caption = CAPTIONS.get(name, name)
    uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    return (f'<figure style="display:inline-block;margin:4px"><img src="{uri}" alt="{_esc(caption)}" '
            f'style="max-width:480px"><figcaption>{_esc(caption)}</figcaption></figure>')


def _fixed(value: float) -> str:
    """8 decimals, as the printed comparison; exponent notation for huge values."""
    value = float(value)
    return f"{value:.8f}" if abs(value) < 1e7 else f"{value:.8e}"


def _esc(value) -> str:
    return _html.escape(str(value), quote=True)


# --- the plots ------------------------------------------------------------------------------------

def drawn_images(data, history, optimum_loss: float | None) -> dict[str, bytes]:
    """The plots a notebook shows, drawn from the rows (``data``: a Dataset or a PlotData) and the history
    with :mod:`torchlinreg.plots`' figures, as PNG bytes by name."""
    from .plots import loss_figure, model_figure, predicted_figure, residuals_figure

    params = history.final_params
    figures = {"loss": loss_figure(history, optimum_loss)} if history.records else {}
    if data is not None and data.n_samples and params is not None:
        if data.n_features == 1:
            figures["current"] = model_figure(data, params, "Current Model")
        figures["residuals"] = residuals_figure(data, params)
        figures["predicted"] = predicted_figure(data, params)
    return {name: _png(figures[name]) for name in INLINE_PLOTS if name in figures}


def folder_images(folder) -> dict[str, bytes]:
    """The plots a notebook shows, read from a run's output folder (those that are there and are PNG files)."""
    from pathlib import Path

    from .plots import PLOT_FILES

    images = {}
    for name in INLINE_PLOTS:
        path = Path(folder) / PLOT_FILES[name]
        try:
            raw = path.read_bytes() if path.is_file() else b""
        except OSError:
            continue  # unreadable: shown without it
        if raw.startswith(PNG):
            images[name] = raw
    return images


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")  # nothing clipped, whatever the labels' lengths
    return buffer.getvalue()
