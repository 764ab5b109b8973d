"""Data files through a formula: the table read whole, its columns made by :mod:`torchlinreg.formula`.

``open_formula(path, "y ~ x1 + C(region)")`` reads every column of the file (text columns included)
and returns the Dataset of the formula's columns, its spec attached (``Dataset.formula``), so a model
fitted on it rebuilds them for new rows. ``--categorical auto`` without a formula is the formula of
the chosen target(s) on every other column, text columns one-hot encoded (``formula.auto_formula``).
Streamed (``stream=True``), the file's chunks go through :class:`~torchlinreg.formula_stream.FormulaSource`:
the levels come from a first pass; transforms fitted on every row (``poly()``...) need the rows whole.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .errors import ConfigError, DataError

CATEGORICAL = ("drop", "auto")  # --categorical: text columns left out (with a warning), or one-hot encoded


def read_frame(path: str | os.PathLike):
    """Every column of a data file as a pandas DataFrame (text columns kept), checked as any read."""
    from .formats import open_table

    path = Path(path)
    table = open_table(path)
    if table.num_rows == 0:
        raise DataError(f"{path}: has no rows; pass a file with data")
    return table.read(list(table.schema.names)).to_pandas()


def _text_columns(frame) -> list[str]:
    import pandas as pd

    return [str(c) for c in frame.columns if not (pd.api.types.is_numeric_dtype(frame[c])
                                                   or pd.api.types.is_bool_dtype(frame[c]))]


def formula_for(frame, *, formula=None, target=None, features=None, weights=None, categorical="drop") -> str:
    """The formula used: ``formula`` as given, or with ``categorical="auto"`` the target(s) on the features
    (default every other column but the weights), text columns one-hot encoded."""
    from .formula import auto_formula

    if categorical not in CATEGORICAL:
        raise ConfigError(f"categorical must be one of {', '.join(CATEGORICAL)}, got {categorical!r}")
    if formula is not None:
        if target or features:
            raise ConfigError("a formula names the target and the features itself; leave out {target} and "
                              "{features}")
        return formula
    names = [str(c) for c in frame.columns]
    targets = [target] if isinstance(target, str) else list(target or names[-1:])
    chosen = list(features) if features else [n for n in names if n not in targets and n != weights]
    for name in chosen + targets:
        if name not in names:
            raise DataError(f"there is no column {name!r} (the columns: {', '.join(names[:12])}); use a column name")
    text = set(_text_columns(frame))
    if text & set(targets):
        raise DataError(f"the target {sorted(text & set(targets))[0]!r} holds text; a target must hold numbers")
    return auto_formula(targets, [n for n in chosen if n not in text], [n for n in chosen if n in text])


def open_formula(data, *, formula=None, target=None, features=None, weights=None, categorical="drop",
                 stream: bool = False, read_bytes: int = 64 << 20):
    """The source of ``formula``'s columns (or ``categorical="auto"``'s) on ``data``: a data file, read whole,
    or a pandas (or polars) DataFrame."""
    from .data import ArraySource, Dataset
    from .formula import design

    if stream:  # the levels from a first pass, the columns made chunk by chunk (formula_stream)
        if not isinstance(data, (str, os.PathLike)):
            raise ConfigError("only a data file streams; a DataFrame is in memory already: leave out {stream}")
        from .formula_stream import FormulaSource, file_schema

        empty = file_schema(data).empty_table().to_pandas()  # the columns and their types, no rows
        return FormulaSource(data, formula_for(empty, formula=formula, target=target, features=features,
                                               weights=weights, categorical=categorical), weights=weights,
                             read_bytes=read_bytes)
    if hasattr(data, "columns"):
        frame, path = (data.to_pandas() if hasattr(data, "to_pandas") else data), "the DataFrame"
    elif isinstance(data, (str, os.PathLike)):
        frame, path = read_frame(data), data
    else:
        raise ConfigError(f"a formula takes a DataFrame or a data file's path, got {type(data).__name__}")
    made = design(frame, formula_for(frame, formula=formula, target=target, features=features, weights=weights,
                                     categorical=categorical))
    w = None
    if weights is not None:
        if weights not in frame.columns:
            raise DataError(f"{path}: there is no weight column {weights!r}; name a column with {{weights}}")
        w = np.asarray(frame[weights], dtype=np.float64)
        from .columns import check_finite_weights

        check_finite_weights(path, weights, w, all_rows=True)
    data = Dataset(made.X, made.Y, made.feature_names, made.target_names, sample_weight=w, formula=made.spec)
    from .columns import check_magnitudes

    check_magnitudes(path, data)
    return ArraySource(data, weight_name=weights)


def formula_intercept(data, fit_intercept: bool) -> bool:
    """The intercept a fit of ``data`` takes: a formula's choice (``- 1``: none), else ``fit_intercept``; a
    formula that keeps its intercept with ``--no-intercept`` given is refused (say it in the formula)."""
    dataset = getattr(data, "dataset", data)
    spec = getattr(dataset, "formula", None)
    if spec is None:
        return fit_intercept
    if not fit_intercept and spec["fit_intercept"]:
        raise ConfigError("with a formula, leave out the intercept in the formula itself ('y ~ x1 + x2 - 1'), "
                          "not with {fit_intercept}")
    return spec["fit_intercept"]
