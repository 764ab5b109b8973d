"""Fitting real files end to end through the command, against scikit-learn computed here."""

import csv
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from sklearn.linear_model import LinearRegression
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

from bounds import U64, cond, gamma
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


def sklearn_error(X, y) -> tuple[float, float]:
    """Bounds on |scikit-learn's coefficients − the exact least-squares ones| (normwise, one target) and on its
    intercept's error. scikit-learn centres X and y and calls a backward-stable solver (gelsd): its solution is
    exact for Xc + ΔX with ‖ΔX‖_F ≤ γ_{md}·‖Xc‖_F (Higham Thm 20.3; the centring's own rounding is ≤ γ_m·‖X‖_F,
    hence the ‖X‖/‖Xc‖ factor, √d for the 2-norm), so ‖Δcoef‖ ≤ ε·κ·(2‖coef‖ + κ·‖r‖/‖Xc‖₂) (Higham 20.1) with
    κ = cond(X) of the centred columns; intercept = ȳ − x̄·coef adds |x̄|·‖Δcoef‖ and a few roundings. ×10 for
    the constants. The library's solution is refined in double-double to a few ulps, so this bounds the gap."""
    X = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
    y = np.asarray(y, dtype=np.float64).ravel()
    m, d = X.shape
    Xc, yc = X - X.mean(axis=0), y - y.mean()
    coef = np.linalg.lstsq(Xc, yc, rcond=None)[0]
    kappa = cond(X)
    eps = 10 * gamma(m * d) * np.sqrt(d) * np.linalg.norm(X) / np.linalg.norm(Xc)
    d_coef = eps * kappa * (2 * np.linalg.norm(coef) + kappa * np.linalg.norm(yc - Xc @ coef) / np.linalg.norm(Xc, 2))
    x_bar = np.abs(X.mean(axis=0))
    d_intercept = np.linalg.norm(x_bar) * d_coef + 10 * gamma(m + d) * (abs(y.mean()) + x_bar @ np.abs(coef))
    return d_coef, d_intercept


def ols_error(A, b) -> dict:
    """Bounds for comparing the library's statistics with statsmodels' for the design A (with its constant column)
    and target b. Both solve backward stably: exact for A + ΔA, ‖ΔA‖_F ≤ ε‖A‖_F, ε = γ_{mn}·√n (Higham Thm 20.3, √n
    for the 2-norm), ×10 for the constants. Then (Higham 20.1) ‖Δθ‖ ≤ ε·κ·(2‖θ‖ + κ‖r‖/‖A‖₂), the residuals
    ‖Δr‖ ≤ ε·(1 + 2κ)·‖b‖; a diagonal entry of (AᵀA)⁻¹ moves by ≤ 2κε relative (its first-order change is
    −2 zᵀΔA(AᵀA)⁻¹e_i with ‖z‖² the entry), twice in the HC1 sandwich, and the r_i² in its middle by ≤ 2‖Δr‖/‖r‖;
    a standard error is the square root. κ is the larger of the centred and uncentred condition numbers (the
    library centres, statsmodels does not). Twice each bound, for the two programs."""
    A, b = np.asarray(A, dtype=np.float64), np.asarray(b, dtype=np.float64)
    m, n = A.shape
    theta = np.linalg.lstsq(A, b, rcond=None)[0]
    r = b - A @ theta
    kappa = max(np.linalg.cond(A), cond(A[:, 1:]))
    eps = 10 * gamma(m * n) * np.sqrt(n)
    residual = eps * (1 + 2 * kappa) * np.linalg.norm(b) / np.linalg.norm(r)  # ‖Δr‖/‖r‖
    return {"params": 2 * eps * kappa * (2 * np.linalg.norm(theta) + kappa * np.linalg.norm(r) / np.linalg.norm(A, 2)),
            "std_err": 2 * (2 * kappa * eps + residual),  # relative
            "residual": 2 * residual}


