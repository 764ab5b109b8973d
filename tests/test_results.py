"""results.py, runs.py: one results object for a fit, as text and as HTML, live (run_fit) or read back (load_result).

The figures shown are checked against references computed here: statsmodels' OLS for the optimum and its
statistics, scikit-learn's metrics for the trained model, the files the fit wrote for a result read back.
"""

import base64
import io
import json
import re

import numpy as np
import pytest

import torchlinreg as tl
from torchlinreg.cli import main
from torchlinreg.config import TrainConfig
from torchlinreg.data import Dataset
from torchlinreg.errors import ResultFileError
from torchlinreg.fitting import run_fit
from torchlinreg.formats import write_table

from bounds import U64

sm = pytest.importorskip("statsmodels.api")
metrics = pytest.importorskip("sklearn.metrics")
Image = pytest.importorskip("PIL.Image")

FEATURES, TARGETS = ("size", "age", "<b>rooms</b>"), ("price", "rent & fees")  # HTML in names: escaped


@pytest.fixture(scope="module")
def fitted():
    data = tl.make_regression(200, 3, 2, seed=11)
    data = Dataset(data.X, data.y, FEATURES, TARGETS)
    result = run_fit(data, TrainConfig(optimizer="lbfgs", epochs=3, dtype="float64"), None, statistics=True,
                     quiet=True, plots=False)  # 3 epochs: the trained model is still visibly off the optimum
    return data, result


def table_row(text: str, name: str) -> list[str]:
    """The fields after ``name`` on the comparison's row for it."""
    line = next(line for line in text.splitlines() if line.startswith(f"  {name} "))
    return line[len(name) + 2:].split()


def display_bound(ref: float, digits: int) -> float:
    """Half a unit of the last digit shown, plus the two solvers' difference (backward-stable LS solves of a
    κ < 10 design: ≤ 1e3·u relative, see tests/test_statistics.py's RTOL) — relative to ``ref``."""
    return 0.5 * 10.0 ** -digits + 1e3 * U64 * abs(ref)


def test_summary_sets_the_trained_model_beside_the_optimum_then_its_metrics_then_the_statistics(fitted):
    data, result = fitted
    text = result.summary()
    assert isinstance(text, str) and repr(text) == str(text)  # shown as it reads, not as a quoted string
    X, Y = data.X.numpy(), data.y.numpy()
    for j, target in enumerate(TARGETS):
        ref = sm.OLS(Y[:, j], sm.add_constant(X)).fit()
        for i, feature in enumerate(FEATURES):
            trained, optimum, difference = table_row(text, f"weight {feature} -> {target}")
            assert trained == f"{result.weight[j, i]:.8f}"
            assert abs(float(optimum) - ref.params[i + 1]) <= display_bound(ref.params[i + 1], 8)
            assert difference == f"{result.weight[j, i] - result.solution.coef[j, i]:.4g}"
        trained, optimum, _ = table_row(text, f"bias -> {target}")
        assert trained == f"{result.bias[j]:.8f}"
        assert abs(float(optimum) - ref.params[0]) <= display_bound(ref.params[0], 8)
    assert "gap: the trained loss is" in text
    # The metrics are the trained model's (scikit-learn on its predictions), the statistics' R² the optimum's
    predicted = X @ result.weight.T + result.bias
    heading, columns, train = text[text.index("Metrics of the trained model:"):].splitlines()[:3]
    assert columns.split() == ["MSE", "RMSE", "MAE", "R²"] and train.split()[0] == "train"
    for shown, ref in zip(train.split()[1:], [metrics.mean_squared_error(Y, predicted),
                                              metrics.root_mean_squared_error(Y, predicted),
                                              metrics.mean_absolute_error(Y, predicted),
                                              metrics.r2_score(Y, predicted)]):
        assert float(shown) == pytest.approx(ref, rel=5e-6 + 1e3 * U64)  # 6 digits shown
    statistics = text[text.index("Statistics of the exact least-squares optimum"):]
    assert text.index("Metrics of the trained model") < text.index("Statistics of the exact least-squares optimum")
    for j, target in enumerate(TARGETS):
        ref = sm.OLS(Y[:, j], sm.add_constant(X)).fit()
        block = statistics[statistics.index(f"OLS regression of {target!r}"):]
        assert re.search(r"R²:\s+(\S+)", block)[1] == f"{ref.rsquared:.6g}"


