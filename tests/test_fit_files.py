"""Fitting real files end to end through the command, against scikit-learn computed here."""

import csv
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from sklearn.linear_model import LinearRegression
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

from torchlinreg import load_model, make_regression, read_dataset, tutorial_data, write_table
from torchlinreg.cli import main
from torchlinreg.data import dataset_columns
from torchlinreg.metrics import train_validation_split


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture()
def csv_file(tmp_path):
    data = make_regression(300, 3, 2, noise=0.3, seed=11)
    return write_table(tmp_path / "data.csv", dataset_columns(data)), data


def sklearn_fit(X, y):
    return LinearRegression().fit(X, y)


def test_make_data_writes_the_tutorial_data_by_default(capsys, tmp_path):
    code, _, _ = run(capsys, "make-data", "-o", tmp_path / "t.csv")
    assert code == 0
    data, ref = read_dataset(tmp_path / "t.csv"), tutorial_data()
    assert data.feature_names == ("x",) and data.target_names == ("y",)
    np.testing.assert_array_equal(data.X.numpy(), ref.X.double().numpy())
    np.testing.assert_array_equal(data.y.numpy(), ref.y.double().numpy())


def test_make_data_multivariate_with_given_coefficients(capsys, tmp_path):
    code, _, _ = run(capsys, "make-data", "-o", tmp_path / "m.parquet", "--features", "2", "--targets", "2",
                     "--coef", "1", "2", "3", "4", "--intercept", "5", "6", "--noise", "0", "--n-samples", "40")
    assert code == 0
    table = pq.read_table(tmp_path / "m.parquet")
    assert table.column_names == ["x1", "x2", "y1", "y2"] and table.num_rows == 40
    X = np.column_stack([table["x1"].to_numpy(), table["x2"].to_numpy()])
    np.testing.assert_allclose(table["y1"].to_numpy(), X @ [1, 2] + 5, rtol=1e-12)
    np.testing.assert_allclose(table["y2"].to_numpy(), X @ [3, 4] + 6, rtol=1e-12)
    code, _, err = run(capsys, "make-data", "-o", tmp_path / "m.parquet")
    assert code == 2 and "--force" in err


def test_fit_a_csv_reaches_the_optimum_and_reports_the_gap(capsys, tmp_path, csv_file):
    path, data = csv_file
    code, out, err = run(capsys, "fit", path, "--target", "y1", "y2", "--optimizer", "lbfgs", "--epochs", "100",
                         "--dtype", "float64", "--out", tmp_path / "out")
    assert code == 0, err
    ref = sklearn_fit(data.X.numpy(), data.y.numpy())
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    np.testing.assert_allclose(summary["weight"], ref.coef_, atol=1e-7)
    np.testing.assert_allclose(summary["optimum"]["intercept"]["y2"], ref.intercept_[1], rtol=1e-10)
    assert summary["gap"]["relative_excess_loss"] < 1e-10
    assert "Trained model and the exact least-squares optimum" in out and "weight x3 -> y2" in out
    assert summary["metrics"]["train"]["r2"] == pytest.approx(r2_score(data.y.numpy(), ref.predict(data.X.numpy())))


def test_tutorial_run_says_why_50_epochs_stop_short(capsys, tmp_path):
    code, out, _ = run(capsys, "fit", "--out", tmp_path)
    lines = out.splitlines()
    first_epoch = next(i for i, ln in enumerate(lines) if ln.startswith("epoch:  1 "))
    notes = [ln for ln in lines[:first_epoch] if ln.startswith("note:")]
    assert any("divergence limit 0.00116" in n for n in notes)
    assert any("10,520 epochs" in n and "will stop short" in n for n in notes)
    assert any("--standardize" in n for n in notes)
    ref = sklearn_fit(tutorial_data().X.double().numpy(), tutorial_data().y.double().numpy())
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["optimum"]["coef"]["y"]["x"] == pytest.approx(ref.coef_[0, 0], rel=1e-10)
    assert summary["optimum"]["intercept"]["y"] == pytest.approx(ref.intercept_[0], rel=1e-10)
    assert summary["gap"]["relative_excess_loss"] == pytest.approx(21.0580 / 20.5321 - 1, abs=1e-4)


