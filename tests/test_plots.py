import numpy as np
import pytest
import torch
from PIL import Image

from bounds import U64, gamma
from test_reproduction import tutorial_float32_error
from torchlinreg import Dataset, TrainConfig, build_model, make_regression, save_plots, train, tutorial_data
from torchlinreg.plots import PLOT_FILES, loss_figure, model_figure, predicted_figure, residuals_figure
from torchlinreg.publish import OUTPUT_FILES
from torchlinreg.residualplots import qq_figure, residuals_features_figure


@pytest.fixture(scope="module")
def fitted():
    data = tutorial_data()
    history = train(build_model(), data.X, data.y, TrainConfig())
    return data, history


def test_eight_png_files_of_sensible_size(fitted, tmp_path):
    data, history = fitted
    files = save_plots(data, history, tmp_path)
    assert list(files) == list(PLOT_FILES)  # written in PLOT_FILES' order
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "current_model.png", "data.png", "initial_model.png", "loss.png", "predicted_vs_actual.png", "qq.png",
        "residuals.png", "residuals_vs_features.png"]
    assert all(files[name].name == PLOT_FILES[name] for name in files)
    for path in files.values():
        raw = path.read_bytes()
        assert raw[:8] == b"\x89PNG\r\n\x1a\n"
        assert 5_000 < len(raw) < 1_000_000
        with Image.open(path) as img:
            img.verify()
        with Image.open(path) as img:
            assert img.size == (640, 480)  # one target: one panel, the tutorial's size; without an optimum the loss has one
            pixels = np.asarray(img.convert("L"))
            assert pixels.std() > 10  # something is drawn, not a blank canvas
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary files left behind


def test_every_plot_file_is_an_output_of_the_run():
    """A run's folder is replaced whole: every plot file must be one the run owns (publish.OUTPUT_FILES)."""
    assert set(PLOT_FILES.values()) <= set(OUTPUT_FILES)


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
        fig = residuals_figure(data, params)
        y_hat, y = _expected(data, params), data.y.double().numpy()
        on_x, on_y = _prediction_bound(data, params), _prediction_bound(data, params, y)  # a few ulps of |X||W| + |b|
        assert len(fig.axes) == data.n_targets  # one panel per target
        for j, ax in enumerate(fig.axes):
            (points,) = ax.collections
            offsets = points.get_offsets()
            assert (np.abs(offsets[:, 0] - y_hat[:, j]) <= on_x[:, j]).all()
            assert (np.abs(offsets[:, 1] - (y[:, j] - y_hat[:, j])) <= on_y[:, j]).all()
            assert list(ax.get_lines()[0].get_ydata()) == [0, 0]  # the zero line
            assert "residual" in ax.get_ylabel() and data.target_names[j] in ax.get_xlabel()
        colours = {tuple(ax.collections[0].get_facecolor()[0]) for ax in fig.axes}
        assert len(colours) == data.n_targets  # one colour per target
        titles = _titles(fig)
        assert titles == (["Residuals"] if data.n_targets == 1 else ["Residuals", *data.target_names])
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
    for j, ax in enumerate(residuals_figure(two_targets, params).axes):
        r = ax.collections[0].get_offsets()[:, 1]
        sizes = np.linalg.norm(r) + np.linalg.norm(y[:, j]) + norm_A * np.linalg.norm(theta[:, j])
        solve = gamma(m * n) * norm_A * sizes
        form = _prediction_bound(two_targets, params, y)[:, j].sum() / 2 + gamma(m) * np.abs(r).sum()
        assert abs(r.sum()) <= 10 * (solve + form)


def _titles(fig) -> list[str]:
    """The figure's title (when it has one over several panels), then each panel's."""
    above = [fig._suptitle.get_text()] if fig._suptitle is not None else []
    return above + [ax.get_title() for ax in fig.axes]


