import numpy as np
import pytest
import torch
from matplotlib.animation import writers
from PIL import Image

from bounds import gamma
from torchlinreg import (History, OutputError, TrainConfig, build_model, make_regression, train,
                         tutorial_data)
from torchlinreg.animation import HOLD_LAST_S, frame_epochs, frame_figure, save_animation


@pytest.fixture(scope="module")
def tutorial():
    data = tutorial_data()
    return data, train(build_model(), data.X, data.y, TrainConfig())  # the tutorial's 50 epochs


@pytest.fixture(scope="module")
def three_features():
    data = make_regression(120, 3, 2, noise=0.5)
    return data, train(build_model(3, 2), data.X, data.y, TrainConfig(epochs=12, lr=0.1, dtype="float64"))


@pytest.fixture(scope="module")
def tutorial_gif(tutorial, tmp_path_factory):
    data, history = tutorial
    folder = tmp_path_factory.mktemp("gif")
    return folder, save_animation(data, history, folder / "fit.gif")


def _frames(path) -> list[np.ndarray]:
    with Image.open(path) as img:
        out = []
        for i in range(img.n_frames):
            img.seek(i)
            out.append(np.asarray(img.convert("RGB")).astype(int))
        return out


def _rendered(fig) -> np.ndarray:
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[:, :, :3].astype(int)


def test_tutorial_gif_has_a_frame_per_epoch_and_holds_the_last(tutorial_gif):
    folder, path = tutorial_gif
    assert path == folder / "fit.gif"
    assert path.read_bytes()[:6] == b"GIF89a"
    with Image.open(path) as img:
        assert img.n_frames == 50
        assert img.size == (512, 384)  # 6.4 x 4.8 inches at 80 dpi
        assert img.info["loop"] == 0
        assert img.info["duration"] == 100  # 10 frames per second
        img.seek(img.n_frames - 1)
        assert img.info["duration"] == HOLD_LAST_S * 1000
    assert [p.name for p in folder.iterdir()] == ["fit.gif"]  # no temporary files left behind


def test_the_line_moves_over_fixed_axes(tutorial, tutorial_gif):
    frames = _frames(tutorial_gif[1])
    changed = np.abs(frames[0] - frames[-1]).max(axis=2) > 24
    assert changed.mean() > 0.005  # the line (and the title) moved
    assert changed.mean() < 0.2  # the data and the axes stayed where they were
    data, history = tutorial
    first, last = frame_figure(data, history, 1).axes[0], frame_figure(data, history, 50).axes[0]
    assert first.get_xlim() == last.get_xlim() and first.get_ylim() == last.get_ylim()
    top = max(r.params["linear.weight"][0][0] * 50 + r.params["linear.bias"][0] for r in history.records)
    assert first.get_ylim()[1] >= top  # every epoch's line fits (epoch 2 overshoots to about 168)


@pytest.mark.parametrize("epoch", [1, 2, 17, 50])
def test_frame_shows_the_records_line_and_loss(tutorial, tutorial_gif, epoch):
    data, history = tutorial
    record = history.records[epoch - 1]
    w, b = record.params["linear.weight"][0][0], record.params["linear.bias"][0]
    fig = frame_figure(data, history, epoch)
    line = fig.axes[0].get_lines()[0]
    x = data.X[:, 0].double()
    np.testing.assert_allclose(line.get_xdata(), [x.min().item(), x.max().item()])  # exact: the data's ends
    # w·x + b in float64 twice (NumPy's product in the frame, Python's here): each within γ_2·(|w x| + |b|) of the
    # exact value, so at most twice that apart
    ends = np.array([1.0, 50.0])
    assert (np.abs(line.get_ydata() - (w * ends + b)) <= 2 * gamma(2) * (np.abs(w * ends) + abs(b))).all()
    title = fig.get_suptitle()
    assert f"epoch {epoch} of 50" in title and f"loss {record.loss:.6g}" in title
    assert f"y = {w:.4f}x + {b:.4f}" in title
    points = fig.axes[0].collections[0].get_offsets()
    np.testing.assert_allclose(points, torch.cat([data.X, data.y], 1).double().numpy())  # exact: the data
    # the GIF's frame is this figure, up to the palette's rounding of a few antialiased pixels
    gif = _frames(tutorial_gif[1])[epoch - 1]
    assert (np.abs(gif - _rendered(fig)).max(axis=2) > 24).mean() < 0.002


def test_frame_epochs_first_last_dense_early():
    assert frame_epochs(1) == [1]
    assert frame_epochs(50) == list(range(1, 51))
    for n, m in [(51, 50), (150, 60), (1000, 60), (100_000, 100), (7, 2)]:
        epochs = frame_epochs(n, m)
        assert epochs[0] == 1 and epochs[-1] == n
        assert m - 1 <= len(epochs) <= m
        gaps = np.diff(epochs)
        assert (gaps >= 1).all()
        assert (np.diff(gaps[:-1]) >= 0).all()  # the gaps only grow (the last may be cut short at n)
    assert frame_epochs(1000, 60)[:10] == list(range(1, 11))  # consecutive where the model moves most
    with pytest.raises(ValueError, match="max_frames"):
        frame_epochs(10, 1)