def test_standardize_reports_and_saves_coefficients_in_original_units(capsys, tmp_path, csv_file):
    path, data = csv_file
    X = data.X.numpy() * [1e3, 1.0, 1e-2] + [500.0, 0.0, -3.0]  # badly scaled columns
    write_table(tmp_path / "scaled.csv", {"a": X[:, 0], "b": X[:, 1], "c": X[:, 2], "y": data.y[:, 0].numpy()})
    code, _, err = run(capsys, "fit", tmp_path / "scaled.csv", "--standardize", "--lr", "0.3", "--epochs", "200",
                       "--dtype", "float64", "--save", tmp_path / "model", "--out", tmp_path / "out", "--no-plots")
    assert code == 0, err
    model = load_model(tmp_path / "model")
    ref = sklearn_fit(X, data.y[:, :1].numpy())
    np.testing.assert_allclose(model.weight, ref.coef_, rtol=1e-8)
    np.testing.assert_allclose(model.predict(X), ref.predict(X), rtol=1e-9)
    assert model.metadata["standardize"]["x_mean"] == pytest.approx(list(X.mean(axis=0)))


def test_validation_split_metrics_match_sklearn(capsys, tmp_path, csv_file):
    path, data = csv_file
    code, out, _ = run(capsys, "fit", path, "--target", "y1", "--features", "x1", "x2", "--validation-fraction", "0.25",
                       "--split-seed", "5", "--optimizer", "lbfgs", "--epochs", "100", "--dtype", "float64",
                       "--out", tmp_path / "out", "--no-plots")
    assert code == 0
    train_rows, val_rows = train_validation_split(300, 0.25, seed=5)
    X, y = data.X[:, :2].numpy(), data.y[:, 0].numpy()
    ref = sklearn_fit(X[train_rows], y[train_rows])
    pred = ref.predict(X[val_rows])
    val = json.loads((tmp_path / "out" / "summary.json").read_text())["metrics"]["validation"]
    assert val["mse"] == pytest.approx(mean_squared_error(y[val_rows], pred), rel=1e-8)
    assert val["mae"] == pytest.approx(mean_absolute_error(y[val_rows], pred), rel=1e-8)
    assert val["r2"] == pytest.approx(r2_score(y[val_rows], pred), rel=1e-8)
    assert "validation" in out
    rows = list(csv.DictReader(open(tmp_path / "out" / "history.csv")))
    assert len(rows) == 100 and all(r["val_loss"] and r["lr"] for r in rows)


def test_save_then_predict_writes_the_models_predictions(capsys, tmp_path, csv_file):
    path, data = csv_file
    assert run(capsys, "fit", path, "--target", "y1", "y2", "--optimizer", "lbfgs", "--epochs", "20",
               "--save", tmp_path / "m", "--out", tmp_path / "o", "--no-plots")[0] == 0
    code, _, err = run(capsys, "predict", tmp_path / "m", path, "-o", tmp_path / "pred.csv")
    assert code == 0, err
    model = json.loads((tmp_path / "m.json").read_text())
    assert model["feature_names"] == ["x1", "x2", "x3"]
    saved = load_model(tmp_path / "m.safetensors")
    import pyarrow.csv as pacsv

    table = pacsv.read_csv(tmp_path / "pred.csv")
    assert table.column_names == ["predicted_y1", "predicted_y2"]
    got = np.column_stack([table[name].to_numpy() for name in table.column_names])
    np.testing.assert_allclose(got, data.X.numpy() @ saved.weight.T + saved.bias, rtol=1e-12)
    # a file without the model's features is refused with one line
    write_table(tmp_path / "other.csv", {"x1": [1.0], "zz": [2.0]})
    code, _, err = run(capsys, "predict", tmp_path / "m", tmp_path / "other.csv", "-o", tmp_path / "p2.csv")
    assert code == 1 and "no column 'x2'" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "p2.csv").exists()


def test_saving_over_an_existing_model_needs_force(capsys, tmp_path):
    (tmp_path / "m.json").write_text("mine")
    code, out, err = run(capsys, "fit", "--save", tmp_path / "m", "--out", tmp_path / "o")
    assert code == 2 and "--force" in err and "epoch:" not in out
    assert (tmp_path / "m.json").read_text() == "mine"
    assert run(capsys, "fit", "--save", tmp_path / "m", "--force", "--out", tmp_path / "o")[0] == 0
    assert load_model(tmp_path / "m").feature_names == ("x",)


def test_solve_json_matches_sklearn_and_names_columns(capsys, tmp_path, csv_file):
    path, data = csv_file
    code, out, _ = run(capsys, "solve", path, "--target", "y2", "--features", "x3", "x1", "--json")
    assert code == 0
    result = json.loads(out)
    ref = sklearn_fit(data.X.numpy()[:, [2, 0]], data.y[:, 1].numpy())
    assert result["coef"]["y2"]["x3"] == pytest.approx(ref.coef_[0], rel=1e-10)
    assert result["coef"]["y2"]["x1"] == pytest.approx(ref.coef_[1], rel=1e-10)
    assert result["intercept"]["y2"] == pytest.approx(ref.intercept_, rel=1e-10)
    assert result["rank"] == 3 and result["warnings"] == []
    code, out, _ = run(capsys, "solve")
    assert "weight x" in out and "1.940072" in out and "2.528163" in out


