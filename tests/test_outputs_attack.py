"""Attacks on the output folder and the checkpoint (issue 15, findings 2, 5, 6 and 13).

- Two fits into one ``--out``: the second is refused with one line naming the holder, and the folder
  holds one run's files (``summary.json`` lists every file with its SHA-256); a lock left by a dead
  process is taken over; a run killed while moving its files into place is finished by the next one.
- Files read back (``state.json``, the history log, an earlier ``summary.json``) are read bounded:
  100,000 nested brackets, edited fields and a FIFO give one line and exit 1 (2 where the folder is
  only refused as an output), never a traceback.
- ``state.json`` is sealed by a SHA-256: an edited optimizer lr or betas is damage (exit 1).
- Messages: a dangling-symlink ``--out`` and a read-only file system say what they are.
"""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from fuzzing import run_cli
from torchlinreg import outputs
from torchlinreg.checkpoint_state import seal
from torchlinreg.locks import hold
from torchlinreg.locks import lock_path
from torchlinreg.outputs import recover
from torchlinreg.publish import OUTPUT_FILES

SRC = str(Path(__file__).resolve().parent.parent / "src")
ENV = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [SRC, os.environ.get("PYTHONPATH")])))
FIT = ["fit", "--optimizer", "adam", "--lr", "0.05", "--quiet", "--no-plots"]
DEEP = b"[" * 100_000 + b"]" * 100_000


def one_run(out: Path) -> dict:
    """Check that ``out`` holds one run's files: every file summary.json lists has the SHA-256 it records, and no
    other file of a run is there. Returns the summary."""
    summary = json.loads((out / "summary.json").read_text())
    listed = summary["run"]["files"]
    for name, sha in listed.items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == sha, name
    present = {p.name for p in out.iterdir() if p.is_file() and p.name in OUTPUT_FILES}
    assert present == set(listed) | {"summary.json"}
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no lock, stage or temporary file left
    return summary


# --- the lock: one writer at a time ---------------------------------------------------------------------------

