"""Progress bar, thinned epoch lines and TensorBoard logs, checked against the history."""

import io
import sys

import pytest

from torchlinreg import PrintReport, TrainConfig, build_model, tutorial_data
from torchlinreg.progress import ProgressBar
from torchlinreg.report import format_epoch
from torchlinreg.training import train


def run(callbacks, epochs=30, **kw):
    data = tutorial_data()
    return train(build_model(), data.X, data.y, TrainConfig(epochs=epochs, **kw), callbacks=callbacks)


def test_progress_bar_shows_epoch_loss_and_rate_when_forced():
    err = io.StringIO()
    history = run([ProgressBar(delay=0, stream=err, force=True, mininterval=0)])
    text = err.getvalue()
    assert "training" in text and "30/30" in text and "epoch/s" in text
    assert f"loss={history.losses[-1]:.6g}" in text and "lr=0.001" in text


def test_progress_bar_is_off_when_stderr_is_not_a_terminal():
    err = io.StringIO()  # not a tty
    run([ProgressBar(delay=0, stream=err)])
    assert err.getvalue() == ""


def test_a_bar_that_is_off_does_not_import_tqdm(monkeypatch):
    # tqdm.auto in a Jupyter kernel without ipywidgets warns (TqdmWarning, with a path) on import
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)  # importing it now raises ImportError
    out = io.StringIO()
    history = run([ProgressBar(delay=0, stream=io.StringIO(), force=False), PrintReport(out)], epochs=3)
    assert len(history) == 3 and out.getvalue().count("epoch:") == 3


def test_log_every_thins_epoch_lines_but_keeps_first_and_last():
    out = io.StringIO()
    history = run([PrintReport(out, every=7)], epochs=30)
    lines = [ln for ln in out.getvalue().splitlines() if ln.startswith("epoch:")]
    expected = [r for r in history.records if r.epoch in (1, 7, 14, 21, 28, 30)]
    assert lines == [format_epoch(r) for r in expected]


def test_quiet_report_prints_no_epoch_lines():
    out = io.StringIO()
    run([PrintReport(out, every=0)])
    assert "epoch:" not in out.getvalue() and "Current weight:" in out.getvalue()


def test_tensorboard_logs_every_epoch(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from torchlinreg.tensorboard import TensorBoardLogger

    history = run([TensorBoardLogger(tmp_path / "tb")], epochs=12, schedule="step", step_size=5, gamma=0.5)
    events = EventAccumulator(str(tmp_path / "tb"), size_guidance={"scalars": 0, "histograms": 0})
    events.Reload()
    loss = events.Scalars("loss/train")
    assert [e.step for e in loss] == list(range(1, 13))
    # TensorBoard stores float32 scalars: one rounding each, rel ≤ U32 = 6e-8 (none for the float32 run's loss and
    # weights, which are float32 values already); the tolerances (1e-6) are above that
    assert [e.value for e in loss] == pytest.approx(history.losses, rel=1e-6)
    assert [e.value for e in events.Scalars("lr")] == pytest.approx([r.lr for r in history.records])
    weights = events.Scalars("params/linear.weight[0][0]")
    assert [e.value for e in weights] == pytest.approx([r.params["linear.weight"][0][0] for r in history.records])
    assert "linear.bias" in events.Tags()["histograms"]


def test_fit_command_writes_tensorboard_logs(tmp_path, capsys):
    pytest.importorskip("tensorboard")
    from torchlinreg.cli import main

    assert main(["fit", "--epochs", "3", "--no-plots", "--quiet", "--tensorboard", str(tmp_path / "tb"),
                 "--out", str(tmp_path / "out")]) == 0
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    assert "epoch:" not in capsys.readouterr().out
