import numpy as np
import pytest
from PIL import Image

from torchlinreg import TrainConfig, build_model, save_plots, train, tutorial_data
from torchlinreg.plots import loss_figure, model_figure


@pytest.fixture(scope="module")
def fitted():
    data = tutorial_data()
    history = train(build_model(), data.X, data.y, TrainConfig())
    return data, history


def test_four_png_files_of_sensible_size(fitted, tmp_path):
    data, history = fitted
    files = save_plots(data, history, tmp_path)
    assert sorted(files) == ["current", "data", "initial", "loss"]
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
