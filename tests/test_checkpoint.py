"""Checkpoints and resume: a fit stopped after any epoch and resumed ends bit-identical to one never stopped.

The reference is always the same fit run without interruption, in the test; "identical"
means every output file byte for byte, the history and the parameters' bits.
"""

import functools
import io
import json
import os
import pickle
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from torchlinreg import Callback, TrainConfig, make_regression, run_fit
from torchlinreg.checkpoint import HISTORY_LOG
from torchlinreg.cli import main
from torchlinreg.errors import CheckpointError, ConfigError, Interrupted, OutputError

DATA = make_regression(120, 2, 2, noise=0.5, seed=5)  # two targets: every state tensor has a real shape

CASES = {  # name -> (config, engine, other run_fit settings)
    "sgd-momentum-minibatch-step": (TrainConfig(epochs=12, lr=0.02, momentum=0.9, batch_size=16, schedule="step",
                                                step_size=4, gamma=0.5), "data", {}),
    "adam-data-validation": (TrainConfig(epochs=10, optimizer="adam", lr=0.05), "data",
                             {"validation_fraction": 0.25}),
    "adam-gram-cosine": (TrainConfig(epochs=10, optimizer="adam", lr=0.05, schedule="cosine"), "gram", {}),
    "sgd-momentum-gram-step": (TrainConfig(epochs=10, lr=0.02, momentum=0.9, nesterov=True, schedule="step",
                                           step_size=3, gamma=0.5), "gram", {}),
    "adamw-minibatch-standardize-tol": (TrainConfig(epochs=60, optimizer="adamw", lr=0.1, batch_size=32, tol=1e-3,
                                                    patience=3, dtype="float64"), "data", {"standardize": True}),
    "lbfgs-data": (TrainConfig(epochs=6, optimizer="lbfgs"), "data", {}),
    "lbfgs-gram": (TrainConfig(epochs=6, optimizer="lbfgs"), "gram", {}),
}


class SignalAt(Callback):
    """Sends this process a real signal while epoch ``epoch`` runs (before its step)."""

    def __init__(self, epoch: int, signum: int = signal.SIGINT):
        self.epoch, self.signum = epoch, signum

    def on_epoch_end(self, record):
        if record.epoch == self.epoch:
            os.kill(os.getpid(), self.signum)