def test_rank_deficient_file_gives_the_minimum_norm_solution_and_names_columns(capsys, tmp_path):
    rng = np.random.default_rng(0)
    a = rng.normal(size=30)
    write_table(tmp_path / "dup.csv", {"a": a, "a_copy": a, "y": 3 * a + 1 + rng.normal(size=30) * 0.1})
    code, out, err = run(capsys, "solve", tmp_path / "dup.csv", "--json")
    assert code == 0
    result = json.loads(out)
    ref = sklearn_fit(np.column_stack([a, a]), 3 * a)  # sklearn's minimum-norm split of the weight
    assert result["coef"]["y"]["a"] == pytest.approx(result["coef"]["y"]["a_copy"], rel=1e-10)
    assert ref.coef_[0] == pytest.approx(ref.coef_[1])
    assert result["rank"] == 2
    assert "'a'" in err and "'a_copy'" in err and "warning" in err


@pytest.mark.parametrize("content, args, words", [
    (None, [], "no such file"),
    ("x,y\n", [], "no data rows"),
    ("", [], "empty"),
    ("x,y\n1,2\n2,abc\n", [], "row 2"),
    ("x,y\n1,2\n2,nan\n", [], "NaN"),
    ("x,y\n1,2\n2,3\n", ["--target", "z"], "no column 'z'"),
    ("x,y\n1,2\n2,3\n", ["--target", "y", "--features", "x", "y"], "both a feature and the target"),
])
def test_bad_data_files_give_one_line_and_exit_1(capsys, tmp_path, content, args, words):
    path = tmp_path / "bad.csv"
    if content is not None:
        path.write_text(content)
    code, out, err = run(capsys, "fit", path, *args, "--out", tmp_path / "out")
    assert code == 1
    assert words.lower() in err.lower() and "bad.csv" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "epoch:" not in out and not (tmp_path / "out").exists()


def test_not_a_data_file(capsys, tmp_path):
    path = tmp_path / "data.parquet"
    path.write_bytes(b"\x00\x01 not parquet at all")
    code, _, err = run(capsys, "solve", path)
    assert code == 1 and "data.parquet" in err and len(err.strip().splitlines()) == 1
    (tmp_path / "data.xlsx").write_bytes(b"PK\x03\x04")
    code, _, err = run(capsys, "solve", tmp_path / "data.xlsx")
    assert code == 1 and ".csv" in err


def test_summary_agrees_with_statsmodels(capsys, tmp_path, csv_file):
    sm = pytest.importorskip("statsmodels.api")
    path, data = csv_file
    code, out, _ = run(capsys, "solve", path, "--target", "y1", "--summary", "--cov-type", "HC1", "--conf-level", "0.9",
                       "--json")
    assert code == 0
    terms = json.loads(out)["statistics"][0]["terms"]
    stats = {"params": [t["param"] for t in terms.values()], "std_err": [t["std_err"] for t in terms.values()],
             "conf_int": [t["conf_int"] for t in terms.values()], "r2": json.loads(out)["statistics"][0]["r2"]}
    assert list(terms) == ["intercept", "x1", "x2", "x3", "y2"]  # --target y1 leaves y2 among the features
    ref = sm.OLS(data.y[:, 0].numpy(), sm.add_constant(np.column_stack([data.X.numpy(), data.y[:, 1].numpy()]))).fit(
        cov_type="HC1")
    np.testing.assert_allclose(stats["params"], ref.params, rtol=1e-8)
    np.testing.assert_allclose(stats["std_err"], ref.bse, rtol=1e-8)
    np.testing.assert_allclose(stats["conf_int"], ref.conf_int(alpha=0.1), rtol=1e-8)
    assert stats["r2"] == pytest.approx(ref.rsquared, rel=1e-8)
    code, out, _ = run(capsys, "fit", path, "--target", "y1", "--summary", "--quiet", "--no-plots", "--out", tmp_path)
    assert code == 0 and "P>|t|" in out and "AIC" in out