def test_predicted_against_actual_with_the_diagonal(fitted, two_targets):
    for data, params in [(fitted[0], fitted[1].final_params), (two_targets, _least_squares_params(two_targets))]:
        fig = predicted_figure(data, params)
        y, y_hat = data.y.double().numpy(), _expected(data, params)
        bound = _prediction_bound(data, params)  # a few ulps of |X||W| + |b|: NumPy's and PyTorch's products
        assert len(fig.axes) == data.n_targets
        for j, ax in enumerate(fig.axes):
            offsets = ax.collections[0].get_offsets()
            np.testing.assert_allclose(offsets[:, 0], y[:, j])  # exact: the data
            assert (np.abs(offsets[:, 1] - y_hat[:, j]) <= bound[:, j]).all()
            diagonal = ax.get_lines()[0]
            np.testing.assert_allclose(diagonal.get_xdata(), diagonal.get_ydata())  # exact: the same two values
            lo, hi = min(y[:, j].min(), y_hat[:, j].min()), max(y[:, j].max(), y_hat[:, j].max())
            # spans the panel's points: the ends are its data or predictions, which are within the bound of ours
            np.testing.assert_allclose(diagonal.get_xdata(), [lo, hi], rtol=0, atol=bound.max())
        assert _titles(fig)[0] == "Predicted vs actual"


def test_several_features_get_loss_residuals_predicted_qq_and_the_animation(two_targets, tmp_path):
    history = train(build_model(3, 2), two_targets.X, two_targets.y, TrainConfig(epochs=3, lr=0.1, dtype="float64"))
    files = save_plots(two_targets, history, tmp_path, animation=True)
    assert sorted(files) == ["animation", "loss", "predicted", "qq", "residuals", "residuals_features"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "fit.gif", "loss.png", "predicted_vs_actual.png", "qq.png", "residuals.png", "residuals_vs_features.png"]
    with Image.open(files["loss"]) as img:
        assert img.size == (640, 480)
    drawn = {"predicted": predicted_figure, "residuals": residuals_figure, "qq": qq_figure,
             "residuals_features": residuals_features_figure}
    for name, figure in drawn.items():
        fig = figure(two_targets, history.final_params)
        assert len(fig.axes) == (2 * 3 if name == "residuals_features" else 2)  # targets x features, or targets
        with Image.open(files[name]) as img:  # the figure's inches at 100 dpi, wider than one panel's 640 px
            assert img.size == tuple(round(v * 100) for v in fig.get_size_inches()) and img.size[0] > 640
    with Image.open(files["animation"]) as img:
        assert img.n_frames == 3  # one frame per epoch


@pytest.mark.parametrize("scale", [1.0, 3e4])
def test_every_text_lies_inside_the_saved_figure(scale, tmp_path):
    """Fixed margins hold the tutorial's labels (one draw, no layout engine); larger labels get the tight layout."""
    from torchlinreg.plots import data_figure, save_figure

    data = tutorial_data(weight=2.0 * scale, bias=-4.0 * scale)
    history = train(build_model(), data.X, data.y, TrainConfig(epochs=5, lr=1e-4))
    final = history.final_params
    figures = [data_figure(data), model_figure(data, final, "Current Model", band=True),
               loss_figure(history, history.losses[-1] / 2), residuals_figure(data, final),
               predicted_figure(data, final), qq_figure(data, final), residuals_features_figure(data, final)]
    several = Dataset(data.X, torch.cat([data.y, -data.y / 7, data.y * 1e3], 1), target_names=("y", "b", "c"))
    final = {"linear.weight": final["linear.weight"] * 3, "linear.bias": final["linear.bias"] * 3}  # lists: 3 copies
    figures += [data_figure(several), model_figure(several, final, "Current Model", band=True),
                residuals_figure(several, final), predicted_figure(several, final), qq_figure(several, final),
                residuals_features_figure(several, final)]  # three panels each: between them too
    engines = []
    for i, fig in enumerate(figures):
        save_figure(fig, tmp_path / f"{i}.png")
        engines.append(fig.get_layout_engine())
        drawn = fig.get_tightbbox(fig.canvas.get_renderer())  # matplotlib's own box around every artist, inches
        assert 0 <= drawn.x0 and drawn.x1 <= fig.get_figwidth() and 0 <= drawn.y0 and drawn.y1 <= fig.get_figheight()
    if scale == 1.0:
        assert engines[:7] == [None] * 7  # the third target's values reach 1e5: its tick labels may need more room
    else:
        assert any(engine is not None for engine in engines)  # the residuals' six-digit tick labels


def test_save_plots_makes_its_folder(tmp_path):
    """A notebook user names a new folder: the README's `tl.save_plots(data, history, "plots/")` works as written."""
    import torchlinreg as tl

    data = tl.tutorial_data()
    history = tl.train(tl.build_model(), data.X, data.y, tl.TrainConfig(epochs=3))
    files = tl.save_plots(data, history, tmp_path / "new" / "plots")
    assert all(path.exists() and path.parent == tmp_path / "new" / "plots" for path in files.values())