def test_a_second_fit_into_a_folder_in_use_is_refused_naming_the_holder(tmp_path):
    """Two real fits (seeds 1 and 2) into one --out: the second, started while the first holds the folder
    (stopped there by SIGSTOP, so the overlap does not depend on timing), is refused; the first finishes."""
    out = tmp_path / "same"
    first = subprocess.Popen([sys.executable, "-m", "torchlinreg", *FIT, "--epochs", "5000", "--seed", "1",
                              "--out", str(out)], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120  # a generous limit on the wait, not a measurement
        while not lock_path(out).exists() or str(first.pid) not in lock_path(out).read_text():
            assert first.poll() is None, f"the first fit ended before it was seen holding the folder: {first.stderr.read()}"
            assert time.monotonic() < deadline
            time.sleep(0.001)
        first.send_signal(signal.SIGSTOP)
        second = subprocess.run([sys.executable, "-m", "torchlinreg", *FIT, "--epochs", "50", "--seed", "2",
                                 "--out", str(out)], env=ENV, capture_output=True, text=True, timeout=300)
    finally:
        first.send_signal(signal.SIGCONT)
    assert first.wait(timeout=300) == 0, first.stderr.read()
    assert second.returncode == 2 and second.stderr.count("\n") == 1, second.stderr
    assert f"process {first.pid} (started " in second.stderr and "is writing the output folder" in second.stderr
    assert "Traceback" not in second.stderr and "wrote" not in second.stderr
    summary = one_run(out)
    assert summary["settings"]["seed"] == 1 and summary["epochs_run"] == 5000


def test_fits_started_together_never_mix_their_files(tmp_path):
    """The issue's race, as it happens: each fit either succeeds or is refused in one line, and the folder holds
    the files of one of them, whichever won."""
    out = tmp_path / "same"
    for trial in range(3):
        fits = [subprocess.Popen([sys.executable, "-m", "torchlinreg", *FIT, "--epochs", "400", "--seed", str(seed),
                                  "--out", str(out)], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                 text=True) for seed in (1, 2)]
        results = [(p.wait(timeout=300), p.stderr.read()) for p in fits]
        assert any(code == 0 for code, _ in results), results
        for code, err in results:
            assert code == 0 or (code == 2 and err.count("\n") == 1 and "is writing the output folder" in err), err
        winners = {seed for seed, (code, _) in zip((1, 2), results) if code == 0}
        assert one_run(out)["settings"]["seed"] in winners


def test_a_live_holder_refuses_and_a_dead_ones_lock_is_taken_over(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen(  # another process holds the folder, as a running fit would (hold is re-entrant here)
        [sys.executable, "-c", "import sys; from torchlinreg.locks import hold\n"
         f"with hold({str(out)!r}, what='the output folder'):\n    print('held', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        code, _, err = run_cli(*FIT, "--epochs", "5", "--out", str(out))
        assert code == 2 and err.count("\n") == 1 and f"process {holder.pid} (started " in err, err
    finally:
        holder.communicate("", timeout=60)
    assert not (out / "summary.json").exists()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lock_path(out).write_text(json.dumps({"pid": int(dead.stdout), "started": "2000-01-01 00:00:00 +0000"}))
    code, _, err = run_cli(*FIT, "--epochs", "5", "--out", str(out))  # its holder is gone: the lock is taken over
    assert code == 0, err
    one_run(out)


def test_a_run_killed_while_moving_its_files_is_finished_by_the_next(tmp_path):
    """What a kill between the removal of the old summary.json and the move of the new one leaves: no summary,
    some new files in place, the rest staged. The folder is still the tool's; the next run settles it first."""
    old, new = tmp_path / "old", tmp_path / "new"
    for folder, seed in ((old, "1"), (new, "2")):
        assert run_cli(*FIT, "--epochs", "20", "--seed", seed, "--out", str(folder))[0] == 0
    stage = old / ".run-0123456789abcdef0123456789abcdef"
    shutil.copytree(new, stage)
    (old / "summary.json").unlink()
    os.replace(stage / "history.json", old / "history.json")  # moved before the kill
    assert outputs.is_run_folder(old)
    recover(old, OUTPUT_FILES)
    assert {p.name: p.read_bytes() for p in old.iterdir()} == {p.name: p.read_bytes() for p in new.iterdir()}
    (old / ".run-fedcba9876543210fedcba9876543210").mkdir()  # a run killed while staging: forgotten
    assert run_cli(*FIT, "--epochs", "20", "--seed", "3", "--out", str(old))[0] == 0
    assert one_run(old)["settings"]["seed"] == 3


# --- files read back, bounded ---------------------------------------------------------------------------------

CKPT = [*FIT, "--epochs", "30", "--checkpoint-every", "10"]


@pytest.fixture
def interrupted(tmp_path, monkeypatch):
    """A folder holding the checkpoint of the command's fit stopped by SIGTERM during epoch 12 (epoch 10 saved,
    then 12 on the signal)."""
    import functools

    from torchlinreg import fitting
    from torchlinreg.callbacks import Callback

    class Stop(Callback):
        def on_epoch_end(self, record):
            if record.epoch == 12:
                os.kill(os.getpid(), signal.SIGTERM)

    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        patch.setattr(fitting, "run_fit", functools.partial(fitting.run_fit, callbacks=[Stop()]))
        code, _, err = run_cli(*CKPT, "--out", str(out))
    assert code == 143, err
    return out


def _resume(out: Path) -> tuple[int, str]:
    code, _, err = run_cli(*CKPT, "--resume", "--out", str(out))
    return code, err


EDITS = {  # the edits of state.json, and the message each gives once its seal is made to match
    "epoch": (lambda s: s.update(epoch=12000.0), "field epoch must be an integer >= 1, got 12000.0"),
    "optimizer": (lambda s: s.update(optimizer=None), "field optimizer must be a state_dict"),
    "first_loss": (lambda s: s.update(first_loss="abc"), "field first_loss must be a number, got 'abc'"),
    "every": (lambda s: s.update(every="7"), "field every must be a positive integer or null, got '7'"),
    "numpy_rng": (lambda s: s.update(numpy_rng=[1]), "field numpy_rng must be"),
    "tensors.bytes": (lambda s: s["tensors"].update(bytes=-1), "field tensors.bytes must be an integer >= 8"),
}


@pytest.mark.parametrize("field", sorted(EDITS))
def test_an_edited_state_json_is_damage_in_one_line(interrupted, field):
    out = interrupted
    path = out / "checkpoint" / "state.json"
    good = json.loads(path.read_text())
    edit, message = EDITS[field]
    state = json.loads(path.read_text())
    edit(state)
    path.write_text(json.dumps(state))  # edited: the seal no longer matches
    code, err = _resume(out)
    assert code == 1 and err.count("\n") == 1 and "does not match the SHA-256 it holds" in err, err
    path.write_text(json.dumps(seal({k: v for k, v in state.items() if k != "sha256"})))  # edited and resealed
    code, err = _resume(out)
    assert code == 1 and err.count("\n") == 1 and message in err and "cannot be used" in err, err
    path.write_text(json.dumps(good))
    assert _resume(out)[0] == 0  # the refusals changed nothing


@pytest.mark.parametrize("where", ["lr", "betas"])
def test_an_edited_optimizer_state_is_refused(interrupted, where):
    """Finding 6: lr 0.05 -> 10.0, or other betas, in the optimizer's state: refused as damage, not trained on."""
    out = interrupted
    path = out / "checkpoint" / "state.json"
    state = json.loads(path.read_text())
    value = 10.0 if where == "lr" else {"tuple": [0.5, 0.9]}
    assert _replace(state["optimizer"], where, value) == 1
    path.write_text(json.dumps(state, indent=1))
    code, err = _resume(out)
    assert code == 1 and err.count("\n") == 1 and "SHA-256" in err, err


def _replace(encoded, key: str, value) -> int:
    """Set every ``[key, ...]`` pair of an encoded state_dict to ``value``; the number replaced."""
    found = 0
    if isinstance(encoded, list):
        if len(encoded) == 2 and encoded[0] == key:
            encoded[1] = value
            return 1
        return sum(_replace(item, key, value) for item in encoded)
    if isinstance(encoded, dict):
        found += sum(_replace(item, key, value) for item in encoded.values())
    return found


def test_a_real_settings_change_stays_exit_2(interrupted):
    out = interrupted
    code, _, err = run_cli(*CKPT, "--lr", "0.01", "--resume", "--out", str(out))
    assert code == 2 and err.count("\n") == 1 and "lr is 0.01 here but 0.05 in the checkpoint" in err, err


def test_deeply_nested_json_read_back_gives_one_line(tmp_path, interrupted):
    """100,000 nested brackets as state.json (with and without --resume) and as an earlier summary.json."""
    out = interrupted
    (out / "checkpoint" / "state.json").write_bytes(DEEP)
    code, err = _resume(out)
    assert code == 1 and err.count("\n") == 1 and "nested more than" in err, err
    code, _, err = run_cli(*CKPT, "--out", str(out))  # without --resume: not a checkpoint it can name
    assert code == 2 and err.count("\n") == 1 and "already holds 'checkpoint', not from a torchlinreg run" in err, err
    other = tmp_path / "other"
    other.mkdir()
    (other / "summary.json").write_bytes(DEEP)
    code, _, err = run_cli(*FIT, "--epochs", "5", "--out", str(other))
    assert code == 2 and err.count("\n") == 1 and "not from a torchlinreg run" in err, err
    assert (other / "summary.json").read_bytes() == DEEP


def test_files_that_are_not_regular_are_never_read(interrupted):
    out = interrupted
    folder = out / "checkpoint"
    for name in ("state.json", "history.jsonl"):
        saved = folder / f"saved-{name}"
        os.replace(folder / name, saved)
        os.mkfifo(folder / name)  # a FIFO blocks a plain read forever
        code, err = _resume(out)
        assert code == 1 and err.count("\n") == 1 and "not a regular file" in err, err
        os.unlink(folder / name)
        os.replace(saved, folder / name)
    tensors = next(folder.glob("state-*.safetensors"))
    tensors.unlink()
    tensors.symlink_to("/dev/zero")
    code, err = _resume(out)
    assert code == 1 and err.count("\n") == 1 and "not a regular file" in err, err


# --- messages ---------------------------------------------------------------------------------------------------

def test_a_dangling_symlink_out_says_so(tmp_path):
    out = tmp_path / "out"
    out.symlink_to(tmp_path / "nowhere")
    code, _, err = run_cli(*FIT, "--epochs", "5", "--out", str(out))
    assert code == 2 and err.count("\n") == 1 and "symbolic link" in err and "does not exist" in err, err
    assert "File exists" not in err


def test_a_read_only_file_system_is_named(tmp_path, monkeypatch):
    class ReadOnly:  # outputs' view of os on a read-only mount: access() refuses, statvfs says ST_RDONLY
        def access(self, path, mode):
            return False

        def statvfs(self, path):
            return SimpleNamespace(f_flag=os.ST_RDONLY)

        def __getattr__(self, name):
            return getattr(os, name)

    monkeypatch.setattr(outputs, "os", ReadOnly())
    for out in (tmp_path, tmp_path / "new"):
        code, _, err = run_cli(*FIT, "--epochs", "5", "--out", str(out))
        assert code == 2 and err.count("\n") == 1 and "read-only file system" in err, err
        assert "no permission" not in err
