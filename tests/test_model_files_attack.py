"""Issue 15, findings 1 and 7: a model's files under attack.

* A save killed at any moment (SIGKILL just before each file operation of ``save_model(force=True)``,
  then at random moments from a fixed seed) leaves the previous model or the new one, and
  ``load_model`` loads it; the next save removes what the killed one left.
* Two writers of one model path: the second is refused, naming the first; a dead writer's lock is
  taken over.
* Reading back is bounded: a tensors file of a million entries is refused under a memory limit set
  here, and a FIFO or ``/dev/zero`` as ``model.json`` is refused at once, in one line, exit 1.
"""

import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import torchlinreg
from fuzzing import run_cli
from torchlinreg.errors import ModelFileError, OutputError
from torchlinreg.locks import hold, lock_path
from torchlinreg.persistence import SavedModel, load_model, save_model

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the kills are made in forked children")

SRC = Path(torchlinreg.__file__).resolve().parent.parent  # the torchlinreg under test, for the subprocesses
OPERATIONS = ("fsync", "replace", "unlink")  # every step of a save that changes what is on disk


def model(seed: int, n_features: int) -> SavedModel:
    """Models of different sizes and names, so that a pair mixed from two of them cannot pass for one."""
    rng = np.random.default_rng(seed)
    return SavedModel(rng.standard_normal((1, n_features)), rng.standard_normal(1),
                      tuple(f"g{seed}_{i}" for i in range(n_features)), ("y",), {"generation": seed})


A, B, C, D = model(1, 2), model(2, 3), model(3, 4), model(4, 5)


def generation(stem) -> int | None:
    """Which model loads from ``stem`` (its seed), after checking it is that model bit for bit; None if none."""
    try:
        loaded = load_model(stem)
    except ModelFileError:
        return None
    seed = loaded.metadata["generation"]
    expected = {1: A, 2: B, 3: C, 4: D}[seed]
    assert np.array_equal(loaded.weight, expected.weight) and loaded.feature_names == expected.feature_names
    return seed


