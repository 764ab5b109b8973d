"""A saved model as a fitted estimator: the state ``LinearRegression.from_saved_model`` restores.

What a model file holds (:mod:`torchlinreg.persistence`: the coefficients, the names, the metadata) is
set on an estimator as ``fit`` would have left it: ``coef_`` and ``intercept_`` shaped as for the ``y``
it was fitted on, ``n_features_in_``, ``feature_names_in_`` when the names are the data's, and the
parameters the metadata records (a saved estimator's own, or the settings of a fit's model).
"""

from __future__ import annotations

import numpy as np

SETTINGS_PARAMS = ("epochs", "lr", "optimizer", "momentum", "nesterov", "weight_decay", "batch_size", "tol",
                   "patience", "schedule", "dtype")  # a fit's settings that are this estimator's parameters too


def fitted_from_saved(cls, saved):
    """An estimator of class ``cls`` (:class:`torchlinreg.LinearRegression`), fitted: the coefficients, names and
    parameters of ``saved`` (a :class:`~torchlinreg.persistence.SavedModel`); see ``from_saved_model``."""
    meta = saved.metadata
    params = meta.get("params") if meta.get("estimator") == cls.__name__ else None
    if not isinstance(params, dict):  # a fit's model: the settings this estimator shares
        settings = meta.get("settings") if isinstance(meta.get("settings"), dict) else {}
        params = {k: settings[k] for k in SETTINGS_PARAMS if k in settings}
        if "seed" in settings:
            params["random_state"] = settings["seed"]
        if "standardize" in meta:
            params["standardize"] = meta["standardize"] is not None
    if not saved.fit_intercept:  # a model without bias stays one when fitted again
        params = {**params, "fit_intercept": False}
    known = cls().get_params()
    est = cls(**{k: v for k, v in params.items() if k in known})
    one = meta.get("coef_ndim", 1 if saved.n_targets == 1 else 2) == 1 and saved.n_targets == 1
    W, b = np.ascontiguousarray(saved.weight), np.ascontiguousarray(saved.bias)
    est.coef_ = W[0].copy() if one else W
    est.intercept_ = float(b[0]) if one else b
    est.n_features_in_ = saved.n_features
    if meta.get("feature_names_in", True):
        est.feature_names_in_ = np.asarray(saved.feature_names, dtype=object)
    epochs = meta.get("epochs_run", 0)
    est.n_iter_ = epochs if isinstance(epochs, int) and not isinstance(epochs, bool) else 0
    est.history_, est.module_, est.optimizer_, est.scaler_, est.optimum_ = [], None, None, None, None
    return est
