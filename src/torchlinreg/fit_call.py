"""``tl.fit``: the notebook's one call, from what a user has (a DataFrame, a file, arrays) to a :class:`FitResult`.

It chooses the settings as ``torchlinreg fit FILE`` does (:func:`torchlinreg.config.choose_settings`),
makes a Source of the data (a formula's columns through :mod:`torchlinreg.formula_data`), and runs
:func:`torchlinreg.fitting.run_fit`.
"""

from __future__ import annotations

import os
from dataclasses import fields

from .config import TrainConfig, choose_settings
from .data import ArraySource, Dataset, as_source
from .errors import ConfigError
from .fitting import FitResult, run_fit


def fit(data, target=None, *, features=None, weights=None, standardize: bool | None = None,
        out_dir: str | os.PathLike | None = None, **settings) -> FitResult:
    """Fit a linear model by gradient descent and set it beside the exact optimum: the notebook's one call.

    Parameters
    ----------
    data : a pandas or polars DataFrame, the path of a data file (CSV, TSV, Parquet, ``.npy``,
        ``.npz``, or a folder of files), a feature matrix (NumPy array, tensor) of shape
        (n_samples, n_features), a :class:`~torchlinreg.data.Dataset` or a Source.
    target : the target column name(s) of a DataFrame or file (default: its last column); with a
        feature matrix, the targets themselves: an array or Series of shape (n_samples,) or
        (n_samples, n_targets).
    features, weights : the feature columns (default: every other numeric column) and a column of
        sample weights, of a DataFrame or file; with a feature matrix, ``weights`` holds the weights.
    standardize : train on standardised columns (default: as the chosen settings say).
    fit_intercept : False fits a model without bias (a line through the origin; passed in ``settings``).
    formula, categorical : ``formula="y ~ x1 + C(region) + x1:x2"`` makes the columns from a DataFrame or file
        (:mod:`torchlinreg.formula`; ``- 1``: no intercept); ``categorical="auto"`` one-hot encodes text columns.
    out_dir : a folder for the history, summary and plots (default: none; nothing is written).
    **settings : fields of :class:`~torchlinreg.config.TrainConfig` (``optimizer``, ``lr``, ``epochs``,
        ``batch_size``, ``tol``, ``dtype``, ...) and the options of :func:`run_fit` (``quiet``,
        ``validation_fraction``, ``save``, ``log_every``, ...). The statistics of the optimum are
        computed (``statistics=True``) for :meth:`FitResult.summary` but not printed
        (``print_statistics=False``). Without ``optimizer``
        and ``lr``, the training settings are chosen to reach the optimum
        (:func:`torchlinreg.config.choose_settings`, as ``torchlinreg fit FILE`` does), and the first
        line printed says which.

    Returns
    -------
    FitResult
        The trained model beside the optimum, with the column names of ``data``.
    """
    formula, categorical = settings.pop("formula", None), settings.pop("categorical", "drop")
    if formula is not None or categorical == "auto":  # the columns a formula makes (torchlinreg.formula_data)
        from .formula_data import formula_intercept, open_formula

        source = open_formula(data, formula=formula, target=target, features=features, weights=weights,
                              categorical=categorical)
        settings["fit_intercept"] = formula_intercept(source, settings.get("fit_intercept", True))
    else:
        source = _fit_source(data, target, features, weights)
    trainable = {f.name for f in fields(TrainConfig)}
    given = {k: settings.pop(k) for k in list(settings) if k in trainable}
    chosen = choose_settings(standardize=standardize, fit_intercept=settings.get("fit_intercept", True), **given)
    options = {"statistics": True, "print_statistics": False} | settings  # computed for summary(), not printed
    return run_fit(source, chosen.config, out_dir, standardize=chosen.standardize, chosen=chosen.why, **options)


def _fit_source(data, target, features, weights):
    """What :func:`fit` was given, as a Source with the data's names."""
    from .formats.frames import is_frame, read_frame

    named = target is None or isinstance(target, str) or (
        isinstance(target, (list, tuple)) and all(isinstance(name, str) for name in target))
    if is_frame(data) and named:
        return as_source(read_frame(data, target=target, features=features, weights=weights))
    if isinstance(data, (str, os.PathLike)):
        from .sources import open_source

        return open_source(data, target=target, features=features, weights=weights, passes="many")
    if isinstance(data, Dataset) or not hasattr(data, "__len__") and hasattr(data, "chunks"):
        return as_source(data)
    if named:
        raise ConfigError("a feature matrix needs its targets: pass fit(X, y), or a DataFrame and the name of its "
                          "{target} column")
    return ArraySource.from_arrays(data, target, weights, feature_names=features)