@pytest.fixture(scope="module")
def three_scales():
    """One feature, three targets of very different sizes (as scikit-learn's linnerud: Weight ≈ 180, Waist ≈ 35)."""
    data = tutorial_data()
    y = data.y.double()
    return Dataset(data.X.double(), torch.cat([y, 35 + y / 100, 140 + 2 * y], 1), target_names=("y", "waist", "weight"))


def test_one_panel_per_target_each_on_its_own_scale(three_scales):
    from torchlinreg.plots import data_figure

    data, params = three_scales, _least_squares_params(three_scales)
    figures = {"Data": data_figure(data), "Current Model": model_figure(data, params, "Current Model", band=True),
               "Residuals": residuals_figure(data, params), "Predicted vs actual": predicted_figure(data, params),
               "Normal Q-Q plot of the residuals": qq_figure(data, params)}
    for title, fig in figures.items():
        assert _titles(fig) == [title, "y", "waist", "weight"]
        for ax in fig.axes:
            y = ax.collections[0].get_offsets()[:, 1]
            low, high = ax.get_ylim()
            assert low <= y.min() and y.max() <= high
            # its own scale: the waist's points (a spread of ~1) would be a flat line on the others' axis
            assert high - low <= 2 * (y.max() - y.min()), (title, ax.get_title())
    for ax in figures["Data"].axes:
        assert ax.get_ylabel() == ax.get_title()  # the target's name


def test_at_most_six_targets_are_drawn_and_the_title_says_so():
    data = make_regression(30, 1, 8, noise=0.5)
    params = _least_squares_params(data)
    for fig in (residuals_figure(data, params), model_figure(data, params, "Current Model", band=True),
                qq_figure(data, params)):
        titles = _titles(fig)
        assert titles[0].endswith(" (the first 6 of 8 targets)")
        assert titles[1:] == list(data.target_names[:6])


def test_residuals_against_each_feature():
    data = make_regression(60, 6, 4, noise=0.5)
    params = _least_squares_params(data)
    fig = residuals_features_figure(data, params)
    assert fig._suptitle.get_text() == "Residuals against the features (the first 4 of 6 features; the first 3 of 4 targets)"
    assert len(fig.axes) == 3 * 4
    X, y, y_hat = data.X.double().numpy(), data.y.double().numpy(), _expected(data, params)
    bound = _prediction_bound(data, params, y)  # a few ulps of |X||W| + |b| + |y|: NumPy's and PyTorch's products
    for i, ax in enumerate(fig.axes):
        j, k = divmod(i, 4)  # row: target, column: feature
        offsets = ax.collections[0].get_offsets()
        np.testing.assert_array_equal(offsets[:, 0], X[:, k])  # exact: the data
        assert (np.abs(offsets[:, 1] - (y[:, j] - y_hat[:, j])) <= bound[:, j]).all()
        assert ax.get_xlabel() == data.feature_names[k]
        assert ax.get_ylabel() == (f"residual of {data.target_names[j]}" if k == 0 else "")
    tutorial = tutorial_data()
    one = residuals_features_figure(tutorial, _least_squares_params(tutorial))
    assert len(one.axes) == 1 and one.axes[0].get_title() == "Residuals against the features"


def test_qq_plot_is_the_standardized_residuals_against_normal_quantiles(fitted, two_targets):
    sm = pytest.importorskip("statsmodels.api")
    for data, params in [(fitted[0], fitted[1].final_params), (two_targets, _least_squares_params(two_targets))]:
        y = data.y.double().numpy()
        residuals = y - _expected(data, params)
        bound = _prediction_bound(data, params, y).max(axis=0)  # per target: how far the plot's residuals may be
        fig = qq_figure(data, params)
        assert len(fig.axes) == data.n_targets
        for j, ax in enumerate(fig.axes):
            q, z = ax.collections[0].get_offsets().T
            r = residuals[:, j]
            expected_q = sm.ProbPlot(r, a=0.5).theoretical_quantiles  # n = 50 or 80 > 10: R's (i − ½)/n
            expected_z = np.sort((r - r.mean()) / r.std(ddof=1))
            # Φ⁻¹ (scipy's ndtri in both) of the same positions, rounded differently: ≤ 2u·p/φ(q) + a few ulps of q
            # (test_band's bound), under 1e-13 for these n
            np.testing.assert_allclose(q, expected_q, rtol=1e-13, atol=1e-15)
            # sorting moves no value by more than the residuals' bound; standardising divides it by the sd and adds
            # the mean's share and a few roundings (first order)
            sd = r.std(ddof=1)
            tol = 2 * bound[j] / sd * (1 + np.abs(expected_z)) + 16 * U64 * (1 + np.abs(expected_z))
            assert (np.abs(z - expected_z) <= tol).all()
            line = ax.get_lines()[0]
            np.testing.assert_array_equal(line.get_xdata(), line.get_ydata())  # the reference line y = x
            assert ax.get_xlabel() == "standard normal quantile" and ax.get_ylabel() == "standardized residual"