def test_the_html_holds_the_same_tables_escaped_and_the_plots_inline(fitted):
    data, result = fitted
    page = result._repr_html_()
    assert "<script" not in page and "http" not in page and "<b>rooms" not in page
    for j, target in enumerate(TARGETS):
        row = (f"<tr><th>weight &lt;b&gt;rooms&lt;/b&gt; → {target.replace('&', '&amp;')}</th>"
               f"<td>{result.weight[j, 2]:.8f}</td><td>{result.solution.coef[j, 2]:.8f}</td>")
        assert row in page, target
        assert f"<caption>OLS regression of &#x27;{target.replace('&', '&amp;')}&#x27;</caption>" in page
    train = result.metrics["train"]
    assert "<tr><th>train</th>" + "".join(f"<td>{train[k]:.6g}</td>" for k in ("mse", "rmse", "mae", "r2")) in page
    assert page.index("Metrics of the trained model") < page.index("Statistics of the exact least-squares optimum")
    images = re.findall(r'<img src="data:image/png;base64,([^"]+)" alt="([^"]*)"', page)
    assert len(images) == 3  # loss, residuals, predicted: no line to draw for 3 features
    for payload, _ in images:
        with Image.open(io.BytesIO(base64.b64decode(payload, validate=True))) as im:
            im.verify()


