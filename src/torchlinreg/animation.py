"""The fit as an animation: the model of each epoch over the data, as a GIF (or an MP4 with ffmpeg).

Drawn from the data and the history (never by training). One figure, on the Agg canvas,
is built once with fixed axes; each frame moves its artists to one epoch's parameters
and is rendered to pixels. With one feature a frame is the data and the model's line;
with several it is the predictions against the actual targets, one panel per target.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .errors import OutputError
from .history import History, Params
from .outputs import atomic_write_bytes
from .shapes import Table, predict

DPI = 80  # 6.4 x 4.8 inches -> 512 x 384 pixels per frame
HOLD_LAST_S = 1.5  # the final frame stays this long, so the end of the fit can be read
MAX_POINTS = 2000  # rows drawn per frame; more are thinned evenly (every k-th row)
MAX_PANELS = 4  # several targets with several features: one panel each, the first four at most
FORMATS = (".gif", ".mp4")


def frame_epochs(n_epochs: int, max_frames: int = 100) -> list[int]:
    """The epochs an animation of ``n_epochs`` epochs shows: all of them, or at most ``max_frames``.

    Always epoch 1 and epoch ``n_epochs``. In between, each epoch shown is the previous one
    times a constant ratio (rounded up, and at least one more), so the frames are
    consecutive at the start, where the model moves most, and spread geometrically later.
    The ratio is the smallest that keeps the count within ``max_frames``.
    """
    if isinstance(max_frames, bool) or not isinstance(max_frames, int) or max_frames < 2:
        raise ValueError(f"max_frames must be an integer >= 2 (the first and the last epoch), got {max_frames!r}")
    if n_epochs <= max_frames:
        return list(range(1, n_epochs + 1))

    def spaced(ratio: float) -> list[int]:
        epochs = [1]
        while epochs[-1] < n_epochs and len(epochs) <= max_frames:
            epochs.append(min(n_epochs, max(epochs[-1] + 1, math.ceil(epochs[-1] * ratio))))
        return epochs

    lo, hi = 1.0, float(n_epochs)  # spaced(lo) is too long, spaced(hi) = [1, n_epochs] fits
    for _ in range(100):  # bisection on the ratio; the count only falls as the ratio grows
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if len(spaced(mid)) <= max_frames else (mid, hi)
    return spaced(hi)  # within max_frames, so it stopped at n_epochs


class _FitFrames:
    """One figure whose artists show any epoch's model; axes fixed by the epochs to be shown."""

    def __init__(self, data: Table, history: History, epochs: list[int], dpi: float):
        if not history.records:
            raise ValueError("the history has no epochs to animate; train for at least one epoch")
        self.data = data
        self.records = {r.epoch: r for r in history.records}
        self.last_epoch = history.records[-1].epoch
        rows = np.unique(np.linspace(0, data.n_samples - 1, min(data.n_samples, MAX_POINTS)).round().astype(int))
        self.X = data.X.double().numpy()[rows]  # (k, d)
        self.y = data.y.double().numpy()[rows]  # (k, m)
        params = [self.records[e].params for e in epochs if e in self.records]  # show() rejects the others
        self.fig = Figure(figsize=(6.4, 4.8), dpi=dpi)  # no layout engine: the axes must not shift between frames
        FigureCanvasAgg(self.fig)
        self.title = self.fig.suptitle("", fontsize="medium")
        self.moving = []  # the artists a frame changes: lines or point sets
        if data.n_features == 1:
            self._build_lines(params)
        else:
            self._build_panels(params)
        self._background = None  # pixels of everything that does not move, once rendered

    def _build_lines(self, params: list[Params]) -> None:
        data = self.data
        x = data.X[:, 0].double()
        self.x_ends = np.array([x.min().item(), x.max().item()])  # the line spans the data, as in the tutorial
        ax = self.fig.add_subplot()
        self.fig.subplots_adjust(left=0.13, right=0.96, bottom=0.12, top=0.85)
        for j, name in enumerate(data.target_names):
            single = data.n_targets == 1
            ax.scatter(self.X[:, 0], self.y[:, j], s=14, color=f"C{j}", label="data" if single else name)
            self.moving += ax.plot([], [], color="red" if single else f"C{j}", linewidth=2,
                                  label="model" if single else f"model {name}")
        ends = np.concatenate([predict(self.x_ends[:, None], p).ravel() for p in params])
        ax.set_xlim(_limits(self.x_ends))
        ax.set_ylim(_limits(self.y.ravel(), ends))
        ax.set_xlabel(data.feature_names[0])
        ax.set_ylabel(data.target_names[0] if data.n_targets == 1 else "targets")
        if data.n_targets == 1:  # the corner a rising (falling) line leaves empty, in every frame
            ax.legend(loc="upper left" if params[-1]["linear.weight"][0][0] >= 0 else "upper right")
        else:
            ax.legend(loc="best")  # placed once, against the data

    def _build_panels(self, params: list[Params]) -> None:
        data = self.data
        n_panels = min(data.n_targets, MAX_PANELS)
        self.fig.set_size_inches(6.4 if n_panels == 1 else 3.4 * n_panels, 4.8)
        self.fig.subplots_adjust(left=0.13 if n_panels == 1 else 0.08, right=0.96, bottom=0.12, top=0.82,
                                 wspace=0.35)
        predictions = np.stack([predict(self.X, p) for p in params])  # (frames, k, m)
        for j in range(n_panels):
            ax = self.fig.add_subplot(1, n_panels, j + 1)
            lim = _limits(self.y[:, j], predictions[:, :, j].ravel())
            ax.plot(lim, lim, color="gray", linestyle="--", linewidth=1, zorder=0)  # ŷ = y
            self.moving.append(ax.scatter(self.y[:, j], self.y[:, j], s=10, color=f"C{j}"))
            ax.set_xlim(lim)
            ax.set_ylim(lim)
            ax.set_xlabel(f"actual {data.target_names[j]}")
            ax.set_ylabel(f"predicted {data.target_names[j]}")
        if data.n_targets > n_panels:
            self.fig.text(0.99, 0.01, f"first {n_panels} of {data.n_targets} targets", ha="right", fontsize="small")

    def show(self, epoch: int) -> Figure:
        """Move the artists to ``epoch``'s parameters and loss; return the figure."""
        if epoch not in self.records:
            raise ValueError(f"epoch {epoch} is not in the history (epochs 1 to {self.last_epoch})")
        record = self.records[epoch]
        title = f"epoch {epoch} of {self.last_epoch}    loss {record.loss:.6g}"
        if self.data.n_features == 1:
            ends = predict(self.x_ends[:, None], record.params)  # (2, m)
            for j, line in enumerate(self.moving):
                line.set_data(self.x_ends, ends[:, j])
            if self.data.n_targets == 1:
                w, b = record.params["linear.weight"][0][0], record.params["linear.bias"][0]
                title += f"\ny = {_number(w)}x {'-' if b < 0 else '+'} {_number(abs(b))}"
        else:
            y_hat = predict(self.X, record.params)  # (k, m)
            for j, points in enumerate(self.moving):
                points.set_offsets(np.column_stack([self.y[:, j], y_hat[:, j]]))
        self.title.set_text(title)
        return self.fig

    def pixels(self, epoch: int) -> np.ndarray:
        """The frame of ``epoch`` as an RGB array of shape (height, width, 3).

        Blitting: the still parts are rendered once; each frame restores them and draws
        only the moving artists and the title, in the order a full draw uses (the same pixels).
        """
        canvas = self.fig.canvas
        self.show(epoch)
        if self._background is None:
            for artist in (*self.moving, self.title):
                artist.set_animated(True)  # left out of canvas.draw()
            canvas.draw()
            self._background = canvas.copy_from_bbox(self.fig.bbox)
        canvas.restore_region(self._background)
        for artist in self.moving:
            artist.axes.draw_artist(artist)
        self.fig.draw_artist(self.title)
        return np.asarray(canvas.buffer_rgba())[:, :, :3].copy()


