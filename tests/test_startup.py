"""Start-up of the command.

``fit`` imports PyTorch without garbage collection and runs without importing
``torch._dynamo`` (``startup.py``), and has its PNG files drawn by a second process
(``plot_process.py``); it prints the same table and writes the same files as a process that
has imported PyTorch, matplotlib and ``torch._dynamo`` before, and leaves PyTorch and no
process behind.

The runs are fresh interpreters: whether a module was imported is a fact of the process.
"""

import subprocess
import sys

import pytest

from conftest import EPOCH_LINE
from test_reproduction import PRINTED, current_line_agrees, tutorial_float32_error
from torchlinreg import OutputError, TrainConfig, build_model, plot_process, train, tutorial_data
from torchlinreg import pictures
from torchlinreg.pictures import PLOT_FILES, save_plots

FIT = """
import os, sys
if sys.argv[2] == "warm":
    import matplotlib, torch._dynamo  # as a process that has drawn and compiled before: no shortcuts taken
if sys.argv[2] == "no-plotting-process":
    sys.executable = "/bin/false"  # the plotting process dies at once
from torchlinreg.cli import main
code = main(["fit", "--out", *sys.argv[1:2], *sys.argv[3:]])
print("imported:", *sorted(m for m in ("torch._dynamo", "matplotlib") if m in sys.modules), file=sys.stderr)
import gc
print("gc enabled:", gc.isenabled(), "frozen:", gc.get_freeze_count() > 0, file=sys.stderr)
try:
    os.waitpid(-1, os.WNOHANG)
    print("a child process is left", file=sys.stderr)
except ChildProcessError:
    pass
sys.exit(code)
"""


def _python(code: str, *args: str, returncode: int = 0) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300)
    assert proc.returncode == returncode, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def tutorial_runs(tmp_path_factory):
    """The tutorial run as the command runs it; in a process that imported matplotlib and
    torch._dynamo first; and with a plotting process that dies."""
    runs = {}
    for mode in ("fresh", "warm", "no-plotting-process"):
        out = tmp_path_factory.mktemp(mode)
        runs[mode] = (_python(FIT, str(out), mode), out)
    return runs


def test_the_tutorial_run_imports_neither_dynamo_nor_matplotlib(tutorial_runs):
    proc, _ = tutorial_runs["fresh"]
    assert "imported:\n" in proc.stderr
    assert "a child process is left" not in proc.stderr


def test_the_imports_are_frozen_in_a_fresh_process_only(tutorial_runs):
    assert "gc enabled: True frozen: True" in tutorial_runs["fresh"][0].stderr
    assert "gc enabled: True frozen: False" in tutorial_runs["warm"][0].stderr


def test_the_table_and_the_files_are_the_same_in_every_case(tutorial_runs, tutorial_table):
    (fresh, fresh_out), *others = tutorial_runs.values()
    for proc, out in others:
        # bit-identical: the same float32 run (same code, inputs and kernels) on this machine in every case
        assert proc.stdout == fresh.stdout  # every line, to the last digit
        assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in fresh_out.iterdir())
        for name in PLOT_FILES.values():
            assert (out / name).read_bytes() == (fresh_out / name).read_bytes(), name
        assert "a child process is left" not in proc.stderr
    plain = fresh.stdout.splitlines()
    assert plain[:2] == [tutorial_table["weight_line"], tutorial_table["bias_line"]]
    got = [EPOCH_LINE.fullmatch(ln).groups() for ln in plain if ln.startswith("epoch:")]
    assert [int(e) for e, *_ in got] == list(range(1, 51))
    # against the tutorial's float32 run: 2·(the float32 training bound) + 2·(half a unit in the 8th decimal),
    # as test_reproduction (epoch k prints θ_{k-1} and its loss)
    param_err, loss_err = tutorial_float32_error()
    for k, ((_, loss, w, b), (_, t_loss, t_w, t_b)) in enumerate(zip(got, tutorial_table["epochs"])):
        assert float(loss) == pytest.approx(t_loss, rel=0, abs=2 * loss_err[k] + 2 * PRINTED)
        assert (float(w), float(b)) == pytest.approx((t_w, t_b), rel=0, abs=2 * param_err[k] + 2 * PRINTED)
    assert current_line_agrees(plain, tutorial_table["current_line"])


def test_a_failed_command_leaves_no_plotting_process(tmp_path):
    proc = _python(FIT, str(tmp_path / "out"), "fresh", str(tmp_path / "missing.csv"), returncode=1)
    assert proc.stderr.splitlines()[0].startswith("torchlinreg: error:")
    assert "a child process is left" not in proc.stderr


@pytest.fixture(scope="module")
def fitted():
    data = tutorial_data()
    return data, train(build_model(), data.X, data.y, TrainConfig(epochs=3))


