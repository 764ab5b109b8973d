"""Intervals for new rows from a saved model (issue 17, item 4): ``predict --interval`` and
``SavedModel.get_prediction(X).summary_frame(alpha)``.

References are computed here: statsmodels' ``OLS``/``WLS(...).fit().get_prediction(exog).summary_frame(alpha)``
(``mean_ci_*`` for the confidence interval, ``obs_ci_*`` for the prediction interval). Tolerance: 1e-8
relative, the figure the issue sets against statsmodels (float64 least squares on well-conditioned designs:
stackloss, the tutorial's data, linnerud, ccard's two features).
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

import torchlinreg as tl
from torchlinreg.cli import main
from torchlinreg.errors import ModelFileError
from torchlinreg.inference import InferenceState
from torchlinreg.persistence import SavedModel, save_model

from realdata import load, numeric_design

RTOL = 1e-8  # relative, against statsmodels (the figure)
COLUMNS = {"confidence": ("mean_ci_lower", "mean_ci_upper"), "prediction": ("obs_ci_lower", "obs_ci_upper")}


def _fit(tmp_path, path, *flags) -> str:
    model = str(tmp_path / "model")
    assert main(["fit", *([] if path is None else [str(path)]), *flags, "--save", model, "--out", str(tmp_path / "out"), "--no-plots",
                 "--quiet", "--force"]) == 0
    return model


def _reference(X, y, fit_intercept=True, weights=None):
    Z = sm.add_constant(X, has_constant="add") if fit_intercept else X
    model = sm.OLS(y, Z) if weights is None else sm.WLS(y, Z, weights=weights)
    return model.fit(), Z


@pytest.fixture(scope="module")
def stackloss(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stackloss")
    frame, targets = load("stackloss")
    path = tmp / "stackloss.csv"
    frame.to_csv(path, index=False)
    return tmp, path, frame, targets


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_predict_interval_matches_statsmodels(stackloss, fit_intercept, capsys):
    tmp, path, frame, targets = stackloss
    X, Y = numeric_design(frame, targets)
    flags = ["--target", *targets] + ([] if fit_intercept else ["--no-intercept"])
    model = _fit(tmp / str(fit_intercept), path, *flags)
    results, Z = _reference(X, Y[targets[0]], fit_intercept)
    for interval, (lo, hi) in COLUMNS.items():
        for alpha in (0.05, 0.1):
            out = tmp / f"p_{interval}_{alpha}.csv"
            assert main(["predict", model, str(path), "-o", str(out), "--interval", interval, "--alpha", str(alpha),
                         "--force"]) == 0
            written = pd.read_csv(out)
            t = targets[0]
            assert list(written.columns) == [f"predicted_{t}", f"lower_{t}", f"upper_{t}"]
            frame_ = results.get_prediction(Z).summary_frame(alpha)
            np.testing.assert_allclose(written[f"lower_{t}"], frame_[lo], rtol=RTOL)
            np.testing.assert_allclose(written[f"upper_{t}"], frame_[hi], rtol=RTOL)
    assert "warning" not in capsys.readouterr().err  # L-BFGS reaches the optimum: no warning
    # the library call: the same figures, every column of statsmodels' frame
    saved = tl.load_model(model)
    mine = saved.get_prediction(X).summary_frame(0.05)
    theirs = results.get_prediction(Z).summary_frame(0.05)
    for column in theirs.columns:
        np.testing.assert_allclose(mine[column], theirs[column], rtol=RTOL, err_msg=column)
    np.testing.assert_allclose(saved.inference.normalized_cov_params, results.normalized_cov_params, rtol=RTOL)


def test_streamed_fit_saves_the_same_state(stackloss):
    tmp, path, frame, targets = stackloss
    X, Y = numeric_design(frame, targets)
    saved = tl.load_model(_fit(tmp / "streamed", path, "--target", *targets, "--stream", "--chunk-rows", "4"))
    results, Z = _reference(X, Y[targets[0]])
    theirs, mine = results.get_prediction(Z).summary_frame(0.05), saved.get_prediction(X).summary_frame(0.05)
    for column in theirs.columns:
        np.testing.assert_allclose(mine[column], theirs[column], rtol=RTOL, err_msg=column)


def test_tutorial_model_stopped_short_warns_once(tmp_path, capsys):
    data = tmp_path / "tutorial.csv"
    assert main(["make-data", "-o", str(data)]) == 0
    model = _fit(tmp_path, None)  # the tutorial's run, 50 epochs of SGD: short of the optimum; its data are the file's
    out = tmp_path / "p.csv"
    capsys.readouterr()
    assert main(["predict", model, str(data), "-o", str(out), "--interval", "prediction"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    warned = [line for line in err if "warning" in line]
    assert len(warned) == 1 and "least-squares fit" in warned[0] and "differ from them by up to" in warned[0]
    frame = pd.read_csv(data)
    results, Z = _reference(frame[["x"]], frame["y"])
    reference = results.get_prediction(Z).summary_frame(0.05)
    written = pd.read_csv(out)
    np.testing.assert_allclose(written["lower_y"], reference["obs_ci_lower"], rtol=RTOL)
    np.testing.assert_allclose(written["upper_y"], reference["obs_ci_upper"], rtol=RTOL)
    # the model's own predictions are kept, and differ from the interval's centre
    centre = (written["lower_y"] + written["upper_y"]) / 2
    np.testing.assert_allclose(centre, reference["mean"], rtol=RTOL)
    assert np.max(np.abs(written["predicted_y"] - centre)) > 1e-6
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the library call itself does not warn
        tl.load_model(model).get_prediction(frame[["x"]]).summary_frame()


def test_multi_target_and_weighted(tmp_path):
    frame, targets = load("linnerud")  # three targets
    path = tmp_path / "linnerud.csv"
    frame.to_csv(path, index=False)
    X, Y = numeric_design(frame, targets)
    saved = tl.load_model(_fit(tmp_path / "l", path, "--target", *targets))
    prediction = saved.get_prediction(X)
    for t in targets:
        results, Z = _reference(X, Y[t])
        theirs, mine = results.get_prediction(Z).summary_frame(0.1), prediction.summary_frame(0.1, target=t)
        for column in theirs.columns:
            np.testing.assert_allclose(mine[column], theirs[column], rtol=RTOL, err_msg=f"{t} {column}")
    with pytest.raises(ValueError, match="3 targets; pass target="):
        prediction.summary_frame()
    # WLS: statsmodels' intervals for new rows of weight 1
    frame, targets = load("ccard")
    path = tmp_path / "ccard.csv"
    frame.to_csv(path, index=False)
    features = ["AGE", "OWNRENT"]
    saved = tl.load_model(_fit(tmp_path / "c", path, "--target", *targets, "--features", *features,
                               "--weights", "INCOME"))
    results, Z = _reference(frame[features], frame[targets[0]], weights=frame["INCOME"])
    theirs, mine = results.get_prediction(Z).summary_frame(0.05), saved.get_prediction(frame[features]).summary_frame()
    for column in theirs.columns:
        np.testing.assert_allclose(mine[column], theirs[column], rtol=RTOL, err_msg=column)


def _plain_model(tmp_path, **inference):
    """A model file written without (or with the given) inference state."""
    state = None
    if inference:
        fields = dict(optimum_weight=np.ones((1, 2)), optimum_bias=np.zeros(1), scale=np.ones(1), xbar=np.zeros(2),
                      basis=np.eye(2), df_resid=5.0, n_obs=8, sum_weights=8.0) | inference
        state = InferenceState(**fields)
    path = tmp_path / "plain"
    save_model(path, SavedModel(np.ones((1, 2)), np.zeros(1), ("a", "b"), ("y",), inference=state), force=True)
    data = tmp_path / "rows.csv"
    pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0]}).to_csv(data, index=False)
    return str(path), str(data)


def test_bad_input(tmp_path, capsys):
    model, data = _plain_model(tmp_path)  # a model file without the state (as files of older versions)
    out = str(tmp_path / "p.csv")
    assert main(["predict", model, data, "-o", out]) == 0  # plain predictions still work
    capsys.readouterr()
    assert main(["predict", model, data, "-o", out, "--force", "--interval", "confidence"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "refit the model with this version" in err
    with pytest.raises(ModelFileError, match="refit the model"):
        tl.load_model(model).get_prediction([[1.0, 2.0]])
    for alpha in ("0", "1", "-0.5", "nan", "x"):
        with pytest.raises(SystemExit) as exit_:
            main(["predict", model, data, "-o", out, "--interval", "confidence", "--alpha", alpha])
        assert exit_.value.code == 2
        assert "--alpha" in capsys.readouterr().err
    model, data = _plain_model(tmp_path, scale=-np.ones(1))  # a corrupt state: refused on load, one line
    assert main(["predict", model, data, "-o", out, "--force", "--interval", "prediction"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "invalid inference state (a negative scale)" in err
    model, data = _plain_model(tmp_path, optimum_weight=np.ones((1, 2)))
    json_path = tmp_path / "plain.json"
    desc = json.loads(json_path.read_text())
    desc["inference"]["df_resid"] = "five"  # the JSON is not covered by the tensors' SHA-256: checked on its own
    json_path.write_text(json.dumps(desc))
    assert main(["predict", model, data, "-o", out, "--force"]) == 1
    assert "df_resid, n_obs and sum_weights must be positive numbers" in capsys.readouterr().err