def _number(value: float) -> str:
    return f"{value:.4f}" if abs(value) < 1e5 else f"{value:.4g}"  # a diverging run's 1e+30 stays short


def _limits(values: np.ndarray, moving: np.ndarray | None = None) -> tuple[float, float]:
    """Axis limits holding ``values`` and the finite ``moving`` ones within one data span of them, 5% margin."""
    lo, hi = float(np.min(values)), float(np.max(values))
    span = hi - lo if hi > lo else max(abs(hi), 1.0)
    if moving is not None:
        moving = np.clip(moving[np.isfinite(moving)], lo - span, hi + span)  # a wild epoch must not hide the data
        if moving.size:
            lo, hi = min(lo, float(moving.min())), max(hi, float(moving.max()))
    margin = 0.05 * (hi - lo if hi > lo else span)
    return lo - margin, hi + margin


def frame_figure(data: Table, history: History, epoch: int, *, max_frames: int = 100, dpi: float = DPI) -> Figure:
    """The animation's frame for ``epoch``: the figure ``save_animation`` renders, to inspect or save.

    With one feature the axes hold the data and the line ``y = w x + b`` of the epoch's
    parameters (``ax.get_lines()[j]`` for target ``j``, from the smallest to the largest x);
    with several features one panel per target (at most four) holds the predictions
    against the actual values (``ax.collections[0].get_offsets()``) and the diagonal. The
    epoch and its loss are the figure's suptitle. Axes are those of an animation with
    ``max_frames``.
    """
    epochs = frame_epochs(len(history.records), max_frames)
    frames = _FitFrames(data, history, sorted({*epochs, epoch}), dpi)
    return frames.show(epoch)


