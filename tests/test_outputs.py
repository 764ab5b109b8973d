"""Atomic outputs: a full disk or a killed process leaves each output file whole (old or new), never torn.

Every writer goes through ``outputs.atomic_write_bytes``: history, summary, plots, GIF,
report, model files, predictions and checkpoints. These tests make its writes fail the
way a full disk does (ENOSPC in the middle of ``write``, and a real EFBIG from the kernel
under a file-size limit) and kill processes in the middle of writing.
"""

import csv
import errno
import io
import json
import os
import random
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from torchlinreg import outputs
from torchlinreg.cli import main
from torchlinreg.errors import OutputError
from torchlinreg.outputs import atomic_write_bytes


class _FullFile:
    """A file on a disk with ``room`` bytes left: the write stores what fits, then raises ENOSPC."""

    def __init__(self, f, room: int):
        self.f, self.room = f, room

    def write(self, data) -> int:
        self.f.write(bytes(data[:self.room]))
        self.f.flush()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()
        return False


class DiskFills:
    """``outputs``' view of ``os`` in which the ``fail_at``-th file opened for writing (1-based) hits a full disk."""

    def __init__(self, fail_at: int = 1, room: int = 100):
        self.fail_at, self.room, self.opened = fail_at, room, 0

    def fdopen(self, fd, mode="r", *args, **kwargs):
        f = os.fdopen(fd, mode, *args, **kwargs)
        self.opened += 1
        return _FullFile(f, self.room) if self.opened == self.fail_at else f

    def __getattr__(self, name):
        return getattr(os, name)


def temporary_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*.tmp"))


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def test_enospc_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "history.json"
    path.write_text('{"old": true}\n')
    monkeypatch.setattr(outputs, "os", DiskFills(room=5))
    with pytest.raises(OutputError, match=r"cannot write '.*history\.json' \(No space left on device\); free some"):
        atomic_write_bytes(path, b'{"new": true}\n' * 1000)
    assert path.read_text() == '{"old": true}\n'
    assert os.listdir(tmp_path) == ["history.json"]


def test_enospc_on_a_first_write_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(outputs, "os", DiskFills())
    with pytest.raises(OutputError, match="No space left on device"):
        atomic_write_bytes(tmp_path / "summary.json", b"{}" * 1000)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("fail_at", [1, 4, 6], ids=["history", "first-plot", "later-plot"])
def test_cli_on_a_full_disk_gives_one_line_and_keeps_the_old_run_whole(tmp_path, capsys, monkeypatch, fail_at):
    """A write that fails part-way through a run leaves the previous run's folder as it was, every file
    (the files are staged, then moved into place together): not a mix of the new run's first files
    and the old run's last ones."""
    argv = ["fit", "--epochs", "4", "--quiet"]
    old_dir = tmp_path / "run"
    assert main(argv + ["--out", str(old_dir)]) == 0
    old = snapshot(old_dir)
    capsys.readouterr()
    disk = DiskFills(fail_at=fail_at)
    monkeypatch.setattr(outputs, "os", disk)
    assert main(argv + ["--lr", "0.0002", "--out", str(old_dir)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("torchlinreg: error: cannot write ") and "No space left" in err
    assert disk.opened == fail_at
    assert snapshot(old_dir) == old  # nothing torn, nothing extra, nothing new
    assert temporary_files(old_dir) == [] and sorted(p.name for p in old_dir.iterdir()) == sorted(old)


def _limit_file_size():
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))


def test_a_real_write_failure_from_the_kernel(tmp_path, capsys):
    """Under a 20 kB file-size limit the kernel refuses the plot writes (EFBIG): no torn file, one line."""
    out = tmp_path / "run"
    assert main(["fit", "--epochs", "3", "--quiet", "--out", str(out)]) == 0
    capsys.readouterr()
    before = snapshot(out)
    assert max(len(b) for b in before.values()) > 20_000  # the plots do not fit
    command = [sys.executable, "-m", "torchlinreg", "fit", "--epochs", "5", "--quiet", "--out", str(out)]
    process = subprocess.run(command, capture_output=True, text=True, preexec_fn=_limit_file_size, timeout=300)
    assert process.returncode == 2, process.stderr
    assert process.stderr.count("\n") == 1 and "File too large" in process.stderr
    after = snapshot(out)
    assert sorted(after) == sorted(before) and temporary_files(out) == []
    for name, data in after.items():
        if len(before[name]) > 20_000 or len(data) > 20_000:
            assert data == before[name], name  # a file that could not be written whole is the old one


WRITER = """
import json, sys
from torchlinreg.outputs import atomic_write_text
path = sys.argv[1]
texts = [json.dumps({"records": [[1, 2, 3]] * 300_000}), json.dumps({"records": [[4, 5, 6]] * 300_000})]
print("ready", flush=True)
i = 0
while True:
    atomic_write_text(path, texts[i % 2])
    i += 1
"""


def test_sigkill_during_writes_leaves_the_old_or_the_new_file(tmp_path):
    seed = 20261207  # fixed: the same kill delays on every run (where a kill lands still varies with load)
    rng = random.Random(seed)
    path = tmp_path / "history.json"
    whole = [{"records": [[1, 2, 3]] * 300_000}, {"records": [[4, 5, 6]] * 300_000}]  # 3.3 MB of JSON each
    mid_write = 0  # kills that landed inside a write: they leave its temporary file behind
    for attempt in range(30):
        process = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True)
        assert process.stdout.readline() == "ready\n"
        left = len(temporary_files(tmp_path))
        time.sleep(rng.uniform(0.0, 0.3))
        process.kill()
        process.wait()
        mid_write += len(temporary_files(tmp_path)) > left
        if path.exists():
            assert json.loads(path.read_text()) in whole, f"torn file after kill {attempt} (seed {seed})"
        if attempt >= 7 and mid_write >= 3:
            break
    assert mid_write >= 1, f"no kill landed inside a write, so this proved nothing (seed {seed})"


@pytest.mark.slow
def test_sigkill_during_a_fit_leaves_only_whole_files(tmp_path, capsys):
    """Kill `torchlinreg fit` at random moments of a run that writes a long history; every file present parses."""
    seed = 20261207  # fixed, as above
    rng = random.Random(seed)
    out = tmp_path / "run"
    argv = ["fit", "--epochs", "3000", "--quiet", "--out", str(out)]
    started = time.perf_counter()
    process = subprocess.run([sys.executable, "-m", "torchlinreg", *argv], capture_output=True, text=True, timeout=600)
    duration = time.perf_counter() - started
    assert process.returncode == 0, process.stderr
    for attempt in range(2):
        process = subprocess.Popen([sys.executable, "-m", "torchlinreg", *argv, "--lr", f"0.000{attempt + 2}"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.5, 1.0) * duration)  # mostly while the outputs are written
        process.kill()
        process.wait()
        for path in out.iterdir():
            if path.name.endswith(".tmp"):
                continue  # a killed writer's temporary file, not an output; the next run removes it
            if path.suffix == ".json":
                json.loads(path.read_text())
            elif path.suffix == ".csv":
                rows = list(csv.reader(io.StringIO(path.read_text())))
                assert len(rows) == 3001 and len({len(r) for r in rows}) == 1, (path, seed)
            elif path.suffix == ".png":
                with Image.open(path) as image:
                    image.verify()
    assert main(argv) == 0  # a clean run afterwards removes any temporary files left
    capsys.readouterr()
    assert temporary_files(out) == []