@pytest.mark.parametrize("answer", ["pickle.dump(None, sys.stdout.buffer)", "os._exit(1)"])
def test_when_the_plotting_process_fails_the_plots_are_drawn_here(answer, fitted, tmp_path, monkeypatch):
    """It answers that it failed, or dies: save_plots draws in this process, and its errors are raised here."""
    worker = f"import os, pickle, sys; pickle.load(sys.stdin.buffer); {answer}"
    monkeypatch.setattr(pictures, "draw_elsewhere", plot_process.draw)  # as plotting_process() installs it
    (tmp_path / "a-file").write_text("not a folder")
    for out in (tmp_path, tmp_path / "a-file" / "plots"):
        plot_process._waiting = subprocess.Popen([sys.executable, "-c", worker], stdin=subprocess.PIPE,
                                                 stdout=subprocess.PIPE)
        proc = plot_process._waiting
        try:
            if out.is_dir():
                files = save_plots(*fitted, out)
                assert sorted(p.name for p in files.values()) == sorted(PLOT_FILES.values())
            else:
                with pytest.raises(OutputError, match="cannot write"):
                    save_plots(*fitted, out)
        finally:
            plot_process._waiting = None
        assert proc.returncode is not None  # reaped


def test_the_plotting_process_writes_what_this_process_would(fitted, tmp_path, monkeypatch):
    from torchlinreg import plots

    here, there = tmp_path / "here", tmp_path / "there"
    here.mkdir(), there.mkdir()
    save_plots(*fitted, here)
    plot_process._waiting = subprocess.Popen([sys.executable, "-m", "torchlinreg.plot_process"],
                                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    monkeypatch.setattr(plots, "save_pngs", None)  # drawing here would fail: the files must come from there
    monkeypatch.setattr(pictures, "draw_elsewhere", plot_process.draw)  # as plotting_process() installs it
    try:
        files = save_plots(*fitted, there)
    finally:
        plot_process._waiting = None
    assert {name: p.parent for name, p in files.items()} == {name: there for name in files}
    for name in PLOT_FILES.values():
        assert (there / name).read_bytes() == (here / name).read_bytes(), name


def test_library_use_leaves_pytorch_as_it_is():
    """``import torchlinreg`` and ``train`` change nothing: their optimizer imports torch._dynamo as a bare one does."""
    bare = _python("""
import sys, torch
model = torch.nn.Linear(1, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.001)
optimizer.zero_grad(); model(torch.ones(3, 1)).sum().backward(); optimizer.step()
print("torch._dynamo" in sys.modules)
""")
    library = _python("""
import sys, torch
import torchlinreg.cli  # importing the command line changes nothing either
from torchlinreg import TrainConfig, build_model, train, tutorial_data
data = tutorial_data()
train(build_model(), data.X, data.y, TrainConfig())
print("torch._dynamo" in sys.modules)
""")
    assert library.stdout == bare.stdout


def test_pytorch_is_restored_after_the_command_and_left_alone_once_dynamo_is_imported():
    _python("""
import sys, torch
from torchlinreg.startup import without_dynamo
wrapped = {name: getattr(torch.optim.Optimizer, name) for name in ("add_param_group", "zero_grad")}
steps = {cls: cls.step for cls in (torch.optim.SGD, torch.optim.Adam)}
with without_dynamo() as arranged:
    assert arranged
    assert torch.optim.SGD.step is not steps[torch.optim.SGD]
    model = torch.nn.Linear(1, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.001)
    optimizer.zero_grad(); model(torch.ones(3, 1)).sum().backward(); optimizer.step()
    assert "torch._dynamo" not in sys.modules
assert all(cls.step is step for cls, step in steps.items())
assert not any(hasattr(f.__wrapped__, "__dynamo_disable") for f in wrapped.values())

import torch._dynamo
step = torch.optim.SGD.step
with without_dynamo() as arranged:
    assert not arranged and torch.optim.SGD.step is step
""")


SOLVE = """
import sys
from torchlinreg.cli import main
code = main(["solve", *sys.argv[1:]])
print("pandas imported:", "pandas" in sys.modules, file=sys.stderr)
sys.exit(code)
"""


@pytest.mark.parametrize("how", [[], ["--stream"]], ids=["read whole", "streamed"])
def test_reading_a_file_does_not_import_pandas(tmp_path, how):
    # pyarrow's to_numpy imports pandas when it is installed: 0.35 s of every run that reads a file
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    pytest.importorskip("pandas")  # otherwise there is nothing to import
    rng = np.random.default_rng(0)
    x = rng.standard_normal(50)
    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"x": x, "n": np.arange(50), "flag": x > 0, "y": 2 * x + 1}), path)
    proc = _python(SOLVE, str(path), "--target", "y", *how)
    assert "pandas imported: False" in proc.stderr
    assert "x" in proc.stdout and "flag" in proc.stdout  # the float, integer and boolean columns were read
