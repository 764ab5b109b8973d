"""The public figure functions (torchlinreg.plot_*, figures.result_figures): a Figure from a fit's result or from
explicit data and coefficients, with the panels and titles of the files a run writes, and the values drawn
compared with the data and the coefficients given."""

import numpy as np
import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

import torchlinreg as tl
from bounds import gamma
from torchlinreg.figures import result_figures
from torchlinreg.plots import PLOT_FILES, PlotData

PUBLIC = ["plot_data", "plot_loss", "plot_model", "plot_residuals", "plot_qq", "plot_predicted",
          "plot_residuals_vs_features"]


@pytest.fixture(scope="module")
def result():
    return tl.run_fit(tl.tutorial_data(), out_dir=None, quiet=True)


def _titles(fig) -> list[str]:
    above = [fig._suptitle.get_text()] if fig._suptitle is not None else []
    return above + [ax.get_title() for ax in fig.axes]


def test_the_functions_are_exported_from_the_package():
    from torchlinreg import figures

    for name in PUBLIC:
        assert name in tl.__all__ and getattr(tl, name) is getattr(figures, name)
        assert "Returns" in getattr(figures, name).__doc__  # numpydoc
    assert "result_figures" not in tl.__all__  # torchlinreg.figures.result_figures


def test_from_a_fit_result(result, capsys):
    expected = {"plot_data": ["Data"], "plot_loss": ["Loss", "Excess over the optimum"],
                "plot_model": ["Current Model"], "plot_residuals": ["Residuals"],
                "plot_qq": ["Normal Q-Q plot of the residuals"], "plot_predicted": ["Predicted vs actual"],
                "plot_residuals_vs_features": ["Residuals against the features"]}
    for name, titles in expected.items():
        fig = getattr(tl, name)(result)
        assert isinstance(fig, Figure) and isinstance(fig.canvas, FigureCanvasAgg)
        assert len(fig.axes) == len(titles)
        assert [t[:len(e)] for t, e in zip(_titles(fig), titles)] == titles, name
    assert capsys.readouterr() == ("", "")  # quiet=True: nothing printed, and the figures print nothing either


def test_the_result_figures_show_the_results_numbers(result):
    x, y = result.data.X.double().numpy()[:, 0], result.data.y.double().numpy()[:, 0]
    w, b = result.weight[0, 0], result.bias[0]
    line = tl.plot_model(result).axes[0].get_lines()[0]
    # the tutorial's drawing of the line: w·x + b in Python floats at the smallest and largest x (exact inputs)
    assert list(line.get_xdata()) == [x.min(), x.max()]
    assert list(line.get_ydata()) == [float(x.min()) * w + b, float(x.max()) * w + b]
    initial = tl.plot_model(result, initial=True).axes[0]
    w0, b0 = result.history.initial_params["linear.weight"][0][0], result.history.initial_params["linear.bias"][0]
    assert initial.get_title() == "Initial Model" and list(initial.get_lines()[0].get_ydata()) == [
        float(x.min()) * w0 + b0, float(x.max()) * w0 + b0]
    assert not [c for c in initial.collections if "band" in c.get_label()]
    assert [c for c in tl.plot_model(result).axes[0].collections if "band" in c.get_label()]
    residuals = tl.plot_residuals(result).axes[0].collections[0].get_offsets()[:, 1]
    # y − (x·w + b) in float64, NumPy's BLAS and this test's: each within γ₃(|x w| + |b| + |y|) of the exact value
    bound = 2 * gamma(3) * (np.abs(x * w) + abs(b) + np.abs(y))
    assert (np.abs(residuals - (y - (x * w + b))) <= bound).all()
    top, _ = tl.plot_loss(result).axes
    assert list(top.get_lines()[0].get_ydata()) == result.history.losses
    assert top.get_lines()[1].get_ydata()[0] == result.solution.loss  # the optimum's dashed line


def test_result_figures_are_the_files_of_a_run(result):
    figures = result_figures(result)
    assert list(figures) == list(PLOT_FILES)
    assert all(isinstance(fig, Figure) for fig in figures.values())
    assert _titles(figures["initial"]) == ["Initial Model"] and _titles(figures["current"]) == ["Current Model"]
    wide = tl.run_fit(tl.make_regression(60, 3, 2, noise=0.5), out_dir=None, quiet=True)
    figures = result_figures(wide)
    assert list(figures) == ["loss", "residuals", "predicted", "qq", "residuals_features"]  # no line over 3 features
    assert [len(figures[name].axes) for name in figures] == [2, 2, 2, 2, 2 * 3]