def save_killed_at(stem, saved: SavedModel, step: int | None) -> int | None:
    """``save_model(stem, saved, force=True)`` in a forked child that SIGKILLs itself just before its
    ``step``-th file operation; the number of operations the save made when it was not killed."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns to pytest
        code = 3
        try:
            os.close(read)
            count = [0]
            for name in OPERATIONS:
                def operation(*args, _real=getattr(os, name), **kwargs):
                    count[0] += 1
                    if count[0] == step:
                        os.kill(os.getpid(), signal.SIGKILL)
                    return _real(*args, **kwargs)
                setattr(os, name, operation)
            save_model(stem, saved, force=True)
            os.write(write, str(count[0]).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    with os.fdopen(read, "rb") as f:
        done = f.read()
    if os.WIFSIGNALED(status):
        assert os.WTERMSIG(status) == signal.SIGKILL
        return None
    assert os.WEXITSTATUS(status) == 0, "the save raised instead of finishing"
    return int(done)


def clean(folder: Path, stem: Path) -> None:
    """A save after the kills leaves the pair and nothing else: no temporaries, no previous tensors, no lock."""
    assert sorted(os.listdir(folder)) == sorted([stem.name + ".json", stem.name + ".safetensors"])


def test_a_save_killed_before_any_step_leaves_a_model_that_loads(tmp_path):
    """Finding 1: every step of a save over a model, and every step of the next save over what that left."""
    steps = save_killed_at(tmp_path / "probe", B, None)
    assert steps >= 6  # the writes and renames of three files, the folder's flushes
    for k in range(1, steps + 2):  # steps + 1: the save finishes
        folder = tmp_path / f"k{k}"
        stem = folder / "m"
        save_model(stem, A)
        save_killed_at(stem, B, k)
        first = generation(stem)
        assert first in (1, 2), f"killed at step {k}: no model loads"
        for j in range(1, steps + 2):  # a second save, killed too, over what the first left
            again = tmp_path / f"k{k}j{j}"
            shutil.copytree(folder, again)
            save_killed_at(again / "m", C, j)
            assert generation(again / "m") in (first, 3), f"killed at step {k}, then at {j}"
            if j == k:  # a sample of the states: the save after them loads and leaves nothing behind
                save_model(again / "m", D, force=True)
                assert generation(again / "m") == 4
                clean(again, again / "m")
            shutil.rmtree(again)


def test_a_first_save_killed_leaves_no_model_or_the_new_one_and_the_next_save_cleans(tmp_path):
    steps = save_killed_at(tmp_path / "probe", A, None)
    for k in range(1, steps + 1):
        folder = tmp_path / f"k{k}"
        folder.mkdir()
        save_killed_at(folder / "m", A, k)
        assert generation(folder / "m") in (None, 1)
        save_model(folder / "m", B, force=True)
        assert generation(folder / "m") == 2
        clean(folder, folder / "m")


def test_random_kills_of_back_to_back_saves_leave_a_model_that_loads(tmp_path):
    """Finding 1's "16 of 40 did not load": saves over and over, killed at moments drawn from a fixed seed."""
    rng = random.Random(15)
    stem = tmp_path / "m"
    save_model(stem, A)
    seen = set()
    for trial in range(30):
        pid = os.fork()
        if pid == 0:
            try:
                while True:
                    for saved in (B, A):
                        save_model(stem, saved, force=True)
            finally:
                os._exit(3)
        time.sleep(rng.uniform(0.0, 0.03))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        loaded = generation(stem)
        assert loaded in (1, 2), f"trial {trial}: no model loads"
        seen.add(loaded)
    save_model(stem, C, force=True)
    assert generation(stem) == 3
    clean(tmp_path, stem)


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="finds the JSON's temporary file through /proc")
def test_fit_save_force_killed_at_the_json_fsync_keeps_the_previous_model(tmp_path):
    """Finding 1's reproduction: `fit --save k/m`, then `fit --save k/m --force` killed at the fsync of the JSON's
    temporary file; `predict k/m` must still work, with the first fit's model."""
    rng = np.random.default_rng(15)
    x = rng.uniform(0, 10, 40)
    data = tmp_path / "tut.csv"
    data.write_text("x,y\n" + "".join(f"{float(a)!r},{float(3 * a + 1 + e)!r}\n" for a, e in zip(x, rng.normal(0, 0.1, 40))))
    stem = tmp_path / "k" / "m"
    code, _, err = run_cli("fit", data, "--target", "y", "--epochs", "60", "--save", stem, "--no-plots")
    assert code == 0, err
    first = load_model(stem)
    killer = textwrap.dedent("""
        import os, signal, sys
        real = os.fsync
        def fsync(fd):
            if ".m.json." in os.readlink(f"/proc/self/fd/{fd}"):
                os.kill(os.getpid(), signal.SIGKILL)
            return real(fd)
        os.fsync = fsync
        from torchlinreg.cli import main
        sys.exit(main(sys.argv[1:]))
    """)
    proc = subprocess.run([sys.executable, "-c", killer, "fit", str(data), "--target", "y", "--epochs", "70",
                           "--save", str(stem), "--force", "--no-plots"],
                          env={**os.environ, "PYTHONPATH": str(SRC)}, capture_output=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    assert np.array_equal(load_model(stem).weight, first.weight)  # the previous model, whole
    out = tmp_path / "pred.csv"
    code, _, err = run_cli("predict", stem, data, "--output", out)
    assert code == 0, err
    code, _, err = run_cli("fit", data, "--target", "y", "--epochs", "70", "--save", stem, "--force", "--no-plots")
    assert code == 0, err
    clean(stem.parent, stem)  # the killed save's temporary JSON and the kept tensors are gone


# ---------------------------------------------------------------------------- one writer at a time


def _child_holding(stem, *, orphan: bool = False) -> tuple[int, int | None, int]:
    """A forked child holding the lock of ``stem``: (its pid, its child's pid when ``orphan``, the pipe to
    end it). With ``orphan`` the child forks a grandchild that inherits the locked descriptor, then dies."""
    ready_r, ready_w = os.pipe()
    stop_r, stop_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(ready_r)
            os.close(stop_w)
            with hold(stem, what="the model files"):
                if orphan:
                    grandchild = os.fork()
                    if grandchild == 0:
                        os.read(stop_r, 1)  # holds the inherited lock until told, or the pipe closes
                        os._exit(0)
                    os.write(ready_w, f"{grandchild}\n".encode())
                    os.kill(os.getpid(), signal.SIGKILL)
                os.write(ready_w, b"0\n")
                os.read(stop_r, 1)
        finally:
            os._exit(0)
    os.close(ready_w)
    os.close(stop_r)
    with os.fdopen(ready_r, "rb") as f:
        grandchild = int(f.readline())
    return pid, grandchild or None, stop_w


def test_a_second_writer_is_refused_naming_the_holder(tmp_path):
    """Build item 2: while one process saves to a path, another is refused with its pid and start time."""
    stem = tmp_path / "m"
    save_model(stem, A)
    pid, _, stop = _child_holding(stem)
    try:
        started = r"\(started \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\)" if Path("/proc").is_dir() else r"\(started .*\)"
        with pytest.raises(OutputError, match=rf"^process {pid} {started} is writing the model files '.*m\.safetensors' "
                                              r"and '.*m\.json'; wait for it to finish, or choose another save path$"):
            save_model(stem, B, force=True)
        data = tmp_path / "d.csv"
        data.write_text("x,y\n1,2\n2,4.5\n3,6\n4,8.5\n")
        code, _, err = run_cli("fit", data, "--target", "y", "--epochs", "5", "--save", stem, "--force",
                               "--no-plots")
        errors = [line for line in err.splitlines() if not line.startswith("torchlinreg: warning:")]
        assert code == 2 and len(errors) == 1, err
        assert re.search(rf"process {pid} .* is writing the model files .*; wait for it to finish, or choose "
                         r"another --save path", err), err
        assert generation(stem) == 1  # untouched
    finally:
        os.close(stop)
        os.waitpid(pid, 0)
    save_model(stem, B, force=True)
    assert generation(stem) == 2 and not lock_path(stem).exists()


def test_a_dead_writers_lock_is_taken_over(tmp_path):
    """A writer killed while holding the lock: the kernel drops it, or (a child of it keeps the descriptor)
    its record names a dead process; either way the next save goes ahead."""
    stem = tmp_path / "m"
    save_model(stem, A)
    pid, _, stop = _child_holding(stem)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    os.close(stop)
    assert lock_path(stem).exists()  # left by the killed writer
    save_model(stem, B, force=True)
    assert generation(stem) == 2 and not lock_path(stem).exists()

    pid, grandchild, stop = _child_holding(stem, orphan=True)
    os.waitpid(pid, 0)  # dead; its child still holds the flock
    try:
        save_model(stem, C, force=True)
        assert generation(stem) == 3
    finally:
        os.close(stop)  # the grandchild reads end-of-file and exits
        time.sleep(0)  # nothing waits on it: it is not our child


# ---------------------------------------------------------------------------- bounded reading (finding 7)


def _zero_size_entries(count: int, metadata: dict | None = None) -> bytes:
    """A safetensors file of ``count`` zero-size tensors: the header is all there is."""
    entries = ",".join(f'"t{i}":{{"dtype":"F64","shape":[0],"data_offsets":[0,0]}}' for i in range(count))
    meta = f'"__metadata__":{json.dumps(metadata)},' if metadata else ""
    header = ("{" + meta + entries + "}").encode()
    return len(header).to_bytes(8, "little") + header


LIMITED = textwrap.dedent("""
    import json, resource, sys
    limit = 2**30  # a normal predict peaks near 270 MB; the attack peaked at 1.9-2.1 GB, 1.45 GB under 1.5 GiB
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    from torchlinreg.errors import ModelFileError
    from torchlinreg.persistence import load_model
    for stem in sys.argv[1:]:
        try:
            load_model(stem)
            print(json.dumps([stem, "loaded"]))
        except ModelFileError as exc:
            print(json.dumps([stem, str(exc)]))
""")


def test_a_million_tensor_entries_are_refused_under_a_memory_limit(tmp_path):
    """Finding 7: a 60 MB tensors file of 10^6 zero-size entries, beside (a) the model's own JSON, (b) a JSON that
    names its SHA-256, (c) a JSON of a million features whose header may be long enough for 150,000 entries."""
    stem = tmp_path / "m"
    save_model(stem, A)
    attack = _zero_size_entries(10**6)
    variants = {}
    for name, edit in (("own", None), ("named", "sha")):
        folder = tmp_path / name
        folder.mkdir()
        shutil.copy(tmp_path / "m.json", folder / "m.json")
        (folder / "m.safetensors").write_bytes(attack)
        if edit:
            desc = json.loads((folder / "m.json").read_text())
            desc["tensors_sha256"] = hashlib.sha256(attack).hexdigest()
            (folder / "m.json").write_text(json.dumps(desc))
        variants[name] = folder / "m"
    folder = tmp_path / "wide"
    folder.mkdir()
    names = [f"x{i}" for i in range(10**6)]
    wide = _zero_size_entries(150_000)  # the room of the names it leaves out, spent on entries
    (folder / "m.safetensors").write_bytes(wide)
    desc = json.loads((tmp_path / "m.json").read_text())
    desc.update(feature_names=names, tensors_sha256=hashlib.sha256(wide).hexdigest(),
                tensors={"weight": {"dtype": "float64", "shape": [1, 10**6]}, "bias": {"dtype": "float64", "shape": [1]}})
    (folder / "m.json").write_text(json.dumps(desc))
    variants["wide"] = folder / "m"

    proc = subprocess.run([sys.executable, "-c", LIMITED, *map(str, variants.values())], capture_output=True,
                          text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(SRC), "OPENBLAS_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    answers = dict(json.loads(line) for line in proc.stdout.splitlines())
    assert re.search(r"is 5\d,\d{3},\d{3} bytes, more than the [\d,]+ its model can need", answers[str(variants["own"])])
    assert "more than the" in answers[str(variants["named"])]
    assert "holds tensors ['t0', 't1', 't10', 't100'] and 149,996 more" in answers[str(variants["wide"])]


@pytest.mark.parametrize("kind", ["dev-zero", "fifo", "folder"])
def test_a_model_json_that_is_no_regular_file_is_refused_at_once(tmp_path, kind):
    """Finding 7: model.json as a symlink to /dev/zero read 5 GB, as a FIFO it blocked forever."""
    stem = tmp_path / "m"
    save_model(stem, A)
    json_path = tmp_path / "m.json"
    json_path.unlink()
    if kind == "dev-zero":
        json_path.symlink_to("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(json_path)
    else:
        json_path.mkdir()
    data = tmp_path / "d.csv"
    data.write_text("g1_0,g1_1\n1,2\n")
    proc = subprocess.run([sys.executable, "-m", "torchlinreg", "predict", str(stem), str(data), "--output",
                           str(tmp_path / "p.csv")], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(SRC)})
    what = {"dev-zero": "a device", "fifo": r"a FIFO \(named pipe\)", "folder": "a folder"}[kind]
    assert proc.returncode == 1, proc.stderr
    assert re.fullmatch(rf"torchlinreg: error: model file '.*m\.json' is {what}, not a regular file; pass the "
                        r"path of a model saved by torchlinreg\n", proc.stderr), proc.stderr
    assert not (tmp_path / "p.csv").exists()
