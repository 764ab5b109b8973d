"""The data files the commands write: a generated data set (``make-data``) and a saved model's
predictions for a file (``predict``), each one library call.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from . import defaults
from .data import Dataset, dataset_columns, make_regression, tutorial_data
from .errors import ConfigError, DataError
from .defaults import TUTORIAL_ONLY
from .formats import read_columns, write_table

def write_data(path: str | os.PathLike, *, n_samples: int | None = None, features: int | None = None,
               targets: int | None = None, coef=None, intercept=None, noise: float | None = None,
               seed: int = defaults.DATA_SEED, force: bool = False, **tutorial) -> tuple[Path, Dataset]:
    """Write the tutorial's data set, or a multivariate one, to ``path`` (CSV, TSV or Parquet by its suffix).

    Any of ``features``, ``targets``, ``coef``, ``intercept``, ``noise`` asks for multivariate
    data (:func:`torchlinreg.data.make_regression`: 1,000 rows, 3 features, 1 target, noise 1 by
    default); otherwise the tutorial's (:func:`torchlinreg.data.tutorial_data`, shaped by the
    keywords of ``TUTORIAL_ONLY``, which multivariate data refuse). ``force`` replaces a file
    there. Returns the path written and the data set.
    """
    unknown = sorted(set(tutorial) - set(TUTORIAL_ONLY))
    if unknown:
        raise TypeError(f"write_data() got unexpected keyword argument(s): {', '.join(unknown)}")
    if any(v is not None for v in (features, targets, coef, intercept, noise)):
        shaped = [name for name, value in tutorial.items() if value != TUTORIAL_ONLY[name]]
        if shaped:
            raise ConfigError(f"{{{shaped[0]}}} shapes the tutorial's data, not the multivariate data that "
                              "{features}, {targets}, {coef}, {intercept} or {noise} ask for; drop one of them")
        data = make_regression(1000 if n_samples is None else n_samples, 3 if features is None else features,
                               1 if targets is None else targets, coef=coef, intercept=intercept,
                               noise=1.0 if noise is None else noise, seed=seed)
    else:
        settings = TUTORIAL_ONLY | tutorial
        data = tutorial_data(defaults.N_SAMPLES if n_samples is None else n_samples, x_start=settings["x_start"],
                             x_stop=settings["x_stop"], weight=settings["true_weight"], bias=settings["true_bias"],
                             noise_low=settings["noise_low"], noise_high=settings["noise_high"], seed=seed)
    return write_table(path, dataset_columns(data), force=force), data


def write_predictions(model, data: str | os.PathLike, output: str | os.PathLike, *,
                      force: bool = False, interval: str | None = None, alpha: float = 0.05) -> tuple[Path, int]:
    """A saved model's predictions for the rows of the file ``data``, written to ``output``.

    ``model`` is a :class:`torchlinreg.persistence.SavedModel` (``load_model``); ``data`` must hold
    its feature columns (matched by name; others may be there). One column per target,
    ``predicted_<target>``, in the file's row order. Returns the path written and the rows.
    ``interval`` ("confidence" or "prediction") adds ``lower_<target>`` and ``upper_<target>``: the
    ``1 - alpha`` interval of the exact least-squares fit's mean or of a new observation
    (:meth:`~torchlinreg.persistence.SavedModel.get_prediction`), checked before the data are read.
    """
    if interval is not None:
        from .inference import INTERVALS, REFIT, check_alpha

        if interval not in INTERVALS:
            raise ConfigError(f"unknown interval {interval!r}; choose confidence or prediction")
        check_alpha(alpha)
        if model.inference is None:
            from .errors import ModelFileError

            raise ModelFileError(f"the model holds no least-squares inference state (saved by an older version), "
                                 f"so it has no intervals; {REFIT}")
    if model.metadata.get("formula") is not None:  # the formula's columns, rebuilt from the raw ones
        from .formula import rebuild
        from .formula_data import read_frame

        X = rebuild(model.metadata["formula"], read_frame(data))
    else:
        X = read_columns(data, model.feature_names)
    y_pred = model.predict(X)  # (n, m)
    overflow = ~(abs(y_pred) <= sys.float_info.max)  # inf, or NaN from inf - inf
    if overflow.any():
        row, col = (int(i[0]) for i in overflow.nonzero())
        name = model.target_names[col]
        name = name if len(name) <= 60 else name[:57] + "..."
        raise DataError(f"{data}: row {row + 1} makes the prediction of {name!r} overflow "
                        "float64 (its values are too large for this model's coefficients); rescale the data "
                        "as the model's training data were")
    columns = {f"predicted_{name}": y_pred[:, j] for j, name in enumerate(model.target_names)}
    if interval is not None:
        from .inference import interval_columns

        bounds = interval_columns(model, X, y_pred, interval, alpha)
        columns = {key: value for name in model.target_names
                   for key, value in ((f"predicted_{name}", columns[f"predicted_{name}"]),
                                      (f"lower_{name}", bounds[f"lower_{name}"]),
                                      (f"upper_{name}", bounds[f"upper_{name}"]))}
    return write_table(output, columns, force=force), y_pred.shape[0]