def test_weights_column_fits_weighted_least_squares(capsys, tmp_path):
    sm = pytest.importorskip("statsmodels.api")
    rng = np.random.default_rng(3)
    x = rng.normal(size=80)
    w = rng.uniform(0.1, 3, size=80)
    y = 2 * x + 1 + rng.normal(size=80) / np.sqrt(w)
    write_table(tmp_path / "w.csv", {"x": x, "w": w, "y": y})
    code, out, err = run(capsys, "solve", tmp_path / "w.csv", "--weights", "w", "--summary", "--json")
    assert code == 0, err
    result = json.loads(out)
    ref = sm.WLS(y, sm.add_constant(x), weights=w).fit()
    assert list(result["coef"]["y"]) == ["x"]  # the weight column is not a feature
    assert result["coef"]["y"]["x"] == pytest.approx(ref.params[1], rel=1e-10)
    terms = result["statistics"][0]["terms"]
    assert [terms["intercept"]["std_err"], terms["x"]["std_err"]] == pytest.approx(list(ref.bse), rel=1e-8)
    code, _, err = run(capsys, "fit", tmp_path / "w.csv", "--weights", "w", "--optimizer", "lbfgs", "--epochs", "30",
                       "--dtype", "float64", "--no-plots", "--quiet", "--out", tmp_path / "o")
    assert code == 0, err
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["weight"][0][0] == pytest.approx(ref.params[1], rel=1e-7)
    assert summary["gap"]["relative_excess_loss"] < 1e-10
    w[5] = -1
    write_table(tmp_path / "neg.csv", {"x": x, "w": w, "y": y})
    code, _, err = run(capsys, "solve", tmp_path / "neg.csv", "--weights", "w")
    assert code == 1 and "row 6" in err and "negative" in err


def test_report_and_animation_flags_write_their_files(capsys, tmp_path):
    code, _, err = run(capsys, "fit", "--epochs", "5", "--report", "--animate", "--summary", "--out", tmp_path)
    assert code == 0, err
    html = (tmp_path / "report.html").read_text()
    assert "Statistics" in html and "P&gt;|t|" in html and "data:image/gif;base64," in html and "data:image/png;base64," in html
    from PIL import Image

    with Image.open(tmp_path / "fit.gif") as gif:
        assert gif.n_frames == 5


def test_bad_confidence_level_is_refused_before_training(capsys, tmp_path):
    code, out, err = run(capsys, "fit", "--summary", "--conf-level", "1.5", "--out", tmp_path)
    assert code == 2 and "confidence level" in err and "epoch:" not in out


def test_a_typo_in_a_numeric_column_is_an_error_not_a_dropped_feature(capsys, tmp_path):
    (tmp_path / "typo.csv").write_text("x1,x2,city,y\n1,2,a,3\n2,abc,b,5\n3,4,c,8\n4,5,d,9\n")
    code, out, err = run(capsys, "fit", tmp_path / "typo.csv", "--out", tmp_path / "o")
    assert code == 1 and "column 'x2' row 2 holds 'abc'" in err and "epoch:" not in out
    (tmp_path / "city.csv").write_text("x1,city,y\n1,a,3\n2,b,5\n3,c,8\n4,d,9\n")
    code, out, err = run(capsys, "solve", tmp_path / "city.csv", "--json")
    assert code == 0 and "left out column 'city'" in err
    assert list(json.loads(out)["coef"]["y"]) == ["x1"]


def test_output_folder_of_someone_else_is_not_overwritten(capsys, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "loss.png").write_text("my own picture")
    code, out, err = run(capsys, "fit", "--out", mine)
    assert code == 2 and "--force" in err and "epoch:" not in out
    assert (mine / "loss.png").read_text() == "my own picture"
    (tmp_path / "runs").mkdir()
    data = write_table(tmp_path / "runs" / "history.csv", dataset_columns(tutorial_data()))
    code, _, err = run(capsys, "fit", data, "--out", tmp_path / "runs")
    assert code == 2 and "choose another --out" in err
    assert read_dataset(data).n_samples == 50  # the data file is untouched


def test_a_run_folder_is_replaced_whole_and_files_are_readable_by_others(capsys, tmp_path, csv_file):
    import os
    import stat

    path, _ = csv_file
    assert run(capsys, "fit", "--epochs", "2", "--out", tmp_path / "run")[0] == 0
    assert (tmp_path / "run" / "data.png").exists()
    assert run(capsys, "fit", path, "--epochs", "2", "--out", tmp_path / "run")[0] == 0  # three features: no line plots
    assert not (tmp_path / "run" / "data.png").exists()  # no stale plot of the earlier run
    mask = os.umask(0)
    os.umask(mask)
    mode = stat.S_IMODE((tmp_path / "run" / "summary.json").stat().st_mode)
    assert mode == 0o666 & ~mask


