import numpy as np
import pytest
import torch
from PIL import Image

from torchlinreg import TrainConfig, build_model, make_regression, save_plots, train, tutorial_data
from torchlinreg.plots import PLOT_FILES, loss_figure, model_figure, predicted_figure, residuals_figure


@pytest.fixture(scope="module")
def fitted():
    data = tutorial_data()
    history = train(build_model(), data.X, data.y, TrainConfig())
    return data, history


def test_six_png_files_of_sensible_size(fitted, tmp_path):
    data, history = fitted
    files = save_plots(data, history, tmp_path)
    assert sorted(files) == ["current", "data", "initial", "loss", "predicted", "residuals"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "current_model.png", "data.png", "initial_model.png", "loss.png", "predicted_vs_actual.png", "residuals.png"]
    assert all(files[name].name == PLOT_FILES[name] for name in files)
    for path in files.values():
        raw = path.read_bytes()
        assert raw[:8] == b"\x89PNG\r\n\x1a\n"
        assert 5_000 < len(raw) < 1_000_000
        with Image.open(path) as img:
            img.verify()
        with Image.open(path) as img:
            assert img.size == (640, 480)  # without an optimum the loss plot has one panel
            pixels = np.asarray(img.convert("L"))
            assert pixels.std() > 10  # something is drawn, not a blank canvas
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary files left behind


def test_model_lines_are_the_tutorials(fitted):
    data, history = fitted
    initial = model_figure(data, history.initial_params, "Initial Model")
    current = model_figure(data, history.final_params, "Current Model")
    for fig, title, expected in [(initial, "Initial Model", [1.0697743, 6.2627025]),
                                 (current, "Current Model", [3.0395708, 100.246704])]:
        ax = fig.axes[0]
        assert ax.get_title() == title
        assert ax.get_xlabel() and ax.get_ylabel()
        line = ax.get_lines()[0]
        np.testing.assert_allclose(line.get_xdata(), [1.0, 50.0])
        np.testing.assert_allclose(line.get_ydata(), expected, rtol=1e-6)  # the tutorial's y1


def test_loss_plot_shows_every_epoch(fitted):
    _, history = fitted
    ax = loss_figure(history).axes[0]
    x, y = ax.get_lines()[0].get_data()
    assert list(x) == list(range(1, 51))
    np.testing.assert_allclose(y, history.losses)
    assert ax.get_xlabel() == "epoch" and "loss" in ax.get_ylabel()


def test_loss_plot_shows_the_excess_over_the_optimum(fitted, tmp_path):
    from sklearn.linear_model import LinearRegression

    data, history = fitted
    X, y = data.X.double().numpy(), data.y.double().numpy()
    optimum = float(np.mean((LinearRegression().fit(X, y).predict(X) - y) ** 2))
    fig = loss_figure(history, optimum)
    top, bottom = fig.axes
    assert top.get_lines()[1].get_ydata()[0] == pytest.approx(optimum)  # the dashed optimum line
    np.testing.assert_allclose(bottom.get_lines()[0].get_ydata(), np.array(history.losses) - optimum, rtol=1e-9)
    assert bottom.get_yscale() == "log"
    files = save_plots(data, history, tmp_path, optimum_loss=optimum)
    with Image.open(files["loss"]) as img:
        assert img.size == (640, 720)


def _least_squares_params(data) -> dict:
    """The exact optimum, from torch.linalg.lstsq on [X, 1], as a history's params."""
    A = torch.cat([data.X.double(), torch.ones(data.n_samples, 1, dtype=torch.float64)], 1)
    theta = torch.linalg.lstsq(A, data.y.double(), driver="gelsd").solution  # (d + 1, m)
    return {"linear.weight": theta[:-1].T.tolist(), "linear.bias": theta[-1].tolist()}


@pytest.fixture(scope="module")
def two_targets():
    return make_regression(80, 3, 2, noise=0.5)


def _expected(data, params) -> np.ndarray:
    W = torch.tensor(params["linear.weight"], dtype=torch.float64)  # (m, d)
    b = torch.tensor(params["linear.bias"], dtype=torch.float64)  # (m,)
    return (data.X.double() @ W.T + b).numpy()  # (n, m)