def product_error(X, W, b) -> np.ndarray:
    """How far two float64 evaluations of X @ W.T + b (different BLAS, order or blocking) may be apart: each is
    within γ_{d+1}·(|X||W|ᵀ + |b|) of the exact value (Higham 3.5)."""
    X, W, b = (np.asarray(a, dtype=np.float64) for a in (X, W, b))
    return 2 * gamma(X.shape[1] + 1) * (np.abs(X) @ np.abs(W).T + np.abs(b))


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
    # PyTorch's X @ W.T + b (+ 0·noise) against NumPy's: a few ulps of |X||W| + |b| (product_error)
    bound = product_error(X, [[1, 2], [3, 4]], [5, 6])
    assert (np.abs(table["y1"].to_numpy() - (X @ [1, 2] + 5)) <= bound[:, 0]).all()
    assert (np.abs(table["y2"].to_numpy() - (X @ [3, 4] + 6)) <= bound[:, 1]).all()
    code, _, err = run(capsys, "make-data", "-o", tmp_path / "m.parquet")
    assert code == 2 and "--force" in err


def test_fit_a_csv_reaches_the_optimum_and_reports_the_gap(capsys, tmp_path, csv_file):
    path, data = csv_file
    code, out, err = run(capsys, "fit", path, "--target", "y1", "y2", "--optimizer", "lbfgs", "--epochs", "100",
                         "--dtype", "float64", "--out", tmp_path / "out")
    assert code == 0, err
    ref = sklearn_fit(data.X.numpy(), data.y.numpy())
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    np.testing.assert_allclose(summary["trained"]["weight"], ref.coef_, atol=1e-7)  # L-BFGS's convergence, not rounding
    # the refined optimum (a few ulps) against scikit-learn's: sklearn_error's bound
    np.testing.assert_allclose(summary["optimum"]["intercept"]["y2"], ref.intercept_[1], rtol=0,
                               atol=sklearn_error(data.X.numpy(), data.y[:, 1].numpy())[1])
    assert summary["gap"]["relative_excess_loss"] < 1e-10  # convergence: rounding of the two losses is ~γ_n ≈ 1e-13
    assert "Trained model and the exact least-squares optimum" in out and "weight x3 -> y2" in out
    # R² at the trained (1e-7 from the optimum: second order there) and at sklearn's parameters: rel 1e-6 is slack
    # over ~‖ΔW‖²·‖X‖²/SS_tot plus the sums' γ_n ≈ 1e-13
    assert summary["trained"]["metrics"]["train"]["r2"] == pytest.approx(r2_score(data.y.numpy(), ref.predict(data.X.numpy())))