class CrashAt(Callback):
    """Stands for a process killed during epoch ``epoch``: training ends with an error, nothing more is written."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_epoch_end(self, record):
        if record.epoch == self.epoch:
            raise RuntimeError("killed")


def fit(out, case, data=DATA, **kwargs):
    config, engine, extra = CASES[case]
    return run_fit(data, kwargs.pop("config", config), out, engine=engine, stream=io.StringIO(), quiet=True,
                   **extra, **kwargs)


def temporary_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*.tmp"))


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_same_run(resumed, reference, out: Path, reference_out: Path):
    assert resumed.history.to_json() == reference.history.to_json()
    for (name, a), (_, b) in zip(resumed.model.state_dict().items(), reference.model.state_dict().items()):
        assert torch.equal(a, b), name  # the same bits
    assert resumed.history.losses == reference.history.losses
    got, want = files(out), files(reference_out)
    assert sorted(got) == sorted(want)  # the checkpoint is gone: the same files as a run never stopped
    for name in want:
        assert got[name] == want[name], name


@pytest.fixture(scope="module")
def references(tmp_path_factory):
    """Each case run once without interruption (and without checkpoints)."""
    made = {}

    def get(case):
        if case not in made:
            out = tmp_path_factory.mktemp(case)
            made[case] = (fit(out, case), out)
        return made[case]
    return get


@pytest.mark.parametrize("case", list(CASES))
def test_sigint_then_resume_is_bit_identical(tmp_path, references, case):
    reference, reference_out = references(case)
    stop = max(1, len(reference.history) // 2)
    with pytest.raises(Interrupted, match=f"stopped by SIGINT after epoch {stop} of") as exc:
        fit(tmp_path, case, callbacks=[SignalAt(stop)])
    assert exc.value.signum == signal.SIGINT and exc.value.resumable
    state = json.loads((tmp_path / "checkpoint" / "state.json").read_text())
    assert state["epoch"] == stop
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back after training
    assert_same_run(fit(tmp_path, case, resume=True), reference, tmp_path, reference_out)


@pytest.mark.parametrize("stop", [1, 2, 7, 11, 12])
def test_any_epoch_including_the_first_and_last(tmp_path, references, stop):
    case = "sgd-momentum-minibatch-step"
    reference, reference_out = references(case)
    with pytest.raises(Interrupted):
        fit(tmp_path, case, callbacks=[SignalAt(stop, signal.SIGTERM)])
    assert_same_run(fit(tmp_path, case, resume=True), reference, tmp_path, reference_out)


def test_resume_twice_and_plots_report_animation_identical(tmp_path):
    case = "adam-gram-cosine"
    outputs = {"animation": True, "report": True, "statistics": True}
    reference = fit(tmp_path / "ref", case, **outputs)
    out = tmp_path / "run"
    for stop in (3, 7):
        with pytest.raises(Interrupted):
            fit(out, case, callbacks=[SignalAt(stop)], resume=stop != 3, **outputs)
    resumed = fit(out, case, resume=True, **outputs)
    assert {"fit.gif", "report.html", "loss.png"} <= set(files(out))
    assert_same_run(resumed, reference, out, tmp_path / "ref")


@pytest.mark.parametrize("case", ["sgd-momentum-minibatch-step", "adam-gram-cosine"])
def test_a_crash_loses_only_the_epochs_since_the_last_checkpoint(tmp_path, references, case):
    reference, reference_out = references(case)
    with pytest.raises(RuntimeError, match="killed"):
        fit(tmp_path, case, callbacks=[CrashAt(9)], checkpoint_every=4)
    folder = tmp_path / "checkpoint"
    state = json.loads((folder / "state.json").read_text())
    assert state["epoch"] == 8  # the last multiple of 4 before the crash
    # what a kill in the middle of the next checkpoint leaves: a torn history line, an orphan tensors file
    # that state.json does not name, and a temporary file
    with open(folder / HISTORY_LOG, "ab") as f:
        f.write(b'{"epoch": 9, "loss": 1.2')
    (folder / "state-000012.safetensors").write_bytes(b"half a file")
    (folder / ".state.json.abc123.tmp").write_bytes(b"{")
    assert_same_run(fit(tmp_path, case, resume=True, checkpoint_every=4), reference, tmp_path, reference_out)


@pytest.mark.parametrize("where", ["tensors", "state.json", "history log"])
def test_a_full_disk_during_a_checkpoint_keeps_the_previous_one(tmp_path, references, monkeypatch, where):
    from test_outputs import DiskFills, _FullFile

    from torchlinreg import checkpoint as checkpoint_module
    from torchlinreg import outputs

    case = "sgd-momentum-minibatch-step"
    reference, reference_out = references(case)

    class FillAt(Callback):  # the disk fills during epoch 8, before its checkpoint
        def on_epoch_end(self, record):
            if record.epoch != 8:
                return
            if where == "history log":  # the append stores a few bytes, then ENOSPC
                monkeypatch.setattr(checkpoint_module, "open", lambda *a: _FullFile(open(*a), 7), raising=False)
            else:
                monkeypatch.setattr(outputs, "os", DiskFills(fail_at=1 if where == "tensors" else 2))

    with pytest.raises(OutputError, match="No space left on device") as failed:
        fit(tmp_path, case, callbacks=[FillAt()], checkpoint_every=4, plots=False)
    monkeypatch.undo()
    assert "the checkpoint of epoch 4 in" in str(failed.value) and "resume from it with resume=True" in str(failed.value)
    assert json.loads((tmp_path / "checkpoint" / "state.json").read_text())["epoch"] == 4
    assert [p.name for p in (tmp_path / "checkpoint").glob("state-*")] == ["state-000004.safetensors"]  # no new one
    assert temporary_files(tmp_path) == []
    assert_same_run(fit(tmp_path, case, resume=True), reference, tmp_path, reference_out)


def test_checkpoints_hold_no_pickle_and_are_checked(tmp_path):
    case = "sgd-momentum-minibatch-step"
    with pytest.raises(Interrupted):
        fit(tmp_path, case, callbacks=[SignalAt(5)], checkpoint_every=2)
    folder = tmp_path / "checkpoint"
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["history.jsonl", "state-000005.safetensors", "state.json"]  # older tensors files removed
    import safetensors.torch

    tensors = safetensors.torch.load((folder / "state-000005.safetensors").read_bytes())
    assert {"model.linear.weight", "last.linear.weight", "rng.shuffle", "rng.torch", "rng.numpy"} <= set(tensors)
    assert any(k.endswith("momentum_buffer") for k in tensors)

    tensors_file = folder / "state-000005.safetensors"
    good = tensors_file.read_bytes()
    tensors_file.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    with pytest.raises(CheckpointError, match="SHA-256"):
        fit(tmp_path, case, resume=True)
    tensors_file.write_bytes(pickle.dumps({"model": 1}, protocol=4))
    with pytest.raises(CheckpointError, match="pickle"):
        fit(tmp_path, case, resume=True)
    tensors_file.write_bytes(good)
    state_file = folder / "state.json"
    state_text = state_file.read_text()
    state_file.write_text(state_text[:100])
    with pytest.raises(CheckpointError, match="not valid JSON"):
        fit(tmp_path, case, resume=True)
    state_file.write_text(state_text)
    log = (folder / HISTORY_LOG).read_bytes()
    (folder / HISTORY_LOG).write_bytes(log[:-10])
    with pytest.raises(CheckpointError, match="history.jsonl"):
        fit(tmp_path, case, resume=True)


def test_resume_refuses_other_settings_or_data(tmp_path):
    case = "sgd-momentum-minibatch-step"
    with pytest.raises(Interrupted):
        fit(tmp_path, case, callbacks=[SignalAt(4)])
    other = TrainConfig(epochs=12, lr=0.03, momentum=0.9, batch_size=16, schedule="step", step_size=4, gamma=0.5)
    with pytest.raises(ConfigError, match="lr is 0.03 here but 0.02 in the checkpoint"):
        fit(tmp_path, case, config=other, resume=True)
    with pytest.raises(ConfigError, match="the data differ"):
        fit(tmp_path, case, data=make_regression(120, 2, 2, noise=0.5, seed=6), resume=True)
    with pytest.raises(ConfigError, match="standardize is True here but False"):
        fit(tmp_path, case, resume=True, standardize=True)
    # nothing was changed by the refusals: the right settings still resume
    assert fit(tmp_path, case, resume=True).history.status == "completed"


def test_a_checkpoint_is_not_overwritten_by_accident(tmp_path):
    case = "adam-data-validation"
    with pytest.raises(ConfigError, match="no checkpoint to resume"):
        fit(tmp_path, case, resume=True)
    with pytest.raises(Interrupted):
        fit(tmp_path, case, callbacks=[SignalAt(3)])
    with pytest.raises(OutputError, match=r"checkpoint of an interrupted run \(epoch 3 of 10\); pass resume=True"):
        fit(tmp_path, case)
    fit(tmp_path, case, force=True)  # starts over
    assert not (tmp_path / "checkpoint").exists()
    with pytest.raises(ConfigError, match="output folder"):
        fit(None, case, checkpoint_every=2)


def test_cli_refusals_are_one_line(tmp_path, capsys):
    base = ["fit", "--epochs", "30", "--out", str(tmp_path), "--quiet", "--no-plots"]
    assert main(base + ["--resume"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no checkpoint to resume" in err
    assert main(base + ["--checkpoint-every", "0"]) == 2
    assert "--checkpoint-every must be a positive integer" in capsys.readouterr().err


# --- real processes: Ctrl-C, SIGTERM and SIGKILL on `python -m torchlinreg fit` ------------------------------------

CLI_ARGS = ["fit", "--epochs", "600", "--lr", "0.0005", "--momentum", "0.9", "--batch-size", "16", "--schedule",
            "step", "--step-size", "100", "--gamma", "0.5", "--log-every", "1", "--no-plots"]


@pytest.fixture(scope="module")
def cli_reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli-reference")
    assert main(CLI_ARGS + ["--out", str(out), "--quiet"]) == 0
    return out


def start(out: Path, *extra: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "torchlinreg", *CLI_ARGS, "--out", str(out), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def wait_for_epoch(process: subprocess.Popen, epoch: int) -> int:
    """Read the epoch lines until ``epoch`` is printed; return the last epoch printed."""
    last = 0
    while last < epoch:
        line = process.stdout.readline()
        assert line, f"the fit ended before epoch {epoch}: {process.stderr.read()}"
        if line.startswith("epoch:"):
            last = int(line.split()[1])
    return last


@pytest.mark.slow
@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_signal_to_a_real_process_then_resume(tmp_path, capsys, cli_reference, signum, code):
    process = start(tmp_path)
    wait_for_epoch(process, 20)
    process.send_signal(signum)
    out, err = process.communicate(timeout=120)
    assert process.returncode == code, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert f"stopped by {signal.Signals(signum).name} after epoch" in lines[0]
    command = lines[0].split("continue with: ")[1]
    assert command.startswith("torchlinreg fit") and command.endswith("--resume")
    assert main(shlex.split(command)[1:] + ["--quiet"]) == 0  # the command it printed, as a user would paste it
    capsys.readouterr()
    assert files(tmp_path) == files(cli_reference)


@pytest.mark.slow
def test_sigkill_loses_at_most_the_epochs_since_the_last_checkpoint(tmp_path, capsys, cli_reference):
    every = 5
    process = start(tmp_path, "--checkpoint-every", str(every))
    state = tmp_path / "checkpoint" / "state.json"
    seen = wait_for_epoch(process, 30)
    assert state.exists()
    process.kill()  # SIGKILL: no handler runs, nothing is cleaned up
    out, _ = process.communicate(timeout=60)
    printed = [int(line.split()[1]) for line in out.splitlines() if line.startswith("epoch:")]
    last_printed = max(printed, default=seen)
    saved = json.loads(state.read_text())["epoch"]
    # epoch E is printed after epoch E - 1 finished, and with it any checkpoint due then
    assert saved % every == 0 and last_printed - every <= saved <= last_printed
    assert main(CLI_ARGS + ["--out", str(tmp_path), "--checkpoint-every", str(every), "--resume", "--quiet"]) == 0
    capsys.readouterr()
    assert files(tmp_path) == files(cli_reference)


# --- streamed fits (--stream): the same promise, through the command line ------------------------------------------

STREAM_CASES = {  # name -> fit arguments after DATA
    "gram-sgd-momentum-step": ["--engine", "gram", "--lr", "0.05", "--momentum", "0.9", "--schedule", "step",
                               "--step-size", "4", "--gamma", "0.5", "--epochs", "20", "--standardize"],
    "minibatch-adam": ["--optimizer", "adam", "--lr", "0.05", "--batch-size", "64", "--epochs", "8"],
}


@pytest.fixture(scope="module")
def stream_data(tmp_path_factory):
    from torchlinreg import write_table
    from torchlinreg.data import dataset_columns

    path = tmp_path_factory.mktemp("stream-data") / "d.parquet"
    write_table(path, dataset_columns(make_regression(3000, 3, 2, noise=0.5, seed=5)))
    return path


def stream_args(data: Path, case: str, out: Path, *extra: str) -> list[str]:
    """A streamed fit (six chunks) of ``case`` into ``out``, saving the model there too."""
    return ["fit", str(data), "--target", "y1", "y2", "--stream", "--chunk-rows", "500", *STREAM_CASES[case],
            "--no-plots", "--quiet", "--out", str(out), "--save", str(out / "model"), *extra]


@pytest.fixture(scope="module")
def stream_references(tmp_path_factory, stream_data):
    """Each streamed case run once without interruption and without checkpoints."""
    made = {}

    def get(case):
        if case not in made:
            out = tmp_path_factory.mktemp(f"stream-{case}")
            assert main(stream_args(stream_data, case, out)) == 0
            made[case] = out
        return made[case]
    return get


def with_callbacks(monkeypatch, *callbacks):
    """The command's streamed fits run with ``callbacks`` (the CLI takes none)."""
    from torchlinreg import fitting as fit

    monkeypatch.setattr(fit, "run_fit", functools.partial(fit.run_fit, callbacks=callbacks))


