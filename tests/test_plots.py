import numpy as np
import pytest
import torch
from PIL import Image

from bounds import U64, gamma
from test_reproduction import tutorial_float32_error
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
    # the tutorial's y1 = w·x + b at x = 1 and 50, printed to 7 and 6 decimals (half a unit: 5e-8, 5e-7). The initial
    # parameters are exact float32 values (w·x + b in float64 adds ~U64); the trained ones come from float32 runs
    # (the tutorial's and ours) each within e of the exact run (test_reproduction.tutorial_float32_error), which
    # moves w·x + b by ≤ e·√(x² + 1).
    e = tutorial_float32_error()[0][50]
    printed = np.array([5e-8, 5e-7])
    for fig, title, expected, err in [(initial, "Initial Model", [1.0697743, 6.2627025], 0.0),
                                      (current, "Current Model", [3.0395708, 100.246704], 2 * e)]:
        ax = fig.axes[0]
        assert ax.get_title() == title
        assert ax.get_xlabel() and ax.get_ylabel()
        line = ax.get_lines()[0]
        np.testing.assert_allclose(line.get_xdata(), [1.0, 50.0])  # exact: the data's smallest and largest x
        x = np.array([1.0, 50.0])
        atol = printed + err * np.sqrt(x**2 + 1) + 4 * U64 * np.abs(expected)
        assert (np.abs(line.get_ydata() - expected) <= atol).all(), (line.get_ydata(), atol)


def test_loss_plot_shows_every_epoch(fitted):
    _, history = fitted
    ax = loss_figure(history).axes[0]
    x, y = ax.get_lines()[0].get_data()
    assert list(x) == list(range(1, 51))
    np.testing.assert_allclose(y, history.losses)  # exact: matplotlib keeps the same float64 values
    assert ax.get_xlabel() == "epoch" and "loss" in ax.get_ylabel()


def test_loss_plot_shows_the_excess_over_the_optimum(fitted, tmp_path):
    from sklearn.linear_model import LinearRegression

    data, history = fitted
    X, y = data.X.double().numpy(), data.y.double().numpy()
    optimum = float(np.mean((LinearRegression().fit(X, y).predict(X) - y) ** 2))
    fig = loss_figure(history, optimum)
    top, bottom = fig.axes
    assert top.get_lines()[1].get_ydata()[0] == pytest.approx(optimum)  # the dashed optimum line: the same value
    # bit-identical: the same float64 subtraction loss − optimum, in the plot and here
    np.testing.assert_array_equal(bottom.get_lines()[0].get_ydata(), np.array(history.losses) - optimum)
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


def _prediction_bound(data, params, y=None) -> np.ndarray:
    """How far the plot's float64 predictions X @ W.T + b (NumPy's BLAS) may be from ``_expected``'s (PyTorch's):
    each evaluation of a d-term dot plus the bias is within γ_{d+1}·(|X||W|ᵀ + |b|) of the exact value (Higham
    3.5), so they differ by at most twice that; with ``y``, for the residuals y − ŷ (one more rounding each)."""
    X = data.X.double().numpy()
    W, b = np.asarray(params["linear.weight"], dtype=np.float64), np.asarray(params["linear.bias"], dtype=np.float64)
    magnitude = np.abs(X) @ np.abs(W).T + np.abs(b)
    if y is None:
        return 2 * gamma(X.shape[1] + 1) * magnitude
    return 2 * gamma(X.shape[1] + 2) * (magnitude + np.abs(y))


