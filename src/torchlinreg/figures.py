"""The pictures of a fit as matplotlib Figures, for a notebook or a script: from a fit's result, or from
data and a model's coefficients.

Each ``plot_*`` function takes either a fit's result (``torchlinreg.run_fit``'s
:class:`~torchlinreg.fit.FitResult`, or any object with its ``data``, ``history``, ``weight``, ``bias``
and ``solution``) or explicit arguments, and returns a ``matplotlib.figure.Figure`` on the Agg canvas
(no pyplot state: a notebook shows it inline as the value of a cell, ``fig.savefig(...)`` writes it).
The figures are those :func:`torchlinreg.save_plots` writes (:mod:`torchlinreg.plots`): one panel per
target, each on its own scale. :func:`result_figures` gives all of a result's, by the names of
``PLOT_FILES``.

>>> import torchlinreg as tl
>>> result = tl.run_fit(tl.tutorial_data(), out_dir=None, quiet=True)
>>> fig = tl.plot_residuals(result)                      # from the result
>>> fig = tl.plot_model(result.data, weight=[[2.0]], bias=[1.0])  # from data and coefficients
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .lossplot import loss_figure
from .plots import PlotData, data_figure, drawers, model_figure, predicted_figure, residuals_figure
from .residualplots import qq_figure, residuals_features_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from .history import History

__all__ = ["plot_data", "plot_loss", "plot_model", "plot_predicted", "plot_qq", "plot_residuals",
           "plot_residuals_vs_features", "result_figures"]


def _is_result(data) -> bool:
    return hasattr(data, "history") and hasattr(data, "data")


def _table(data, target=None) -> PlotData:
    """``data`` (a result, a Dataset, a PlotData, a DataFrame with ``target``) as the plots' NumPy arrays."""
    if _is_result(data):
        data = data.data
    if target is not None or (hasattr(data, "columns") and not hasattr(data, "X")):
        if not hasattr(data, "columns"):
            raise ValueError("target= names the target column(s) of a DataFrame; this data has its targets already")
        if target is None:
            raise ValueError(f"a DataFrame needs target=, the name of its target column(s); it has "
                             f"{', '.join(map(str, data.columns))}")
        from .data import Dataset

        names = [target] if isinstance(target, str) else list(target)
        missing = [name for name in names if name not in data.columns]
        if missing:
            raise ValueError(f"no column {', '.join(map(repr, missing))} in the DataFrame; it has "
                             f"{', '.join(map(str, data.columns))}")
        data = Dataset(data.drop(columns=names), data[names])
    return data if isinstance(data, PlotData) else PlotData.of(data)


def _params(data, table: PlotData, weight, bias, initial: bool = False) -> dict:
    """The model's parameters as a history holds them: given, else the result's (trained, or ``initial``)."""
    if weight is None:
        if not _is_result(data):
            raise ValueError("weight= (and bias=) are needed to draw a model over data; or pass a fit's result")
        if initial:
            return data.history.initial_params
        weight, bias = data.weight, data.bias
    m, d = table.n_targets, table.n_features
    w = np.asarray(weight, dtype=np.float64)
    w = w.reshape(1, -1) if w.ndim == 1 and m == 1 else w
    b = np.broadcast_to(np.asarray(0.0 if bias is None else bias, dtype=np.float64), (m,)) \
        if np.ndim(bias) == 0 else np.asarray(bias, dtype=np.float64)
    if w.shape != (m, d) or b.shape != (m,):
        raise ValueError(f"weight must have shape ({m}, {d}) and bias ({m},) for {m} target(s) and {d} feature(s), "
                         f"got {w.shape} and {b.shape}")
    return {"linear.weight": w.tolist(), "linear.bias": b.tolist()}


def _optimum_loss(result) -> float | None:
    """The least-squares optimum's loss of a fit's result: its solution's, else its gap's, else None."""
    solution = getattr(result, "solution", None)
    if solution is not None:
        return solution.loss
    return (getattr(result, "gap", None) or {}).get("optimum_loss")


def _one_feature(table: PlotData, what: str) -> None:
    if table.n_features != 1:
        raise ValueError(f"{what} draws the targets over one feature; this data has {table.n_features} "
                         "(plot_predicted, plot_residuals_vs_features and plot_residuals draw any number)")


