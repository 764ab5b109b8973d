"""Formulas and categories (formulaic): ``tl.ols("y ~ ...", data=df)`` against statsmodels' formula API, the
JSON spec rebuilding the same columns for new rows, and the messages of bad formulas and levels.

Tolerance: 1e-8 relative, the issue's bar against statsmodels (both fit the same design, well conditioned).
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
import statsmodels.formula.api as smf
from formulaic import model_matrix

import realdata
import torchlinreg
from torchlinreg.errors import ConfigError, DataError
from torchlinreg.formula import design, rebuild

RTOL = 1e-8  # the bar against statsmodels


def synthetic(n=120, seed=5):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"x1": rng.normal(size=n), "x2": rng.uniform(1, 3, size=n), "x3": rng.normal(2, 1, size=n),
                          "region": rng.choice(["north", "south", "east", "west"], size=n)})
    effect = frame["region"].map({"north": 0.0, "south": 1.5, "east": -2.0, "west": 0.5})
    frame["y"] = 1 + 2 * frame.x1 - frame.x1 * frame.x2 + 0.3 * frame.x3 ** 2 + effect + rng.normal(size=n)
    return frame


def same(ours, ref):
    # the same terms by name; patsy (statsmodels) puts categorical terms before numeric ones, formulaic in the
    # formula's order
    assert sorted(ours.names) == sorted(ref.params.index)
    for name in ("params", "bse", "tvalues"):
        want = getattr(ref, name)[list(ours.names)] if hasattr(getattr(ref, name), "index") else getattr(ref, name)
        np.testing.assert_allclose(getattr(ours, name), np.asarray(want), rtol=RTOL, err_msg=name)
    for name in ("rsquared", "rsquared_adj", "fvalue", "llf", "aic", "bic", "ssr", "ess", "df_model", "df_resid"):
        np.testing.assert_allclose(getattr(ours, name), getattr(ref, name), rtol=RTOL, err_msg=name)


@pytest.mark.parametrize("formula", ["y ~ x1 + C(region) + x1:x2 + I(x3 ** 2)", "y ~ x1 * x2 + region",
                                     "y ~ x1 + C(region) - 1", "y ~ center(x3) + x1:C(region)"])
def test_formulas_match_statsmodels(formula):
    frame = synthetic()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = smf.ols(formula, data=frame).fit()
    same(torchlinreg.ols(formula, data=frame), ref)


def test_grunfeld_with_its_firms_matches_statsmodels():
    frame, _ = realdata.load("grunfeld")
    formula = "invest ~ value + capital + C(firm)"
    ours = torchlinreg.ols(formula, data=frame)
    same(ours, smf.ols(formula, data=frame).fit())
    assert ours.k_constant == 1 and "C(firm)[T.Atlantic Refining]" in ours.names


def test_poly_matches_statsmodels_on_formulaics_columns():
    # patsy (statsmodels' formulas) has no orthogonal poly(): the reference is statsmodels on formulaic's columns
    frame = synthetic()
    formula = "y ~ poly(x3, 3) + x1:x2 + C(region)"
    matrices = model_matrix(formula, frame)
    ref = sm.OLS(matrices.lhs.iloc[:, 0], matrices.rhs).fit()
    same(torchlinreg.ols(formula, data=frame), ref)


def test_the_json_spec_rebuilds_the_same_columns_for_new_rows():
    frame = synthetic()
    formula = "y ~ poly(x3, 3) + center(x1) + scale(x2) + x1:x2 + C(region)"
    made = design(frame.iloc[:80], formula)
    spec = json.loads(json.dumps(made.spec))  # through JSON text, as a model file holds it
    new = frame.iloc[80:]
    want = model_matrix(formula, frame.iloc[:80]).rhs.model_spec.get_model_matrix(new)
    got = rebuild(spec, new)
    np.testing.assert_array_equal(got, want.drop(columns="Intercept").to_numpy())  # the same state, the same bits
    # get_prediction on new rows of the frame's columns, as statsmodels' formula results
    ours = torchlinreg.ols(formula, data=frame.iloc[:80])
    np.testing.assert_allclose(ours.get_prediction(new).predicted_mean,
                               sm.OLS(frame.y.iloc[:80], model_matrix(formula, frame.iloc[:80]).rhs).fit()
                               .predict(want), rtol=RTOL)


@pytest.mark.parametrize("formula,error,match", [
    ("y ~ x1 +", ConfigError, "malformed"), ("y ~ (x1", ConfigError, "malformed"), ("x1 + x2", ConfigError, "'~'"),
    ("y ~ x1 + nothere", DataError, "names 'nothere', which is not a column"),
    ("y ~ x1 + C(one)", DataError, "'C\\(one\\)' has a single level"),
])
def test_bad_formulas_are_one_line(formula, error, match):
    frame = synthetic().assign(one="a")
    with pytest.raises(error, match=match) as info:
        torchlinreg.ols(formula, data=frame)
    assert "\n" not in str(info.value)


def test_an_unseen_level_names_the_column_and_the_level():
    frame = synthetic()
    made = design(frame, "y ~ x1 + C(region)")
    new = frame.iloc[:3].copy()
    new.loc[new.index[1], "region"] = "central"
    with pytest.raises(DataError, match="the column 'region' holds the level 'central', not seen"):
        rebuild(made.spec, new)


def test_a_missing_value_is_refused_or_dropped():
    frame = synthetic()
    frame.loc[3, "x1"] = np.nan
    with pytest.raises(DataError, match="'x1' used by the formula has a missing value"):
        torchlinreg.ols("y ~ x1 + x2", data=frame)
    dropped = torchlinreg.ols("y ~ x1 + x2", data=frame, missing="drop")
    assert dropped.nobs == len(frame) - 1


# --- the command line -------------------------------------------------------------------------------
from torchlinreg.cli import main  # noqa: E402


@pytest.fixture
def files(tmp_path):
    frame = synthetic()
    frame.to_csv(tmp_path / "d.csv", index=False)
    frame.iloc[:15].drop(columns="y").to_csv(tmp_path / "new.csv", index=False)
    return tmp_path, frame


def solved(capsys, argv):
    assert main(argv + ["--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    return out["coef"]["y"], out["intercept"]["y"]


@pytest.mark.parametrize("formula", ["y ~ x1 + C(region) + x1:x2 + I(x3 ** 2)", "y ~ x1 + C(region) - 1"])
def test_solve_formula_matches_statsmodels(files, capsys, formula):
    folder, frame = files
    coef, intercept = solved(capsys, ["solve", str(folder / "d.csv"), "--formula", formula])
    ref = smf.ols(formula, data=frame).fit().params
    for name, value in coef.items():
        np.testing.assert_allclose(value, ref[name], rtol=RTOL, err_msg=name)
    np.testing.assert_allclose(intercept, ref.get("Intercept", 0.0), rtol=RTOL)


def test_categorical_auto_one_hot_encodes_text_columns(files, capsys):
    folder, frame = files
    coef, intercept = solved(capsys, ["solve", str(folder / "d.csv"), "--target", "y", "--categorical", "auto"])
    ref = smf.ols("y ~ x1 + x2 + x3 + C(region)", data=frame).fit().params
    assert set(coef) == set(ref.index) - {"Intercept"}
    for name, value in coef.items():
        np.testing.assert_allclose(value, ref[name], rtol=RTOL, err_msg=name)
    np.testing.assert_allclose(intercept, ref["Intercept"], rtol=RTOL)


def test_fit_saves_the_spec_and_predict_rebuilds_the_columns(files, capsys):
    folder, frame = files
    formula = "y ~ poly(x3, 2) + x1:x2 + C(region)"
    argv = ["fit", str(folder / "d.csv"), "--formula", formula, "--save", str(folder / "m"), "--no-plots", "--quiet",
            "--out", str(folder / "out")]
    assert main(argv) == 0
    saved = json.loads((folder / "m.json").read_text())
    spec = saved["metadata"]["formula"]
    assert spec["formula"].startswith("1 + ") and spec["encoder_state"]["C(region)"][1]["categories"] == [
        "east", "north", "south", "west"]
    assert "poly(x3, 2)" in spec["transform_state"]  # the fitted recurrence, as JSON data
    assert main(["predict", str(folder / "m"), str(folder / "new.csv"), "-o", str(folder / "p.csv")]) == 0
    matrices = model_matrix(formula, frame)
    want = sm.OLS(matrices.lhs.iloc[:, 0], matrices.rhs).fit().predict(
        matrices.rhs.model_spec.get_model_matrix(frame.iloc[:15]))
    # the fit stops where L-BFGS's loss stops improving (1e-12 relative): its coefficients are within about
    # √1e-12·κ ≈ 1e-5 of the optimum; the predictions as close
    np.testing.assert_allclose(pd.read_csv(folder / "p.csv")["predicted_y"], want, rtol=1e-5)
    # an unseen level: one line naming the column and the level, exit 1
    new = frame.iloc[:3].drop(columns="y").assign(region=["east", "central", "west"])
    new.to_csv(folder / "unseen.csv", index=False)
    capsys.readouterr()
    assert main(["predict", str(folder / "m"), str(folder / "unseen.csv"), "-o", str(folder / "q.csv")]) == 1
    err = capsys.readouterr().err
    assert "the column 'region' holds the level 'central'" in err and err.count("\n") == 1
    # a damaged spec in the model's JSON is a bad model file
    saved["metadata"]["formula"]["version"] = 99
    (folder / "m.json").write_text(json.dumps(saved))
    assert main(["predict", str(folder / "m"), str(folder / "new.csv"), "-o", str(folder / "r.csv")]) == 1
    assert "its formula is damaged" in capsys.readouterr().err


@pytest.mark.parametrize("extra,code,match", [
    (["--formula", "y ~ x1 +"], 2, "is malformed"),
    (["--formula", "y ~ x1 + nothere"], 1, "names 'nothere', which is not a column"),
    (["--formula", "y ~ x1 + C(one)"], 1, "has a single level"),
    (["--formula", "y ~ x1", "--target", "y"], 2, "leave out --target"),
])
def test_bad_formulas_on_the_command_line(files, capsys, extra, code, match):
    folder, frame = files
    frame.assign(one="a").to_csv(folder / "d.csv", index=False)
    assert main(["solve", str(folder / "d.csv"), *extra]) == code
    err = capsys.readouterr().err
    assert match in err and err.count("\n") == 1


def test_tl_fit_takes_a_formula_and_its_model_predicts_new_rows():
    frame = synthetic()
    formula = "y ~ x1 + C(region) + x1:x2 - 1"
    result = torchlinreg.fit(frame, formula=formula, quiet=True)
    ref = smf.ols(formula, data=frame).fit()
    assert result.fit_intercept is False and list(result.data.feature_names) == list(
        design(frame, formula).feature_names)
    # the optimum the fit is set beside is the exact one
    np.testing.assert_allclose(result.solution.coef[0], ref.params[list(result.data.feature_names)], rtol=RTOL)
    model = result.saved_model()
    # L-BFGS stops where the loss stops improving (1e-12 relative): within about √1e-12·κ of the optimum
    np.testing.assert_allclose(model.predict(frame.iloc[:5])[:, 0], ref.predict(frame.iloc[:5]), rtol=1e-5)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_streamed_formula_equals_whole(tmp_path, capsys, suffix):
    # the levels come from a first pass: chunks of 7 rows hold some levels only, and encode them all the same
    frame = synthetic().sort_values("region", kind="stable").reset_index(drop=True)  # runs of one level a chunk
    path = tmp_path / f"d{suffix}"
    frame.to_csv(path, index=False) if suffix == ".csv" else frame.to_parquet(path, row_group_size=13)
    formula = "y ~ x1 + C(region) + x1:x2 + I(x3 ** 2)"
    whole = solved(capsys, ["solve", str(path), "--formula", formula])
    streamed = solved(capsys, ["solve", str(path), "--formula", formula, "--stream", "--chunk-rows", "7"])
    ref = smf.ols(formula, data=frame).fit().params
    for coef, intercept in (whole, streamed):
        for name, value in coef.items():
            np.testing.assert_allclose(value, ref[name], rtol=RTOL, err_msg=name)
        np.testing.assert_allclose(intercept, ref["Intercept"], rtol=RTOL)
    auto = solved(capsys, ["solve", str(path), "--target", "y", "--categorical", "auto", "--stream",
                           "--chunk-rows", "7"])
    assert "C(region)[T.west]" in auto[0]


def test_streamed_fit_saves_the_levels_and_refuses_row_fitted_transforms(files, capsys):
    folder, frame = files
    formula = "y ~ x1 + C(region) + x1:x2"
    assert main(["fit", str(folder / "d.csv"), "--formula", formula, "--stream", "--chunk-rows", "16", "--save",
                 str(folder / "m"), "--no-plots", "--quiet", "--out", str(folder / "out")]) == 0
    assert main(["predict", str(folder / "m"), str(folder / "new.csv"), "-o", str(folder / "p.csv")]) == 0
    want = smf.ols(formula, data=frame).fit().predict(frame.iloc[:15])
    np.testing.assert_allclose(pd.read_csv(folder / "p.csv")["predicted_y"], want, rtol=1e-5)  # L-BFGS's stop
    capsys.readouterr()
    assert main(["solve", str(folder / "d.csv"), "--formula", "y ~ poly(x3, 2)", "--stream"]) == 2
    err = capsys.readouterr().err
    assert "fits transforms on the rows (poly(x3, 2))" in err and "leave out --stream" in err


def test_a_text_target_is_refused():
    with pytest.raises(DataError, match="target 'region' holds text"):
        torchlinreg.ols("region ~ x1", data=synthetic())