def test_tutorial_run_says_why_50_epochs_stop_short(capsys, tmp_path):
    code, out, _ = run(capsys, "fit", "--out", tmp_path)
    lines = out.splitlines()
    first_epoch = next(i for i, ln in enumerate(lines) if ln.startswith("epoch:  1 "))
    notes = [ln for ln in lines[:first_epoch] if ln.startswith("note:")]
    assert any("divergence limit 0.00116" in n for n in notes)
    assert any("10,520 epochs" in n and "will stop short" in n for n in notes)
    assert any("--standardize" in n for n in notes)
    X, y = tutorial_data().X.double().numpy(), tutorial_data().y.double().numpy()
    ref = sklearn_fit(X, y)
    summary = json.loads((tmp_path / "summary.json").read_text())
    d_coef, d_intercept = sklearn_error(X, y)  # the refined optimum against scikit-learn's
    assert summary["optimum"]["coef"]["y"]["x"] == pytest.approx(ref.coef_[0, 0], rel=0, abs=d_coef)
    assert summary["optimum"]["intercept"]["y"] == pytest.approx(ref.intercept_[0], rel=0, abs=d_intercept)
    # the float32 run's loss (21.0580) and the optimum (20.5321) printed to 4 decimals: half a unit each moves the
    # ratio by ≤ 5e-5·(1/20.53 + 21.06/20.53²) ≈ 5e-6; the float32 training bound on the final loss
    # (test_reproduction.tutorial_float32_error: ≈ 3.2e-4), twice for the two runs, by ≈ 3.2e-5: ≈ 3.7e-5 < 1e-4
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
    # 200 epochs of gradient descent on the standardised problem: convergence error, not rounding (the solve's
    # rounding, κ·u with κ = 1e5 of the raw columns, is ≈ 1e-11 and sklearn's the same)
    np.testing.assert_allclose(model.weight, ref.coef_, rtol=1e-8)
    np.testing.assert_allclose(model.predict(X), ref.predict(X), rtol=1e-9)
    # the library's column means against NumPy's: sums of n = 300 terms, ≤ 2γ_n·mean|x| apart ≈ 7e-14 of mean|x|,
    # relative to |mean| ≤ 7e-14·mean|x|/|mean| (≤ 3e-12 here) ≪ pytest.approx's 1e-6
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
    val = json.loads((tmp_path / "out" / "summary.json").read_text())["trained"]["metrics"]["validation"]
    # the L-BFGS-trained model's metrics against the optimum's: its convergence, not rounding (the metrics' own
    # rounding is ≤ 2γ_{n+3} ≈ 3e-14 relative, the optimum's κ·u ≈ 1e-14)
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
    # the same product, perhaps blocked differently (chunks): a few ulps of |X||W| + |b| (product_error)
    bound = product_error(data.X.numpy(), saved.weight, saved.bias)
    assert (np.abs(got - (data.X.numpy() @ saved.weight.T + saved.bias)) <= bound).all()
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
    d_coef, d_intercept = sklearn_error(data.X.numpy()[:, [2, 0]], data.y[:, 1].numpy())  # refined vs sklearn
    assert result["coef"]["y2"]["x3"] == pytest.approx(ref.coef_[0], rel=0, abs=d_coef)
    assert result["coef"]["y2"]["x1"] == pytest.approx(ref.coef_[1], rel=0, abs=d_coef)
    assert result["intercept"]["y2"] == pytest.approx(ref.intercept_, rel=0, abs=d_intercept)
    assert result["rank"] == 3 and result["warnings"] == []
    code, out, _ = run(capsys, "solve")
    # printed to 6 decimals from the refined solution (a few ulps): the same digits on every CPU
    assert "weight x" in out and "1.940072" in out and "2.528163" in out