@pytest.mark.parametrize("case, signum, stop", [("gram-sgd-momentum-step", signal.SIGINT, 10),
                                                 ("minibatch-adam", signal.SIGTERM, 5)])
def test_streamed_fit_signalled_then_resumed_is_byte_identical(tmp_path, capsys, monkeypatch, stream_data,
                                                               stream_references, case, signum, stop):
    reference = stream_references(case)
    capsys.readouterr()
    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        with_callbacks(patch, SignalAt(stop, signum))
        code = main(stream_args(stream_data, case, out, "--checkpoint-every", "3"))
    err = capsys.readouterr().err
    assert code == 128 + signum, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and f"stopped by {signal.Signals(signum).name} after epoch {stop} of" in lines[0], err
    assert json.loads((out / "checkpoint" / "state.json").read_text())["epoch"] == stop
    assert not (out / "summary.json").exists() and not (out / "model.safetensors").exists()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back after training
    command = lines[0].split("continue with: ")[1]
    assert command.startswith("torchlinreg fit") and command.endswith("--resume")
    assert main(shlex.split(command)[1:]) == 0, capsys.readouterr().err  # pasted as a user would
    capsys.readouterr()
    got, want = files(out), files(reference)
    assert sorted(got) == sorted(want) and "model.safetensors" in got and "history.csv" in got  # no checkpoint left
    for name in want:
        assert got[name] == want[name], name