def test_long_history_is_thinned(tutorial, tmp_path):
    data, history = tutorial
    path = save_animation(data, history, tmp_path / "short.gif", max_frames=12, fps=20, dpi=40)
    epochs = frame_epochs(50, 12)
    with Image.open(path) as img:
        assert img.n_frames == len(epochs) <= 12
        assert img.size == (256, 192)
        assert img.info["duration"] == 50
    # the thinned GIF's last frame shows epoch 50 with the same axes as the frame figure
    last = _frames(path)[-1]
    reference = _rendered(frame_figure(data, history, 50, max_frames=12, dpi=40))
    assert (np.abs(last - reference).max(axis=2) > 24).mean() < 0.002


def test_several_features_show_predicted_against_actual(three_features, tmp_path):
    data, history = three_features
    path = save_animation(data, history, tmp_path / "fit.gif")
    with Image.open(path) as img:
        assert img.n_frames == 12
        assert img.size == (544, 384)  # two panels, 3.4 inches each at 80 dpi
    frames = _frames(path)
    assert (np.abs(frames[0] - frames[-1]).max(axis=2) > 24).mean() > 0.005
    for epoch in (1, 12):
        record = history.records[epoch - 1]
        W = torch.tensor(record.params["linear.weight"], dtype=torch.float64)  # (2, 3)
        b = torch.tensor(record.params["linear.bias"], dtype=torch.float64)
        expected = (data.X.double() @ W.T + b).numpy()  # (n, 2)
        # the frame's float64 X @ W.T + b (NumPy's BLAS) against PyTorch's: each evaluation of the 3-term dot plus
        # the bias is within γ_4·(|X||W|ᵀ + |b|) of the exact value (Higham 3.5), so they are ≤ twice that apart
        bound = 2 * gamma(4) * (data.X.double().abs() @ W.abs().T + b.abs()).numpy()
        fig = frame_figure(data, history, epoch)
        assert len(fig.axes) == 2 and f"epoch {epoch} of 12" in fig.get_suptitle()
        for j, ax in enumerate(fig.axes):
            points = ax.collections[0].get_offsets()
            np.testing.assert_allclose(points[:, 0], data.y[:, j].double().numpy())  # exact: the data
            assert (np.abs(points[:, 1] - expected[:, j]) <= bound[:, j]).all()
            diagonal = ax.get_lines()[0]
            np.testing.assert_allclose(diagonal.get_xdata(), diagonal.get_ydata())  # exact: the same two values
            assert ax.get_xlim() == ax.get_ylim()


def test_same_inputs_same_bytes(three_features, tmp_path):
    data, history = three_features
    a = save_animation(data, history, tmp_path / "a.gif", max_frames=4)
    b = save_animation(data, history, tmp_path / "b.gif", max_frames=4)
    assert a.read_bytes() == b.read_bytes()  # bit-identical: the same drawing of the same floats, same kernels


@pytest.mark.skipif(writers.is_available("ffmpeg"), reason="ffmpeg is installed: .mp4 can be written")
def test_mp4_without_ffmpeg_says_to_use_gif(tutorial, tmp_path):
    data, history = tutorial
    with pytest.raises(OutputError, match=r"ffmpeg.*\.gif"):
        save_animation(data, history, tmp_path / "fit.mp4")
    assert not list(tmp_path.iterdir())


def test_mp4_goes_through_matplotlibs_ffmpeg_writer(tutorial, tmp_path, monkeypatch):
    """The .mp4 path with a stand-in for ffmpeg: every chosen epoch in order, the last one held."""
    import contextlib

    import matplotlib.animation

    class Writer:  # records the title of every grabbed frame in place of encoding it
        def __init__(self, fps, **kwargs):
            self.fps, self.titles = fps, []

        @contextlib.contextmanager
        def saving(self, fig, outfile, dpi):
            self.fig = fig
            yield self
            with open(outfile, "w") as f:
                f.write("\n".join(self.titles))

        def grab_frame(self):
            self.titles.append(self.fig.get_suptitle().splitlines()[0])

    monkeypatch.setattr(matplotlib.animation.writers, "is_available", lambda name: name == "ffmpeg")
    monkeypatch.setattr(matplotlib.animation, "FFMpegWriter", Writer)
    data, history = tutorial
    path = save_animation(data, history, tmp_path / "fit.mp4", max_frames=12, fps=4)
    titles = path.read_text().splitlines()
    epochs = frame_epochs(50, 12)
    hold = 6  # 1.5 s at 4 frames per second
    assert [int(t.split()[1]) for t in titles] == epochs + [50] * (hold - 1)
    assert [p.name for p in tmp_path.iterdir()] == ["fit.mp4"]


def test_bad_arguments(tutorial, tmp_path):
    data, history = tutorial
    with pytest.raises(OutputError, match=r"\.gif"):
        save_animation(data, history, tmp_path / "fit.avi")
    with pytest.raises(OutputError, match="does not exist"):
        save_animation(data, history, tmp_path / "missing" / "fit.gif")
    with pytest.raises(ValueError, match="fps"):
        save_animation(data, history, tmp_path / "fit.gif", fps=0)
    with pytest.raises(ValueError, match="max_frames"):
        save_animation(data, history, tmp_path / "fit.gif", max_frames=1)
    with pytest.raises(ValueError, match="epoch 51"):
        frame_figure(data, history, 51)
    with pytest.raises(ValueError, match="no epochs"):
        save_animation(data, History(history.initial_params), tmp_path / "fit.gif")
    assert not list(tmp_path.iterdir())