def test_rank_deficient_file_gives_the_minimum_norm_solution_and_names_columns(capsys, tmp_path):
    rng = np.random.default_rng(0)
    a = rng.normal(size=30)
    write_table(tmp_path / "dup.csv", {"a": a, "a_copy": a, "y": 3 * a + 1 + rng.normal(size=30) * 0.1})
    code, out, err = run(capsys, "solve", tmp_path / "dup.csv", "--json")
    assert code == 0
    result = json.loads(out)
    ref = sklearn_fit(np.column_stack([a, a]), 3 * a)  # sklearn's minimum-norm split of the weight
    # the minimum-norm split of one weight over two identical columns: both halves come from the same values by the
    # same operations (equal here); rel=1e-10 leaves room for a few ulps of rounding in the split
    assert result["coef"]["y"]["a"] == pytest.approx(result["coef"]["y"]["a_copy"], rel=1e-10)
    assert ref.coef_[0] == pytest.approx(ref.coef_[1])  # sklearn's SVD split: equal to ~u·‖coef‖, ≪ rel 1e-6
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
    bound = ols_error(ref.model.exog, ref.model.endog)  # backward-stable solves and their statistics (ols_error)
    np.testing.assert_allclose(stats["params"], ref.params, rtol=0, atol=bound["params"])
    np.testing.assert_allclose(stats["std_err"], ref.bse, rtol=bound["std_err"])
    t = ref.conf_int(alpha=0.1)[:, 1] - ref.params  # t·se
    gap = np.abs(np.asarray(stats["conf_int"]) - ref.conf_int(alpha=0.1))
    assert (gap <= (bound["params"] + bound["std_err"] * np.abs(t))[:, None]).all()
    # R² = 1 − ‖r‖²/SS_tot: |ΔR²| ≤ (1 − R²)·(2‖Δr‖/‖r‖ + γ_n) + a rounding
    r2_bound = (1 - ref.rsquared) * (2 * bound["residual"] + gamma(300)) + 4 * U64
    assert stats["r2"] == pytest.approx(ref.rsquared, rel=0, abs=r2_bound)
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
    bound = ols_error(ref.model.wexog, ref.model.wendog)  # the whitened (√w-scaled) problem both solve
    assert result["coef"]["y"]["x"] == pytest.approx(ref.params[1], rel=0, abs=bound["params"])
    terms = result["statistics"][0]["terms"]
    assert [terms["intercept"]["std_err"], terms["x"]["std_err"]] == pytest.approx(list(ref.bse), rel=bound["std_err"])
    code, _, err = run(capsys, "fit", tmp_path / "w.csv", "--weights", "w", "--optimizer", "lbfgs", "--epochs", "30",
                       "--dtype", "float64", "--no-plots", "--quiet", "--out", tmp_path / "o")
    assert code == 0, err
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["trained"]["weight"][0][0] == pytest.approx(ref.params[1], rel=1e-7)  # L-BFGS's convergence, not rounding
    assert summary["gap"]["relative_excess_loss"] < 1e-10  # convergence: rounding of the two losses is ~γ_n ≈ 1e-14
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
    from torchlinreg.fitting import run_fit

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
    path, dataset = csv_file
    runs = {}
    for engine in ("gram", "data"):
        code, out, _ = run(capsys, "fit", path, "--target", "y1", "y2", "--lr", "0.2", "--epochs", "200",
                           "--momentum", "0.5", "--dtype", "float64", "--engine", engine, "--no-plots",
                           "--out", tmp_path / engine)
        assert code == 0 and f"engine: {engine}" in out
        runs[engine] = json.loads((tmp_path / engine / "history.json").read_text())
        assert json.loads((tmp_path / engine / "summary.json").read_text())["engine"] == engine
    gram, data = ([r["loss"] for r in runs[e]["records"]] for e in ("gram", "data"))
    bounds = engine_gap(dataset, runs["data"]["records"], 0.2, 0.5)
    assert all(abs(g - v) <= bound for g, v, bound in zip(gram, data, bounds, strict=True))
    _, out, _ = run(capsys, "fit", path, "--target", "y1", "--epochs", "3", "--no-plots", "--out", tmp_path / "a")
    assert "engine: gram" in out  # auto: full-batch MSE on a file
    _, out, _ = run(capsys, "fit", path, "--target", "y1", "--epochs", "3", "--batch-size", "32", "--no-plots",
                    "--out", tmp_path / "b")
    assert "engine: data (mini-batches" in out
    _, out, _ = run(capsys, "fit", "--epochs", "3", "--no-plots", "--out", tmp_path / "c")
    assert "engine: data (the tutorial run" in out
    code, _, err = run(capsys, "fit", path, "--engine", "gram", "--batch-size", "8", "--out", tmp_path / "d")
    assert code == 2 and "--engine gram" in err