def test_from_explicit_data_and_coefficients():
    data = tl.tutorial_data()
    x, y = data.X.double().numpy()[:, 0], data.y.double().numpy()[:, 0]
    for table in (data, PlotData.of(data)):
        model = tl.plot_model(table, weight=[[2.0]], bias=[1.0])
        assert _titles(model) == ["Current Model"]
        assert list(model.axes[0].get_lines()[0].get_ydata()) == [2 * x.min() + 1, 2 * x.max() + 1]  # exact: integers
        # the tutorial's values are integers: y − (2x + 1) is exact in float64
        for fig in (tl.plot_residuals(table, [2.0], 1.0), tl.plot_residuals(table, np.array([[2.0]]), np.array([1.0]))):
            np.testing.assert_array_equal(fig.axes[0].collections[0].get_offsets()[:, 1], y - (2 * x + 1))
        assert _titles(tl.plot_data(table)) == ["Data"]
        assert _titles(tl.plot_qq(table, [2.0])) == ["Normal Q-Q plot of the residuals"]  # bias 0
    history = tl.train(tl.build_model(), data.X, data.y, tl.TrainConfig(epochs=4))
    assert len(tl.plot_loss(history).axes) == 1 and len(tl.plot_loss(history, 1.0).axes) == 2


def test_from_a_dataframe_with_named_targets():
    pd = pytest.importorskip("pandas")
    data = tl.make_regression(40, 2, 2, noise=0.5)
    frame = pd.DataFrame(np.hstack([data.X.numpy(), data.y.numpy()]), columns=["u", "v", "a", "b"])
    W, b = np.array([[1.0, -2.0], [0.5, 3.0]]), np.array([0.25, -1.0])
    fig = tl.plot_predicted(frame, W, b, target=["a", "b"])
    assert _titles(fig) == ["Predicted vs actual", "a", "b"]
    X, Y = data.X.numpy(), data.y.numpy()
    # X @ W.T + b, two terms and the bias, each within γ₃(|X||W|ᵀ + |b|) of the exact value: 2γ₃ apart at most
    bound = 2 * gamma(3) * (np.abs(X) @ np.abs(W).T + np.abs(b))
    for j, ax in enumerate(fig.axes):
        actual, predicted = ax.collections[0].get_offsets().T
        np.testing.assert_array_equal(actual, Y[:, j])
        assert (np.abs(predicted - (X @ W[j] + b[j])) <= bound[:, j]).all()
    grid = tl.plot_residuals_vs_features(frame, W, b, target=["a", "b"])
    assert len(grid.axes) == 4 and [ax.get_xlabel() for ax in grid.axes] == ["u", "v", "u", "v"]
    one = tl.plot_residuals(frame.drop(columns="b"), W[:1], b[:1], target="a")
    assert _titles(one) == ["Residuals"] and one.axes[0].get_xlabel() == "predicted a"
    with pytest.raises(ValueError, match="target="):
        tl.plot_residuals(frame, W, b)
    with pytest.raises(ValueError, match="no column 'c'"):
        tl.plot_residuals(frame, W, b, target=["a", "c"])


def test_mistakes_are_named():
    data = tl.make_regression(30, 2, 1)
    with pytest.raises(ValueError, match=r"weight must have shape \(1, 2\)"):
        tl.plot_residuals(data, [[1.0, 2.0, 3.0]], 0.0)
    with pytest.raises(ValueError, match="weight= .* needed"):
        tl.plot_qq(data)
    with pytest.raises(ValueError, match="one feature; this data has 2"):
        tl.plot_model(data, [[1.0, 2.0]])
    with pytest.raises(ValueError, match="DataFrame"):
        tl.plot_data(tl.tutorial_data(), target="y")


def test_several_targets_from_a_result_get_a_panel_each():
    X = torch.linspace(0, 1, 30, dtype=torch.float64).reshape(-1, 1)
    y = torch.cat([3 * X, 200 + X, -X], 1) + torch.sin(40 * X)  # deterministic "noise"
    result = tl.run_fit(tl.Dataset(X, y, ("x",), ("a", "b", "c")), tl.TrainConfig(epochs=5, lr=0.1), quiet=True)
    for name in ("plot_data", "plot_model", "plot_residuals", "plot_qq", "plot_predicted"):
        fig = getattr(tl, name)(result)
        assert _titles(fig)[1:] == ["a", "b", "c"], name
    assert len(tl.plot_residuals_vs_features(result).axes) == 3  # one feature, three targets