def test_the_command_labels_the_trained_models_r2_and_the_optimums_apart(tmp_path, capsys):
    assert main(["fit", "--summary", "--quiet", "--no-plots", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    summary = json.loads((tmp_path / "summary.json").read_text())
    trained_r2, optimum_r2 = summary["trained"]["metrics"]["train"]["r2"], summary["optimum"]["statistics"][0]["r2"]
    metrics_at, statistics_at = out.index("Metrics of the trained model:"), out.index(
        "Statistics of the exact least-squares optimum (not of the trained model: the R² below is the optimum's)")
    assert metrics_at < out.index(f"{trained_r2:14.6g}") < statistics_at < out.index(f"R²:{'':4}")
    assert out.index(f"{optimum_r2:.6g}") > statistics_at


# --- a run's folder read back ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    """``torchlinreg fit`` on a file with two targets and a held-out split, plots and statistics on."""
    folder = tmp_path_factory.mktemp("run")
    data = tl.make_regression(120, 2, 2, seed=5)
    write_table(folder / "data.csv", {"size": data.X[:, 0].numpy(), "age": data.X[:, 1].numpy(),
                                      "price": data.y[:, 0].numpy(), "rent": data.y[:, 1].numpy()})
    flags = ["--target", "price", "rent", "--optimizer", "lbfgs", "--epochs", "4", "--dtype", "float64",
             "--validation-fraction", "0.25", "--summary", "--quiet"]
    assert main(["fit", str(folder / "data.csv"), *flags, "--out", str(folder / "out")]) == 0
    return folder


def test_a_run_read_back_shows_what_the_run_and_its_summary_file_hold(run_folder, capsys):
    out = run_folder / "out"
    summary = json.loads((out / "summary.json").read_text())
    loaded = tl.load_result(out)
    # the same figures as the file: JSON keeps a float64 exactly
    assert loaded.to_dict() == summary and loaded.data is None
    np.testing.assert_array_equal(loaded.weight, summary["trained"]["weight"])
    assert loaded.metrics == summary["trained"]["metrics"] and set(loaded.metrics) == {"train", "validation"}
    assert loaded.optimum["coef"] == summary["optimum"]["coef"]
    # ... and as the same fit run here: the same computation on the same machine gives the same bits
    settings = summary["settings"]
    result = run_fit(tl.read_dataset(run_folder / "data.csv", target=["price", "rent"]), TrainConfig(**settings),
                     None, validation_fraction=0.25, statistics=True, quiet=True, plots=False)
    np.testing.assert_array_equal(loaded.weight, result.weight)
    np.testing.assert_array_equal(loaded.bias, result.bias)
    assert loaded.metrics == result.metrics and loaded.gap == pytest.approx(result.gap, rel=0, abs=0)
    assert [list(row.values()) for row in loaded.optimum["coef"].values()] == result.solution.coef.tolist()
    assert loaded.summary() == result.summary()
    assert [s.summary() for s in loaded.statistics] == [s.summary() for s in result.statistics]
    # the notebook's view: the same tables, the folder's own PNG files inline
    page = loaded._repr_html_()
    shown = [base64.b64decode(p) for p in re.findall(r'src="data:image/png;base64,([^"]+)"', page)]
    assert shown == [(out / name).read_bytes() for name in ("loss.png", "residuals.png", "predicted_vs_actual.png")]
    assert page.split("<h4>Plots</h4>")[0] == result._repr_html_().split("<h4>Plots</h4>")[0]


def test_a_summary_of_the_earlier_layout_is_read_too(run_folder, tmp_path):
    """summary.json before the trained model and the optimum were labelled apart: weight, bias, metrics and
    statistics at the top."""
    import shutil

    out = tmp_path / "old"
    shutil.copytree(run_folder / "out", out)
    record = json.loads((out / "summary.json").read_text())
    trained, statistics = record.pop("trained"), record["optimum"].pop("statistics")
    record.update(weight=trained["weight"], bias=trained["bias"], metrics=trained["metrics"], statistics=statistics)
    (out / "summary.json").write_text(json.dumps(record))
    assert tl.load_result(out).summary() == tl.load_result(run_folder / "out").summary()


def damage(name: str, change):
    """``change(text) -> text`` of one file of the run."""
    return name, change


def edit(key_path, value):
    """summary.json with the entry at ``key_path`` set to ``value``."""
    def change(text):
        record = json.loads(text)
        target = record
        for key in key_path[:-1]:
            target = target[key]
        target[key_path[-1]] = value
        return json.dumps(record)
    return damage("summary.json", change)


DEEP = "[" * 100_000 + "]" * 100_000
DAMAGES = {
    "no summary": (damage("summary.json", None), r"summary\.json' is missing: its folder is not the output folder"),
    "no history": (damage("history.json", None), r"history\.json' is missing"),
    "truncated": (damage("summary.json", lambda t: t[:len(t) // 2]), "is not valid JSON, perhaps truncated"),
    "not UTF-8": (damage("summary.json", lambda t: "\udcff"), "is not valid JSON"),
    "deeply nested": (damage("summary.json", lambda t: DEEP), "nested thousands of levels deep"),
    "an array": (damage("summary.json", lambda t: "[1, 2]"), "holds a JSON list, not an object"),
    "not ours": (damage("summary.json", lambda t: '{"weight": 1}'), "is not a torchlinreg fit's summary"),
    "names": (edit(["features"], "size"), "has no valid 'features'"),
    "shape": (edit(["trained", "weight"], [[1.0, 2.0]]), r"'trained' 'weight' \(numbers of shape \(2, 2\)\)"),
    "deep weight": (edit(["trained", "weight"], json.loads("[" * 500 + "]" * 500)), "'trained' 'weight'"),
    "a text": (edit(["optimum", "coef", "rent", "age"], "1.5"), r"'optimum' 'coef' 'rent' 'age' \(a number"),
    "missing": (edit(["gap"], {}), "has no 'gap' 'trained_loss'"),
    "statistics": (edit(["optimum", "statistics"], [{"term_names": ["x"]}]), "damaged statistics for target 1"),
    "history": (damage("history.json", lambda t: t.replace('"epoch": 2', '"epoch": "2"')), "damaged record 2"),
}


@pytest.mark.parametrize("case", sorted(DAMAGES))
def test_a_damaged_folder_is_one_line_naming_the_file(run_folder, tmp_path, case):
    import shutil

    out = tmp_path / "run"
    shutil.copytree(run_folder / "out", out)
    (name, change), message = DAMAGES[case]
    path = out / name
    if change is None:
        path.unlink()
    else:
        path.write_bytes(change(path.read_text()).encode("utf-8", "surrogateescape"))
    with pytest.raises(ResultFileError, match=message) as info:
        tl.load_result(out)
    assert "\n" not in str(info.value) and name in str(info.value)
    error = info.value
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)  # nothing chained


def test_no_folder_is_named(tmp_path):
    with pytest.raises(ResultFileError, match="no folder at .*absent'; pass the output folder of a torchlinreg fit"):
        tl.load_result(tmp_path / "absent")
