"""Each row's figures of an exact fit, written to a file a chunk at a time: for data larger than memory.

``tl.ols(...)`` holds its per-row figures (``resid``, ``fittedvalues``, ``get_influence()``); a file
streamed by ``solve`` may hold more rows than memory. One more pass over the rows writes them instead,
in the file's row order, with the names of statsmodels' ``OLSInfluence.summary_frame()``:

- ``fitted_<t>`` and ``resid_<t>``: the prediction and ``y - ŷ`` (in the data's units, unweighted);
- ``hat_diag``: the leverage ``h_i = ‖q_i‖²``, ``q_i`` the row of the weighted design's orthonormal basis
  (from the solution's factor, never an inverse of XᵀX);
- ``standard_resid_<t>``: ``e_i / √(s² (1 - h_i))``, ``e_i = √w_i r_i``, ``s² = SSR / df_resid``;
- ``student_resid_<t>``: the same with the scale of the fit without row ``i``,
  ``(SSR - e_i² / (1 - h_i)) / (df_resid - 1)``;
- ``cooks_d_<t>``: ``standard_resid² h / ((1 - h) k)``, ``k`` the number of parameters;
- ``dffits_<t>``: ``student_resid · √(h / (1 - h))``.

Weighted rows follow statsmodels' WLS (OLS of ``√w y`` on ``√w [X, 1]``); a row of weight 0 has
``h = 0`` and residual figures of 0. A row with ``h = 1`` (it alone fixes a direction) gets inf or NaN,
as statsmodels.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .data import as_source
from .defaults import CHUNK_ROWS
from .errors import DataError
from .solve import LstsqSolution


def _figures(solution: LstsqSolution, basis, X: np.ndarray, Y: np.ndarray, w: np.ndarray | None,
             ssr: np.ndarray, df_resid: float, k: int) -> dict[str, np.ndarray]:
    """The columns of one chunk: rows ``X`` (n, d), targets ``Y`` (n, m), weights ``w`` (n,) or None."""
    sqrt_w = np.ones(len(X)) if w is None else np.sqrt(w)
    fitted = X @ solution.coef.T + solution.intercept  # (n, m)
    resid = Y - fitted
    q = basis.rows(X, sqrt_w)
    h = np.einsum("ij,ij->i", q, q)
    columns = {}
    for t, target in enumerate(solution.target_names):
        columns[f"fitted_{target}"] = fitted[:, t]
        columns[f"resid_{target}"] = resid[:, t]
    columns["hat_diag"] = h
    with np.errstate(divide="ignore", invalid="ignore"):
        for t, target in enumerate(solution.target_names):
            e = sqrt_w * resid[:, t]
            internal = e / np.sqrt(ssr[t] / df_resid * (1 - h))
            external = e / np.sqrt((ssr[t] - e ** 2 / (1 - h)) / (df_resid - 1) * (1 - h))
            columns[f"standard_resid_{target}"] = internal
            columns[f"student_resid_{target}"] = external
            columns[f"cooks_d_{target}"] = internal ** 2 * h / (1 - h) / k
            columns[f"dffits_{target}"] = external * np.sqrt(h / (1 - h))
    return columns


def write_row_figures(data, solution: LstsqSolution, path: str | os.PathLike, *, chunk_rows: int = CHUNK_ROWS,
                      force: bool = False) -> tuple[Path, int]:
    """Write each row's fitted value, residual, leverage, studentized residuals, Cook's distance and DFFITS of
    ``solution`` over the rows of ``data`` (a Dataset or a Source, the rows the solution was fitted on) to
    ``path`` (CSV, TSV or Parquet, by its extension), one chunk of ``chunk_rows`` rows at a time.

    Returns the path written and the number of rows. The file appears whole or not at all: a failure
    leaves what ``path`` held before.
    """
    from .covariances import _Basis
    from .formats.writing import TableWriter

    source = as_source(data)
    if getattr(solution, "_factor", None) is None or solution.n_samples <= solution.rank:
        raise DataError(f"{solution.n_samples} rows for {solution.rank} independent parameters: the row figures "
                        "need more rows than parameters; choose fewer columns with {features}")
    basis = _Basis(solution)
    ssr = solution.loss_per_target * basis.sum_weights  # as the statistics: Σ w r², refined with the solution
    df_resid = float(solution._factor.n - solution.rank)  # a row of weight 0 is left out, as the statistics
    k = len(solution.feature_names) + int(solution._factor.fit_intercept)  # statsmodels' k_vars
    with TableWriter(path, force=force, setting="row_figures") as writer:
        for X, y, w in source.chunks(chunk_rows):
            writer.write(_figures(solution, basis, np.asarray(X, dtype=np.float64),
                                  np.asarray(y, dtype=np.float64).reshape(len(X), -1),
                                  None if w is None else np.asarray(w, dtype=np.float64), ssr, df_resid, k))
        if writer.n_rows != solution.n_samples:  # inside the with: the file is not put in place
            raise ValueError(f"the data hold {writer.n_rows} rows but the solution was fitted on "
                             f"{solution.n_samples}; give the same rows")
    return writer.path, writer.n_rows