_KILL_AT = """
import functools, os, signal, sys
from torchlinreg import Callback, fitting as fit
from torchlinreg.cli import main

class KillAt(Callback):
    def on_epoch_end(self, record):
        if record.epoch == int(sys.argv[1]):
            os.kill(os.getpid(), signal.SIGKILL)  # no handler runs, nothing is cleaned up

fit.run_fit = functools.partial(fit.run_fit, callbacks=[KillAt()])
sys.exit(main(sys.argv[2:]))
"""


def test_streamed_fit_killed_by_sigkill_then_resumed_is_byte_identical(tmp_path, capsys, stream_data,
                                                                       stream_references):
    case = "minibatch-adam"
    reference = stream_references(case)
    out = tmp_path / "run"
    args = stream_args(stream_data, case, out, "--checkpoint-every", "3")
    killed = subprocess.run([sys.executable, "-c", _KILL_AT, "8", *args], capture_output=True, text=True,
                            timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert json.loads((out / "checkpoint" / "state.json").read_text())["epoch"] == 6  # lost epochs 7 and 8
    assert not (out / "summary.json").exists()
    assert main(args + ["--resume"]) == 0, capsys.readouterr().err
    capsys.readouterr()
    assert files(out) == files(reference)


def test_streamed_resume_refuses_other_data_or_settings(tmp_path, capsys, monkeypatch, stream_data):
    import pyarrow.parquet as pq

    case = "gram-sgd-momentum-step"
    data = tmp_path / "d.parquet"
    data.write_bytes(stream_data.read_bytes())
    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        with_callbacks(patch, SignalAt(6, signal.SIGTERM))
        assert main(stream_args(data, case, out)) == 143
    capsys.readouterr()
    state = (out / "checkpoint" / "state.json").read_bytes()

    table = pq.read_table(stream_data)
    changed = table.column("x2").to_numpy().copy()
    changed[2345] += 1e-9  # one value, deep in the file; the same size and row count
    pq.write_table(table.set_column(table.column_names.index("x2"), "x2", [changed]), data)
    assert main(stream_args(data, case, out, "--resume")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the data differ" in err and "R factor" in err, err
    data.write_bytes(stream_data.read_bytes())
    assert main(stream_args(data, case, out, "--resume", "--chunk-rows", "700")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "chunk_rows is 700 here but 500 in the checkpoint" in err, err
    assert (out / "checkpoint" / "state.json").read_bytes() == state  # the refusals changed nothing
    assert main(stream_args(data, case, out, "--resume")) == 0


def test_streamed_checkpoint_refusals_come_before_the_first_pass(tmp_path, capsys):
    from torchlinreg import write_table

    y = np.arange(3000.0)
    y[2500] = np.nan  # the first pass would stop here
    write_table(tmp_path / "bad.parquet", {"x": np.arange(3000.0), "y": y})
    base = ["fit", str(tmp_path / "bad.parquet"), "--stream", "--chunk-rows", "500", "--out", str(tmp_path / "out"),
            "--no-plots"]
    assert main(base + ["--resume"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no checkpoint to resume" in err, err
    assert main(base + ["--checkpoint-every", "0"]) == 2
    assert "--checkpoint-every must be a positive integer" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    assert main(base) == 1 and "row 2501" in capsys.readouterr().err  # the first pass: what came before it


def test_streamed_checkpoints_need_one_process_and_an_output_folder(tmp_path, stream_data):
    from types import SimpleNamespace

    from torchlinreg.fitting import run_fit
    from torchlinreg.filesource import open_files as open_source

    source = open_source(stream_data)
    torchrun = SimpleNamespace(is_distributed=True, world_size=2)  # refused before the job is used
    with pytest.raises(ConfigError, match="under torchrun across 2 processes.*without torchrun"):
        run_fit(source, TrainConfig(epochs=3), tmp_path / "out", dist=torchrun, checkpoint_every=3, quiet=True)
    assert not (tmp_path / "out").exists()
    with pytest.raises(ConfigError, match=r"output folder \(out_dir\) and one process"):
        run_fit(source, TrainConfig(epochs=3), None, checkpoint_every=2, quiet=True)
