"""Determinism: the same data, settings and seed give the same bytes, run after run and, where the
maths allows, whatever ``--threads`` says; where it does not, the differences stay within the
error bounds of re-associated sums (thread_bound, solution_bound) against a one-thread run."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from torchlinreg.cli import main
from torchlinreg.data import dataset_columns, make_regression
from torchlinreg.formats import write_table

from bounds import U32, U64


def thread_bound(n_rows: int, epochs: int, u: float) -> float:
    """--threads 1 against 2: every sum over the n rows is split into other pieces, so each evaluation of the
    loss and gradient is re-associated, within γ_n relative of its |terms| in the worst case and √n·u in the
    probabilistic bound (rounding errors of a re-associated sum add like a random walk, Higham §2.8; the worst
    case is useless for float32 at n = 20,000); a stable step does not magnify the differences carried from
    earlier epochs, so after E epochs E·√n·u, ×10 for the |terms|/|sum| of these well-conditioned problems."""
    return 10 * epochs * np.sqrt(n_rows) * u


def solution_bound(n_rows: int, n_columns: int) -> float:
    """Two QR solutions of the same well-conditioned problem (κ ≈ 1.3 here) whose sums were split differently:
    the LS forward-error bound m·n·u·κ, ×10 for κ and the residual term."""
    return 10 * n_rows * n_columns * U64


@pytest.fixture(autouse=True)
def keep_threads():
    """``--threads`` sets PyTorch's process-wide thread count: put it back for the other tests."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "data.csv"
    write_table(path, dataset_columns(make_regression(400, 3, 2, noise=0.5, seed=11)))
    return path


def fit_and_predict(folder: Path, data: Path, *flags: str, capsys=None) -> dict[str, bytes]:
    """``fit`` with every output (plots, GIF, report, model), then ``predict``; every file's bytes."""
    argv = ["fit", str(data), "--target", "y1", "y2", "--epochs", "30", "--lr", "0.05", "--quiet",
            "--out", str(folder / "run"), "--save", str(folder / "model"), *flags]
    if "--engine" not in flags and "--batch-size" not in flags:  # the GIF and the report once per test is enough
        argv += ["--animate", "--report"]
    assert main(argv) == 0
    assert main(["predict", str(folder / "model"), str(data), "-o", str(folder / "predictions.csv")]) == 0
    if capsys is not None:
        capsys.readouterr()
    return files(folder)


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("flags", [(), ("--engine", "data"), ("--batch-size", "64", "--momentum", "0.9")],
                         ids=["gram", "data", "minibatch"])
def test_two_runs_give_the_same_bytes(tmp_path, capsys, data_file, flags):
    first = fit_and_predict(tmp_path / "a", data_file, *flags, capsys=capsys)
    second = fit_and_predict(tmp_path / "b", data_file, *flags, capsys=capsys)
    assert {"run/history.json", "run/summary.json", "run/loss.png", "model.safetensors", "model.json",
            "predictions.csv"} <= set(first)
    assert ("run/fit.gif" in first) == (flags == ())
    assert first == second  # bit-identical: same process, same inputs, same thread count, so the same kernels


def test_another_process_gives_the_same_bytes(tmp_path, capsys, data_file):
    """A second process, with another hash seed (so no output may depend on set or dict-hash order)."""
    here = fit_and_predict(tmp_path / "a", data_file, capsys=capsys)
    code = ("import sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]); import test_determinism as t; "
            "t.fit_and_predict(Path(sys.argv[2]), Path(sys.argv[3]))")
    env = dict(os.environ, PYTHONHASHSEED="12345")
    process = subprocess.run([sys.executable, "-c", code, str(Path(__file__).parent), str(tmp_path / "b"),
                              str(data_file)], capture_output=True, text=True, env=env, timeout=600)
    assert process.returncode == 0, process.stderr
    assert files(tmp_path / "b") == here  # bit-identical: the same machine, inputs and kernels; only the hash seed differs


@pytest.mark.parametrize("flags", [("--engine", "gram"), ("--engine", "gram", "--dtype", "float64")],
                         ids=["gram-float32", "gram-float64"])