def save_animation(data: Table, history: History, path: str | os.PathLike, *, max_frames: int = 100,
                   fps: float = 10, dpi: float = DPI) -> Path:
    """Write the fit as an animation, one frame per chosen epoch, and return the path.

    With one feature each frame shows the data and the model's line at that epoch; with
    several, the predictions against the actual targets with the diagonal, one panel per
    target (the first four). The epoch, its loss and, for one feature and one target, the
    line's equation are in the title; the axes stay fixed, so the motion shows. Each frame
    shows the parameters the epoch's loss was computed at (``history.records``). Histories
    longer than ``max_frames`` are thinned as :func:`frame_epochs` says (first and last
    kept, consecutive early, geometric later). The final frame is held for 1.5 s.

    Parameters
    ----------
    data : Dataset, or anything with ``X``, ``y`` and the columns' names (:class:`torchlinreg.shapes.Table`)
    history : History with at least one record
    path : a ``.gif`` file (Pillow, always available) or ``.mp4`` (needs ffmpeg)
    max_frames : int >= 2, the most frames drawn
    fps : frames per second; GIF delays are whole hundredths of a second and most viewers
        slow frames shorter than 0.02 s, so above 50 a GIF plays slower than asked
    dpi : resolution; 80 gives 512 x 384 pixels per frame

    Raises
    ------
    OutputError
        The suffix is neither ``.gif`` nor ``.mp4``, ``.mp4`` without ffmpeg, or the file
        cannot be written.
    ValueError
        Bad ``max_frames``, ``fps`` or ``dpi``, or an empty history.

    The same inputs give the same GIF, byte for byte. The file is written atomically.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise OutputError(f"cannot write an animation as {path.name!r}; "
                          "give a path ending in .gif (or .mp4 with ffmpeg)")
    if suffix == ".mp4":
        from matplotlib.animation import writers

        if not writers.is_available("ffmpeg"):
            raise OutputError(f"writing {path.name!r} needs ffmpeg, which was not found; "
                              "save the animation as .gif instead (or install ffmpeg)")
    for name, value in (("fps", fps), ("dpi", dpi)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
            raise ValueError(f"{name} must be a positive number, got {value!r}")
    if not path.parent.is_dir():
        raise OutputError(f"cannot write {str(path)!r}: folder {str(path.parent)!r} does not exist; create it first")

    epochs = frame_epochs(len(history.records), max_frames)  # records[i] is epoch i + 1
    frames = _FitFrames(data, history, epochs, dpi)
    if suffix == ".gif":
        return atomic_write_bytes(path, _gif(frames, epochs, fps))
    return atomic_write_bytes(path, _mp4(frames, epochs, fps, dpi))


def _gif(frames: _FitFrames, epochs: list[int], fps: float) -> bytes:
    import io

    from PIL import Image

    indexed, palette = _indexed([frames.pixels(e) for e in epochs])
    images = []
    for index in indexed:
        image = Image.frombytes("P", (index.shape[1], index.shape[0]), index.tobytes())
        image.putpalette(palette.ravel().tolist())
        images.append(image)
    delay_ms = 1000 / fps
    durations = [delay_ms] * (len(images) - 1) + [max(delay_ms, HOLD_LAST_S * 1000)]
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=durations, loop=0)
    return buffer.getvalue()


def _indexed(frames: list[np.ndarray], size: int = 255) -> tuple[list[np.ndarray], np.ndarray]:
    """The RGB frames as palette indices (uint8, (h, w)) into one shared palette ((size, 3), uint8).

    The palette holds the ``size`` most frequent colours of the first and the last frame
    (ties by colour), so the background, points, line and text keep their exact colours
    (Pillow's own mapping rounds them); the few other antialiased shades take the nearest.
    With one palette the frames differ only where something moved, which GIF stores compactly.
    """
    def codes(rgb: np.ndarray) -> np.ndarray:  # (h, w, 3) uint8 -> (h, w) int, one number per colour
        rgb = rgb.astype(np.int32)
        return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]

    colours, counts = np.unique(np.concatenate([codes(frames[0]).ravel(), codes(frames[-1]).ravel()]),
                                return_counts=True)
    chosen = colours[np.lexsort((colours, -counts))[:size]]  # most frequent first, then by colour
    palette = np.stack([chosen >> 16, (chosen >> 8) & 255, chosen & 255], axis=1)  # (k, 3)
    lut = np.full(1 << 24, size, dtype=np.uint8)  # colour -> index; ``size`` marks "not in the palette"
    lut[chosen] = np.arange(len(chosen), dtype=np.uint8)
    indexed = []
    for rgb in frames:
        c = codes(rgb)
        index = lut[c]
        missing = np.unique(c[index == size])
        if missing.size:  # nearest palette colour, remembered for the following frames
            rgb_missing = np.stack([missing >> 16, (missing >> 8) & 255, missing & 255], axis=1)
            distance = ((rgb_missing[:, None, :] - palette[None, :, :]) ** 2).sum(axis=2)
            lut[missing] = distance.argmin(axis=1).astype(np.uint8)
            index = lut[c]
        indexed.append(index)
    return indexed, palette.astype(np.uint8)


def _mp4(frames: _FitFrames, epochs: list[int], fps: float, dpi: float) -> bytes:
    """Through matplotlib's ffmpeg writer into a private folder, then read back for the atomic write."""
    from matplotlib.animation import FFMpegWriter

    writer = FFMpegWriter(fps=fps, codec="h264", extra_args=["-pix_fmt", "yuv420p"])  # playable everywhere
    with tempfile.TemporaryDirectory() as tmp:
        movie = Path(tmp) / "fit.mp4"
        with writer.saving(frames.fig, str(movie), dpi):
            for epoch in epochs:
                frames.show(epoch)
                writer.grab_frame()
            for _ in range(max(0, math.ceil(HOLD_LAST_S * fps) - 1)):  # hold the last frame
                writer.grab_frame()
        return movie.read_bytes()