_DATA = """    data : FitResult, Dataset, PlotData or pandas DataFrame
        A fit's result (its rows, and by default its trained coefficients); a
        :class:`~torchlinreg.data.Dataset` or :class:`~torchlinreg.plots.PlotData` with ``X`` of shape
        (n_samples, n_features) and ``y`` of shape (n_samples, n_targets); or a DataFrame whose
        ``target`` column(s) are the targets and whose other columns are the features.
"""
_COEFFICIENTS = """    weight : array-like of shape (n_targets, n_features), or (n_features,) for one target, optional
        The model's coefficients; by default a fit result's trained ones (required otherwise).
    bias : array-like of shape (n_targets,) or a number, optional
        The intercepts; 0 when ``weight`` is given without them, a fit result's trained ones by default.
"""
_TARGET = """    target : str or list of str, optional
        With a DataFrame: the target column(s).
"""


def _documented(parameters: str):
    """Follow a function's one-line docstring by ``parameters`` (numpydoc lines) and what it returns: a Figure."""
    def document(function):
        function.__doc__ += ("\n\n    Parameters\n    ----------\n" + parameters
                             + "\n    Returns\n    -------\n    matplotlib.figure.Figure\n    ")
        return function

    return document


_residual_parameters = _documented(_DATA + _COEFFICIENTS + _TARGET)


@_documented(_DATA + _TARGET)
def plot_data(data, *, target=None) -> Figure:
    """The data: each target against the one feature, one panel per target."""
    table = _table(data, target)
    _one_feature(table, "plot_data")
    return data_figure(table)


def plot_loss(history, optimum_loss: float | None = None) -> Figure:
    """The loss per epoch, the least-squares optimum and the excess over it; a diverged run marked.

    Parameters
    ----------
    history : History or FitResult
        A training history (:class:`~torchlinreg.history.History`), or a fit's result: its history, and
        its optimum's loss unless ``optimum_loss`` is given.
    optimum_loss : float, optional
        The least-squares optimum's loss, drawn as a dashed line, with the excess over it below.

    Returns
    -------
    matplotlib.figure.Figure
    """
    if _is_result(history):
        optimum_loss = _optimum_loss(history) if optimum_loss is None else optimum_loss
        history = history.history
    return loss_figure(history, optimum_loss)


_MODEL_EXTRA = """    initial : bool, default False
        With a fit's result and no ``weight``: the model before training instead of the trained one.
    band : bool, optional
        Shade the 95% confidence band of the least-squares line of the rows; by default for every
        model but the initial one.
    title : str, optional
        ``"Initial Model"`` for the initial model, ``"Current Model"`` otherwise, by default.
"""


@_documented(_DATA + _COEFFICIENTS + _TARGET + _MODEL_EXTRA)
def plot_model(data, weight=None, bias=None, *, target=None, initial: bool = False, band: bool | None = None,
               title: str | None = None) -> Figure:
    """The data with a one-feature model's line, one panel per target."""
    table = _table(data, target)
    _one_feature(table, "plot_model")
    params = _params(data, table, weight, bias, initial)
    title = title or ("Initial Model" if initial else "Current Model")
    return model_figure(table, params, title, band=not initial if band is None else band)


def _error_plot(name: str, draw, summary: str):
    """A public plot of a model's errors: ``draw(table, params)`` on the rows and coefficients it is given."""
    def plot(data, weight=None, bias=None, *, target=None) -> Figure:
        table = _table(data, target)
        return draw(table, _params(data, table, weight, bias))

    plot.__name__ = plot.__qualname__ = name
    plot.__doc__ = summary
    return _residual_parameters(plot)


plot_residuals = _error_plot("plot_residuals", residuals_figure,
                             "The residuals ``y - ŷ`` against the predictions ``ŷ``, one panel per target.")
plot_qq = _error_plot("plot_qq", qq_figure,
                      "The normal Q-Q plot of the residuals (standardised, ordered, against the normal quantiles).")
plot_predicted = _error_plot("plot_predicted", predicted_figure, "The predictions ``ŷ`` against the actual targets, "
                             "with the diagonal ``ŷ = y``, one panel per target.")
plot_residuals_vs_features = _error_plot("plot_residuals_vs_features", residuals_features_figure,
                                         "The residuals against each feature (the first four), one row of panels "
                                         "per target (the first three).")


def result_figures(result) -> dict[str, Figure]:
    """Every picture of a fit's result, as the files of a run: name -> Figure.

    The names are those of ``torchlinreg.plots.PLOT_FILES`` (``"data"``, ``"initial"``, ``"loss"``,
    ``"current"``, ``"residuals"``, ``"predicted"``, ``"qq"``, ``"residuals_features"``), in that
    order; the data and the two model lines only for one-feature data.

    Parameters
    ----------
    result : FitResult
        Or any object with its ``data``, ``history`` and ``solution`` (with ``loss``) or ``gap``.

    Returns
    -------
    dict of str to matplotlib.figure.Figure
    """
    history: History = result.history
    return {name: draw() for name, draw in drawers(_table(result), history, _optimum_loss(result)).items()}