def test_threads_do_not_change_a_fit_on_a_few_hundred_rows(tmp_path, capsys, data_file, flags):
    """Too few rows for PyTorch to split a sum between threads (see the README), but MKL's other code paths
    (MKL_CBWR=COMPATIBLE) do split the BLAS calls by thread: not the same bytes on every CPU, so the same files,
    with the numbers within the re-association bound (thread_bound, solution_bound)."""
    one = fit_and_predict(tmp_path / "one", data_file, "--threads", "1", *flags, capsys=capsys)
    assert torch.get_num_threads() == 1
    two = fit_and_predict(tmp_path / "two", data_file, "--threads", "2", *flags, capsys=capsys)
    assert torch.get_num_threads() == 2
    assert set(one) == set(two)
    u = U64 if "float64" in flags else U32
    (h1, s1), (h2, s2) = [(json.loads(r["run/history.json"]), json.loads(r["run/summary.json"])) for r in (one, two)]
    tol = thread_bound(400, len(h1["records"]), u)
    assert relative([r["loss"] for r in h1["records"]], [r["loss"] for r in h2["records"]]) < tol
    assert relative([*np.ravel(s1["trained"]["weight"]), *s1["trained"]["bias"]], [*np.ravel(s2["trained"]["weight"]), *s2["trained"]["bias"]]) < tol
    assert relative(optimum(s1), optimum(s2)) < solution_bound(400, 3 + 1 + 2)


def relative(a, b) -> float:
    """Largest difference relative to the largest magnitude (the bounds are normwise)."""
    a, b = np.ravel(np.asarray(a, dtype=float)), np.ravel(np.asarray(b, dtype=float))
    return float(np.max(np.abs(a - b)) / np.max(np.abs(a)))


def optimum(summary) -> list[float]:
    return [v for target in summary["optimum"]["coef"].values() for v in target.values()] + list(
        summary["optimum"]["intercept"].values())


def test_threads_do_not_change_the_tutorial_run(tmp_path, capsys):
    out = {}
    for n in ("1", "2"):
        assert main(["fit", "--threads", n, "--quiet", "--out", str(tmp_path / n)]) == 0
        out[n] = files(tmp_path / n)
    capsys.readouterr()
    machines = {n: json.loads(out[n].pop("summary.json")) for n in out}
    for n in out:
        machines[n].pop("run")  # its files' hashes: the summary's own bytes differ by the machine record
        out[n]["summary (less the machine)"] = json.dumps({k: v for k, v in machines[n].items() if k != "machine"})
    assert out["1"] == out["2"]  # bit-identical: 50 rows, 1 feature: no sum is split between threads on any path
    assert "1 thread" in machines["1"]["machine"]["torch_blas"] and "2 threads" in machines["2"]["machine"]["torch_blas"]


@pytest.mark.parametrize("engine, dtype", [("data", "float32"), ("data", "float64"), ("gram", "float64")])
def test_threads_change_sums_over_many_rows_by_rounding_only(tmp_path, capsys, engine, dtype):
    """Sums over many rows are split into per-thread pieces: other threads, other rounding.

    Against --threads 1 on 20,000 rows: every epoch's loss and the trained parameters within
    thread_bound, the exact solution within solution_bound.
    """
    path = tmp_path / "big.csv"
    write_table(path, dataset_columns(make_regression(20_000, 8, 1, noise=1.0, seed=3)))
    runs = {}
    for n in ("1", "2"):
        out = tmp_path / f"threads-{n}"
        assert main([
            "fit", str(path), "--engine", engine, "--epochs", "50", "--lr", "0.01", "--dtype", dtype, "--threads", n,
            "--quiet", "--no-plots", "--out", str(out)]) == 0
        runs[n] = (json.loads((out / "history.json").read_text()), json.loads((out / "summary.json").read_text()))
    capsys.readouterr()
    (h1, s1), (h2, s2) = runs["1"], runs["2"]

    tol = thread_bound(20_000, 50, U64 if dtype == "float64" else U32)
    assert relative([r["loss"] for r in h1["records"]], [r["loss"] for r in h2["records"]]) < tol
    params = [[*s["trained"]["weight"][0], *s["trained"]["bias"]] for s in (s1, s2)]  # one target
    assert relative(*params) < tol
    assert relative(optimum(s1), optimum(s2)) < solution_bound(20_000, 8 + 1 + 1)


def test_threads_must_be_positive(tmp_path, capsys):
    assert main(["fit", "--threads", "0", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--threads must be a positive integer" in err