def engine_gap(dataset, records, lr, mu) -> list[float]:
    """First-order bounds on |loss_gram − loss_data| per epoch of the same float64 heavy-ball run.

    B = [X, 1, y] (n × p), z = [θ; −I], r = B z, L = ‖r‖²/(n m). The gram engine works from R, the exact R factor of
    B + Δ with ‖Δ‖_F ≤ ε‖B‖_F, ε = γ_{np} (backward-stable QR, Higham 19.4): its loss is off by ≤ (2‖r‖ε‖B‖‖z‖ +
    γ_p‖R‖²‖z‖²)/(n m), its gradient by ≤ 2(ε‖B‖(‖r‖ + ‖B‖‖z‖) + γ_p‖R‖²‖z‖)/(n m). The data engine's residuals
    are off by γ_{d+2}·(|x||W| + |b| + |y|) each: loss ≤ (γ_{nm}‖r‖² + 2|r|·Δr)/(n m), gradient ≤ 2(γ_{n+2}|A|ᵀ|r| +
    |A|ᵀΔr)/(n m). The two trajectories then part by e_k ≤ Σ_j ‖M^{k−1−j}‖₂·‖δ_j‖, M = [[I − lr·H, −lr·μ], [H, μ]]
    the heavy ball's step on (θ, buffer), δ_j both engines' gradient errors (×(1 + lr)) and the steps' roundings;
    a loss moves by ‖∇L‖·e + λmax·e²/2. ×10 on all for the constants."""
    X, y = dataset.X.numpy(), dataset.y.numpy()
    n, d = X.shape
    m = y.shape[1]
    A = np.hstack([X, np.ones((n, 1))])
    B = np.hstack([A, y])
    norm_B, p, nm = np.linalg.norm(B), B.shape[1], n * m
    eps = gamma(n * p)
    H = np.kron(np.eye(m), 2 / nm * A.T @ A)  # the Hessian in θ stacked by target
    q = len(H)
    M = np.block([[np.eye(q) - lr * H, -lr * mu * np.eye(q)], [H, mu * np.eye(q)]])
    lam = np.linalg.eigvalsh(H)[-1]
    powers = [np.eye(2 * q)]
    for _ in records:
        powers.append(M @ powers[-1])
    norms = [np.linalg.norm(P, 2) for P in powers]
    deltas, bounds, buffer = [], [], np.zeros(q)
    for k, rec in enumerate(records):
        W, b = np.array(rec["params"]["linear.weight"]), np.array(rec["params"]["linear.bias"])
        theta = np.vstack([W.T, b])  # (d + 1, m)
        z = np.vstack([theta, -np.eye(m)])
        r = B @ z  # (n, m)
        dr = gamma(d + 2) * (np.abs(X) @ np.abs(W).T + np.abs(b) + np.abs(y))
        norm_r, norm_z = np.linalg.norm(r), np.linalg.norm(z)
        loss_gram = (2 * norm_r * eps * norm_B * norm_z + gamma(p) * norm_B**2 * norm_z**2) / nm
        loss_data = (gamma(nm) * norm_r**2 + 2 * np.sum(np.abs(r) * dr)) / nm
        grad_gram = 2 * (eps * norm_B * (norm_r + norm_B * norm_z) + gamma(p) * norm_B**2 * norm_z) / nm
        grad_data = 2 * np.linalg.norm(gamma(n + 2) * np.abs(A).T @ np.abs(r) + np.abs(A).T @ dr) / nm
        g = (2 / nm * A.T @ r).T.ravel()  # ∇L stacked by target
        e = sum(norms[k - 1 - j] * deltas[j] for j in range(k))
        bounds.append(10 * (loss_gram + loss_data + np.linalg.norm(g) * e + lam * e**2 / 2))
        buffer = mu * buffer + g if k else g
        steps = gamma(3) * (np.linalg.norm(theta) + (1 + lr) * (mu * np.linalg.norm(buffer) + np.linalg.norm(g)))
        deltas.append((1 + lr) * (grad_gram + grad_data) + 2 * steps)
    return bounds


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
    d_coef, _ = sklearn_error(X, y)  # the refined, streamed optimum against scikit-learn's
    assert [got["coef"]["y"][f] for f in ("x1", "x2", "x3")] == pytest.approx(list(ref.coef_[0]), rel=0, abs=d_coef)
    assert got["n_samples"] == 5000
    code, out, _ = run(capsys, "solve", parts / "part-0.parquet", "--stream", "--chunk-rows", "7", "--json")
    assert code == 0 and json.loads(out)["n_samples"] == 3000


def test_quiet_prints_nothing_and_still_writes_the_files(tmp_path, capsys):
    """Issue 14: `run_fit(..., quiet=True)` prints nothing (no epoch lines, bar, notes or tables); the command's
    --quiet keeps its meaning: no epoch lines and no bar, the tables still printed."""
    import io

    from torchlinreg import TrainConfig
    from torchlinreg.fitting import run_fit

    stream = io.StringIO()
    result = run_fit(tutorial_data(), TrainConfig(epochs=3), tmp_path / "run", quiet=True, stream=stream)
    out = capsys.readouterr()
    assert stream.getvalue() == "" and out.out == "" and out.err == ""
    assert (tmp_path / "run" / "summary.json").exists() and len(result.history) == 3
    assert main(["fit", "--epochs", "3", "--quiet", "--no-plots", "--out", str(tmp_path / "cli")]) == 0
    printed = capsys.readouterr().out
    assert "epoch:" not in printed and "Current weight:" in printed and "optimum" in printed.lower()
