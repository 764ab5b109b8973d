"""Two pictures of a model's residuals that test the linear model's assumptions: the normal Q-Q plot (are
the errors normal?) and the residuals against each feature (is any feature's effect curved, or the
spread growing with it?)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .band import normal_quantiles
from .canvas import grid, target_panels
from .shapes import Table, predict

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from .history import Params

MAX_FEATURE_PANELS = 4  # features drawn against the residuals, one column each
MAX_TARGET_ROWS = 3  # targets drawn against the features, one row each


def residuals_of(data: Table, params: Params) -> np.ndarray:
    """``y - ŷ`` for a model with ``params``, float64, shape (n_samples, n_targets)."""
    y_hat = predict(np.asarray(data.X, dtype=np.float64), params)
    with np.errstate(all="ignore"):  # a diverged model's predictions may be inf; matplotlib skips them
        return np.asarray(data.y, dtype=np.float64) - y_hat


def standardized_quantiles(residuals: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The points of a normal Q-Q plot: the normal quantiles (:func:`torchlinreg.band.normal_quantiles`)
    and the ordered finite residuals standardised, ``(r - mean) / sd`` (sd with divisor n - 1).

    None when fewer than two residuals are finite or they are all equal (nothing to standardise).
    """
    r = np.sort(residuals[np.isfinite(residuals)])
    if r.size < 2:
        return None
    sd = r.std(ddof=1)
    if not (np.isfinite(sd) and sd > 0):
        return None
    return normal_quantiles(r.size), (r - r.mean()) / sd


def qq_figure(data: Table, params: Params) -> Figure:
    """The normal Q-Q plot of the residuals of a model with ``params``: one panel per target.

    The ordered standardised residuals against the standard normal quantiles, with the line
    ``y = x`` they follow when the errors are normal; curving away at the ends shows heavy or
    light tails, a bow shows skew.
    """
    fig, panels = target_panels(data.target_names, "Normal Q-Q plot of the residuals")
    residuals = residuals_of(data, params)
    for j, ax in panels:
        points = standardized_quantiles(residuals[:, j])
        ax.set_xlabel("standard normal quantile")
        ax.set_ylabel("standardized residual")
        if points is None:
            ax.text(0.5, 0.5, "too few distinct finite residuals", transform=ax.transAxes, ha="center")
            continue
        q, z = points
        ends = [min(q[0], z[0]), max(q[-1], z[-1])]
        ax.plot(ends, ends, color="gray", linestyle="--", linewidth=1, zorder=0, label="normal (y = x)")
        ax.scatter(q, z, s=14, alpha=0.8, color=f"C{j}")
        ax.legend(loc="upper left")
    return fig


def residuals_features_figure(data: Table, params: Params) -> Figure:
    """The residuals of a model with ``params`` against each feature, with the zero line.

    One panel per feature (the first ``MAX_FEATURE_PANELS``), one row per target (the first
    ``MAX_TARGET_ROWS``); the panels of a row share their y axis. A pattern in a panel (a curve,
    a funnel) is what the linear model missed in that feature.
    """
    d, m = data.n_features, data.n_targets
    cols, rows = min(d, MAX_FEATURE_PANELS), min(m, MAX_TARGET_ROWS)
    notes = [f"the first {n} of {total} {what}" for n, total, what in
             ((cols, d, "features"), (rows, m, "targets")) if n < total]
    title = "Residuals against the features" + (f" ({'; '.join(notes)})" if notes else "")
    fig, axes = grid(rows, cols, title, sharey_rows=True)
    X, residuals = np.asarray(data.X), residuals_of(data, params)
    for j, row in enumerate(axes):
        for k, ax in enumerate(row):
            ax.axhline(0.0, color="gray", linewidth=1, zorder=0)
            ax.scatter(X[:, k], residuals[:, j], s=14, alpha=0.8, color=f"C{j}")
            ax.set_xlabel(data.feature_names[k])
            if k == 0:
                ax.set_ylabel("residual (actual − predicted)" if m == 1 else f"residual of {data.target_names[j]}")
            else:
                ax.tick_params(labelleft=False)
    return fig