def test_residuals_are_y_minus_the_prediction(fitted, two_targets):
    for data, params in [(fitted[0], fitted[1].final_params), (two_targets, _least_squares_params(two_targets))]:
        ax = residuals_figure(data, params).axes[0]
        y_hat = _expected(data, params)
        assert len(ax.collections) == data.n_targets
        for j, points in enumerate(ax.collections):
            offsets = points.get_offsets()
            np.testing.assert_allclose(offsets[:, 0], y_hat[:, j], rtol=1e-12)
            np.testing.assert_allclose(offsets[:, 1], data.y[:, j].double().numpy() - y_hat[:, j], rtol=1e-9, atol=1e-9)
        colours = {tuple(c.get_facecolor()[0]) for c in ax.collections}
        assert len(colours) == data.n_targets  # one colour per target
        assert list(ax.get_lines()[0].get_ydata()) == [0, 0]  # the zero line
        assert ax.get_title() == "Residuals" and "residual" in ax.get_ylabel()
    # at the least-squares optimum (with an intercept) the residuals of each target sum to zero
    ax = residuals_figure(two_targets, _least_squares_params(two_targets)).axes[0]
    for points in ax.collections:
        assert abs(points.get_offsets()[:, 1].sum()) < 1e-9


def test_predicted_against_actual_with_the_diagonal(fitted, two_targets):
    for data, params in [(fitted[0], fitted[1].final_params), (two_targets, _least_squares_params(two_targets))]:
        ax = predicted_figure(data, params).axes[0]
        y, y_hat = data.y.double().numpy(), _expected(data, params)
        for j, points in enumerate(ax.collections):
            offsets = points.get_offsets()
            np.testing.assert_allclose(offsets[:, 0], y[:, j])
            np.testing.assert_allclose(offsets[:, 1], y_hat[:, j], rtol=1e-12)
        diagonal = ax.get_lines()[0]
        np.testing.assert_allclose(diagonal.get_xdata(), diagonal.get_ydata())
        lo, hi = min(y.min(), y_hat.min()), max(y.max(), y_hat.max())
        np.testing.assert_allclose(diagonal.get_xdata(), [lo, hi])  # spans every point
        assert ax.get_title() == "Predicted vs actual"


def test_several_features_get_loss_residuals_predicted_and_the_animation(two_targets, tmp_path):
    history = train(build_model(3, 2), two_targets.X, two_targets.y, TrainConfig(epochs=3, lr=0.1, dtype="float64"))
    files = save_plots(two_targets, history, tmp_path, animation=True)
    assert sorted(files) == ["animation", "loss", "predicted", "residuals"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "fit.gif", "loss.png", "predicted_vs_actual.png", "residuals.png"]
    for name in ("loss", "predicted", "residuals"):
        with Image.open(files[name]) as img:
            assert img.size == (640, 480)
    with Image.open(files["animation"]) as img:
        assert img.n_frames == 3  # one frame per epoch


@pytest.mark.parametrize("scale", [1.0, 3e4])
def test_every_text_lies_inside_the_saved_figure(scale, tmp_path):
    """Fixed margins hold the tutorial's labels (one draw, no layout engine); larger labels get the tight layout."""
    from torchlinreg.plots import data_figure, save_figure

    data = tutorial_data(weight=2.0 * scale, bias=-4.0 * scale)
    history = train(build_model(), data.X, data.y, TrainConfig(epochs=5, lr=1e-4))
    figures = [data_figure(data), model_figure(data, history.final_params, "Current Model"),
               loss_figure(history, history.losses[-1] / 2), residuals_figure(data, history.final_params),
               predicted_figure(data, history.final_params)]
    engines = []
    for i, fig in enumerate(figures):
        save_figure(fig, tmp_path / f"{i}.png")
        engines.append(fig.get_layout_engine())
        drawn = fig.get_tightbbox(fig.canvas.get_renderer())  # matplotlib's own box around every artist, inches
        assert 0 <= drawn.x0 and drawn.x1 <= fig.get_figwidth() and 0 <= drawn.y0 and drawn.y1 <= fig.get_figheight()
    if scale == 1.0:
        assert engines == [None] * len(figures)
    else:
        assert any(engine is not None for engine in engines)  # the residuals' six-digit tick labels