def test_the_trained_model_shows_the_confidence_band_of_the_least_squares_line(fitted):
    sm = pytest.importorskip("statsmodels.api")
    data, history = fitted
    ax = model_figure(data, history.final_params, "Current Model", band=True).axes[0]
    (band,) = [c for c in ax.collections if c.get_label() == "95% confidence band of the least-squares line"]
    assert "95% confidence band of the least-squares line" in [t.get_text() for t in ax.get_legend().get_texts()]
    x, y = data.X.double().numpy()[:, 0], data.y.double().numpy()[:, 0]
    at = np.linspace(x.min(), x.max(), 50)
    expected = sm.OLS(y, sm.add_constant(x)).fit().get_prediction(sm.add_constant(at)).conf_int(alpha=0.05)
    vertices = band.get_paths()[0].vertices
    # as test_band: 10·κ²·γ_n relative (κ = cond([1, x]) ≈ 60), of the band's size
    kappa = np.linalg.cond(np.column_stack([np.ones_like(x), x]))
    atol = 10 * kappa**2 * gamma(len(x)) * np.abs(expected).max()
    for point, (low, high) in zip(at, expected):
        shown = vertices[vertices[:, 0] == point, 1]  # the polygon's lower and upper edge at this x
        assert shown.min() == pytest.approx(low, abs=atol) and shown.max() == pytest.approx(high, abs=atol)
    initial = model_figure(data, history.initial_params, "Initial Model").axes[0]
    assert all("band" not in c.get_label() for c in initial.collections)  # only when asked for


def _loss_texts(ax) -> str:
    return " ".join(t.get_text() for t in ax.texts)


def test_a_run_diverged_at_its_first_epoch_gets_a_readable_loss_plot():
    from torchlinreg import run_fit

    result = run_fit(tutorial_data(), TrainConfig(lr=1.0, epochs=30), out_dir=None, quiet=True)
    history = result.history
    assert history.diverged and len(history) == 1  # one finite loss, at epoch 1
    (v,) = history.losses
    for optimum in (None, result.solution.loss):
        ax = loss_figure(history, optimum).axes[0]
        low, high = ax.get_ylim()
        assert low <= v <= high and high - low >= v / 2  # not matplotlib's ±4% around a single value
        x_low, x_high = ax.get_xlim()
        assert x_low < 1 and 2 < x_high  # the point and the divergence, with room around them
        assert "training diverged: the loss grew to" in _loss_texts(ax).replace("\n", " ")
        assert [line.get_xdata()[0] for line in ax.get_lines() if "diverged" in line.get_label()] == [2]


def test_losses_that_are_not_finite_are_skipped_and_the_divergence_marked():
    from torchlinreg.history import EpochRecord, History

    params = {"linear.weight": [[1.0]], "linear.bias": [0.0]}
    records = [EpochRecord(e, loss, params) for e, loss in [(1, 9.0), (2, 4.0), (3, float("nan")), (4, float("inf"))]]
    ax = loss_figure(History(params, records, params, "diverged", "")).axes[0]
    x, y = ax.get_lines()[0].get_data()
    assert list(x) == [1, 2] and list(y) == [9.0, 4.0]
    assert [line.get_xdata()[0] for line in ax.get_lines() if "diverged" in line.get_label()] == [3]
    one = loss_figure(History(params, records[:1], params)).axes[0]
    assert _loss_texts(one) == "1 epoch: loss 9" and one.get_ylim() == (0.0, 18.0)
    none = loss_figure(History(params, [], params)).axes[0]
    assert _loss_texts(none) == "no epochs run"
    gone = loss_figure(History(params, records[2:], params, "diverged", "")).axes[0]
    assert _loss_texts(gone) == "diverged at epoch 3: no later loss is finite"


def test_save_figure_makes_its_folder(fitted, tmp_path):
    from torchlinreg.plots import save_figure

    path = save_figure(loss_figure(fitted[1]), tmp_path / "a" / "b" / "loss.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