def test_unwritable_save_path_is_refused_before_training(capsys, tmp_path):
    (tmp_path / "afile").write_text("x")
    code, out, err = run(capsys, "fit", "--save", tmp_path / "afile" / "model", "--out", tmp_path / "o")
    assert code == 2 and "is a file" in err and "epoch:" not in out and not (tmp_path / "o").exists()


def test_values_whose_squares_overflow_are_refused(capsys, tmp_path):
    (tmp_path / "big.csv").write_text("x,y\n1e300,1\n2e300,2\n3e300,4\n")
    for command in ("fit", "solve"):
        code, _, err = run(capsys, command, tmp_path / "big.csv", "--out", tmp_path / "o") if command == "fit" \
            else run(capsys, command, tmp_path / "big.csv")
        assert code == 1 and "overflow" in err and len(err.strip().splitlines()) == 1


def test_stopping_rule_that_stops_far_from_the_optimum_warns(tmp_path):
    import io

    from torchlinreg import ConvergenceWarning, TrainConfig
    from torchlinreg.pipeline import run_fit

    with pytest.warns(ConvergenceWarning, match="still .* above the optimum"):
        result = run_fit(tutorial_data(), TrainConfig(epochs=20000, tol=1e-6), stream=io.StringIO(), progress=False)
    assert result.history.status == "converged" and result.gap["relative_excess_loss"] > 1e-4
    with pytest.warns(ConvergenceWarning, match="was not met in 100 epochs"):
        run_fit(tutorial_data(), TrainConfig(epochs=100, tol=1e-9), stream=io.StringIO(), progress=False)


def test_a_loss_exploding_without_overflow_counts_as_divergence(capsys, tmp_path):
    code, out, err = run(capsys, "fit", "--optimizer", "adam", "--lr", "1e6", "--no-plots", "--out", tmp_path)
    assert code == 3 and "times its first value" in err
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["epochs_run"] == 1


def test_engines_agree_and_the_choice_is_printed_and_recorded(capsys, tmp_path, csv_file):
    path, _ = csv_file
    runs = {}
    for engine in ("gram", "data"):
        code, out, _ = run(capsys, "fit", path, "--target", "y1", "y2", "--lr", "0.2", "--epochs", "200",
                           "--momentum", "0.5", "--dtype", "float64", "--engine", engine, "--no-plots",
                           "--out", tmp_path / engine)
        assert code == 0 and f"engine: {engine}" in out
        runs[engine] = json.loads((tmp_path / engine / "history.json").read_text())
        assert json.loads((tmp_path / engine / "summary.json").read_text())["engine"] == engine
    gram, data = ([r["loss"] for r in runs[e]["records"]] for e in ("gram", "data"))
    assert gram == pytest.approx(data, rel=1e-10)
    _, out, _ = run(capsys, "fit", path, "--target", "y1", "--epochs", "3", "--no-plots", "--out", tmp_path / "a")
    assert "engine: gram" in out  # auto: full-batch MSE on a file
    _, out, _ = run(capsys, "fit", path, "--target", "y1", "--epochs", "3", "--batch-size", "32", "--no-plots",
                    "--out", tmp_path / "b")
    assert "engine: data (mini-batches" in out
    _, out, _ = run(capsys, "fit", "--epochs", "3", "--no-plots", "--out", tmp_path / "c")
    assert "engine: data (the tutorial run" in out
    code, _, err = run(capsys, "fit", path, "--engine", "gram", "--batch-size", "8", "--out", tmp_path / "d")
    assert code == 2 and "--engine gram" in err


def test_solve_streams_a_folder_of_parts_and_on_request(capsys, tmp_path):
    parts = tmp_path / "parts"
    parts.mkdir()
    data = [make_regression(n, 3, seed=s) for n, s in ((3000, 1), (2000, 2))]
    for i, d in enumerate(data):
        write_table(parts / f"part-{i}.parquet", dataset_columns(d))
    X = np.vstack([d.X.numpy() for d in data])
    y = np.vstack([d.y.numpy() for d in data])
    ref = sklearn_fit(X, y)
    code, out, _ = run(capsys, "solve", parts, "--json")
    assert code == 0
    got = json.loads(out)
    assert [got["coef"]["y"][f] for f in ("x1", "x2", "x3")] == pytest.approx(list(ref.coef_[0]), rel=1e-10)
    assert got["n_samples"] == 5000
    code, out, _ = run(capsys, "solve", parts / "part-0.parquet", "--stream", "--chunk-rows", "7", "--json")
    assert code == 0 and json.loads(out)["n_samples"] == 3000