def test_residuals_are_y_minus_the_prediction(fitted, two_targets):
    for data, params in [(fitted[0], fitted[1].final_params), (two_targets, _least_squares_params(two_targets))]:
        ax = residuals_figure(data, params).axes[0]
        y_hat, y = _expected(data, params), data.y.double().numpy()
        on_x, on_y = _prediction_bound(data, params), _prediction_bound(data, params, y)  # a few ulps of |X||W| + |b|
        assert len(ax.collections) == data.n_targets
        for j, points in enumerate(ax.collections):
            offsets = points.get_offsets()
            assert (np.abs(offsets[:, 0] - y_hat[:, j]) <= on_x[:, j]).all()
            assert (np.abs(offsets[:, 1] - (y[:, j] - y_hat[:, j])) <= on_y[:, j]).all()
        colours = {tuple(c.get_facecolor()[0]) for c in ax.collections}
        assert len(colours) == data.n_targets  # one colour per target
        assert list(ax.get_lines()[0].get_ydata()) == [0, 0]  # the zero line
        assert ax.get_title() == "Residuals" and "residual" in ax.get_ylabel()
    # at the least-squares optimum (with an intercept) the residuals of each target sum to zero. gelsd is backward
    # stable: θ̂ solves the problem of A + ΔA, y + Δy with ‖ΔA‖_F ≤ γ_{mn}‖A‖_F, ‖Δy‖ ≤ γ_{mn}‖y‖ (Higham 20.3),
    # so |1ᵀr̂| ≤ ‖Aᵀr̂‖ ≤ γ_{mn}‖A‖_F·(‖r̂‖ + ‖y‖ + ‖A‖_F‖θ̂‖) to first order; forming the residuals and their sum
    # adds ≤ the residual bound per row + γ_n·Σ|r̂_i|. ×10 for the constant of the backward error.
    params = _least_squares_params(two_targets)
    A = np.hstack([two_targets.X.double().numpy(), np.ones((two_targets.n_samples, 1))])
    y = two_targets.y.double().numpy()
    theta = np.vstack([np.array(params["linear.weight"]).T, [params["linear.bias"]]])  # (d + 1, m)
    m, n = A.shape
    norm_A = np.linalg.norm(A)
    ax = residuals_figure(two_targets, params).axes[0]
    for j, points in enumerate(ax.collections):
        r = points.get_offsets()[:, 1]
        sizes = np.linalg.norm(r) + np.linalg.norm(y[:, j]) + norm_A * np.linalg.norm(theta[:, j])
        solve = gamma(m * n) * norm_A * sizes
        form = _prediction_bound(two_targets, params, y)[:, j].sum() / 2 + gamma(m) * np.abs(r).sum()
        assert abs(r.sum()) <= 10 * (solve + form)


def test_predicted_against_actual_with_the_diagonal(fitted, two_targets):
    for data, params in [(fitted[0], fitted[1].final_params), (two_targets, _least_squares_params(two_targets))]:
        ax = predicted_figure(data, params).axes[0]
        y, y_hat = data.y.double().numpy(), _expected(data, params)
        bound = _prediction_bound(data, params)  # a few ulps of |X||W| + |b|: NumPy's and PyTorch's products
        for j, points in enumerate(ax.collections):
            offsets = points.get_offsets()
            np.testing.assert_allclose(offsets[:, 0], y[:, j])  # exact: the data
            assert (np.abs(offsets[:, 1] - y_hat[:, j]) <= bound[:, j]).all()
        diagonal = ax.get_lines()[0]
        np.testing.assert_allclose(diagonal.get_xdata(), diagonal.get_ydata())  # exact: the same two values
        lo, hi = min(y.min(), y_hat.min()), max(y.max(), y_hat.max())
        # spans every point: the ends are the data's or the plot's predictions, which are within the bound of ours
        np.testing.assert_allclose(diagonal.get_xdata(), [lo, hi], rtol=0, atol=bound.max())
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


def test_save_plots_makes_its_folder(tmp_path):
    """A notebook user names a new folder: the README's `tl.save_plots(data, history, "plots/")` works as written."""
    import torchlinreg as tl

    data = tl.tutorial_data()
    history = tl.train(tl.build_model(), data.X, data.y, tl.TrainConfig(epochs=3))
    files = tl.save_plots(data, history, tmp_path / "new" / "plots")
    assert all(path.exists() and path.parent == tmp_path / "new" / "plots" for path in files.values())
