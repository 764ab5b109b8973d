"""`torchrun --nproc-per-node 2 -m torchlinreg ...` on loopback: the same answers as one process."""

import json
import os
import signal
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from torchlinreg import lstsq, make_regression, regression_statistics, write_table
from torchlinreg.cli import main
from torchlinreg.data import dataset_columns
from torchlinreg.model import build_model
from torchlinreg.filesource import open_files as open_source
from torchlinreg.minibatch import ShuffledBatches

from bounds import gamma


def loss_tol(data, weight, bias) -> float:
    """One MSE of all rows computed two ways (R merged from chunks, or sums over rows): each within γ_{n+p}·amp²
    relative (amp = ‖|A||θ̃|‖ / ‖A θ̃‖ for A = [X, 1, y]; squared for R from Gram blocks), ×2 sides, ×10."""
    X, Y = data.X.double().numpy(), data.y.double().numpy()
    W, b = np.asarray(weight, dtype=np.float64), np.asarray(bias, dtype=np.float64)
    amp = np.linalg.norm(np.abs(X) @ np.abs(W.T) + np.abs(b) + np.abs(Y)) / np.linalg.norm(X @ W.T + b - Y)
    return 20 * gamma(len(X) + X.shape[1] + 1 + Y.shape[1]) * amp ** 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(*argv, cwd):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
           "--master-port", str(free_port()), "-m", "torchlinreg", *map(str, argv)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=180, env=env)


@pytest.fixture(scope="module")
def csv_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dist")
    data = make_regression(2001, 4, 2, noise=0.3, seed=9)
    return write_table(folder / "d.csv", dataset_columns(data)), data


def test_two_process_solve_and_fit_equal_one_process(csv_file, tmp_path):
    path, data = csv_file
    reference = lstsq(data.X, data.y)
    solved = torchrun("solve", path, "--target", "y1", "y2", "--json", cwd=tmp_path)
    assert solved.returncode == 0, solved.stderr[-2000:]
    result = json.loads(solved.stdout)  # printed once: only rank 0 prints
    got = np.array([[result["coef"][t][f] for f in data.feature_names] for t in data.target_names])
    np.testing.assert_allclose(got, reference.coef, rtol=1e-10)  # both refined: a few ulps each whatever κ; loose
    fitted = torchrun("fit", path, "--target", "y1", "y2", "--optimizer", "lbfgs", "--epochs", "30",
                      "--dtype", "float64", "--no-plots", "--out", tmp_path / "out", cwd=tmp_path)
    assert fitted.returncode == 0, fitted.stderr[-2000:]
    assert fitted.stdout.count("Current weight:") == 1 and "R merged from 2 processes" in fitted.stdout
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    np.testing.assert_allclose(summary["trained"]["weight"], reference.coef, rtol=1e-8)  # loose: L-BFGS's convergence
    assert summary["engine"] == "gram"


def test_a_rank_that_fails_stops_every_rank_with_its_name(csv_file, tmp_path):
    path, _ = csv_file  # full batches on the data loop are refused under torchrun, on every rank
    failed = torchrun("fit", path, "--engine", "data", "--out", tmp_path / "out", cwd=tmp_path)
    assert failed.returncode != 0
    assert "rank 0 failed" in failed.stderr and "rank 1 failed" in failed.stderr
    assert not (tmp_path / "out").exists()


def _summary_and_losses(folder):
    summary = json.loads((folder / "summary.json").read_text())
    records = json.loads((folder / "history.json").read_text())["records"]
    return summary, [(r["loss"], r["val_loss"]) if r["val_loss"] is not None else r["loss"] for r in records]


def test_two_process_mini_batches_with_ddp_equal_one_process(csv_file, tmp_path, capsys):
    path, _ = csv_file
    args = ["fit", path, "--target", "y1", "y2", "--batch-size", "64", "--optimizer", "sgd", "--lr", "0.05",
            "--momentum", "0.5", "--epochs", "4", "--dtype", "float64", "--standardize", "--validation-fraction",
            "0.2", "--no-plots"]
    fitted = torchrun(*args, "--out", tmp_path / "ddp", cwd=tmp_path)
    assert fitted.returncode == 0, fitted.stderr[-2000:]
    assert fitted.stdout.count("Current weight:") == 1 and "DistributedDataParallel across 2 processes" in fitted.stdout
    assert main([str(a) for a in args] + ["--out", str(tmp_path / "one")]) == 0  # the reference: one process
    capsys.readouterr()
    (ddp, ddp_losses), (one, one_losses) = _summary_and_losses(tmp_path / "ddp"), _summary_and_losses(tmp_path / "one")
    assert ddp["engine"] == one["engine"] == "data"
    # The same batches: each step's gradient over b = 64 rows is summed in two pieces (DDP's all-reduce) instead
    # of one, within γ_{b+p}·2/(b·m)·|A_b|ᵀ(|A_b||θ̃|); a stable step does not magnify carried differences, so
    # over S = 100 steps with momentum 0.5 the parameters differ by ≲ S·lr/(1-β)·γ_{70}·O(10) ≈ 1e-12 on these
    # standardised rows (relative to O(1) parameters); 1e-10 is that ×100: loose
    np.testing.assert_allclose(ddp["trained"]["weight"], one["trained"]["weight"], rtol=1e-10)
    np.testing.assert_allclose(ddp["trained"]["bias"], one["trained"]["bias"], rtol=1e-10)  # as the weights
    np.testing.assert_allclose(ddp_losses, one_losses, rtol=1e-10)  # the same sums split in two, at such parameters


def test_two_process_streamed_mini_batches_join_every_ranks_batch(csv_file, tmp_path):
    path, data = csv_file
    batch, chunk, lr, epochs, seed = 64, 300, 0.05, 3, 59
    fitted = torchrun("fit", path, "--target", "y1", "y2", "--stream", "--chunk-rows", chunk, "--batch-size", batch,
                      "--lr", lr, "--epochs", epochs, "--dtype", "float64", "--summary", "--cov-type", "HC1",
                      "--out", tmp_path / "out", cwd=tmp_path)
    assert fitted.returncode == 0, fitted.stderr[-2000:]
    assert fitted.stdout.count("Current weight:") == 1 and "each streaming its own chunks" in fitted.stdout
    assert {"loss.png", "residuals.png"} <= {p.name for p in (tmp_path / "out").iterdir()}
    # The reference, in one process: rank r's batches are ShuffledBatches part r of 2 (chunk i is rank i % 2's)
    # with 32 rows each; step k joins both ranks' k-th batches, a rank whose part is done gives none.
    source = open_source(path, target=["y1", "y2"])
    parts = [ShuffledBatches(source, batch // 2, seed=seed, chunk_rows=chunk, dtype=torch.float64, rank=r,
                             world_size=2) for r in range(2)]
    model = build_model(4, 2, seed=seed).double()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    X, Y = data.X.double(), data.y.double()
    losses = []
    for epoch in range(epochs):
        with torch.no_grad():
            losses.append(torch.nn.functional.mse_loss(model(X), Y).item())
        for part in parts:
            part.set_epoch(epoch)
        loaders = [iter(DataLoader(part, batch_size=None)) for part in parts]
        while True:
            step = [b for b in (next(loader, None) for loader in loaders) if b is not None]
            if not step:
                break
            optimizer.zero_grad()
            Xb, yb = torch.cat([b[0] for b in step]), torch.cat([b[1] for b in step])
            torch.nn.functional.mse_loss(model(Xb), yb).backward()
            optimizer.step()
    summary, got_losses = _summary_and_losses(tmp_path / "out")
    # as in the DDP test: S ≈ 100 steps of 64 rows split in two, ≲ S·lr·γ_{70}·O(100) ≈ 5e-12 on raw rows; loose
    np.testing.assert_allclose(summary["trained"]["weight"], model.linear.weight.detach().numpy(), rtol=1e-10)
    np.testing.assert_allclose(summary["trained"]["bias"], model.linear.bias.detach().numpy(), rtol=1e-10)  # as the weights
    np.testing.assert_allclose(got_losses, losses, rtol=1e-10)  # merged R vs all rows: loss_tol (≈ 1e-11) + the drift
    reference = regression_statistics(data.X, data.y, cov_type="HC1", feature_names=data.feature_names,
                                      target_names=data.target_names)  # all rows in memory, one process
    for ours, theirs in zip(summary["optimum"]["statistics"], reference):
        np.testing.assert_allclose([ours["terms"][t]["std_err"] for t in theirs.term_names], theirs.std_err,
                                   rtol=1e-8)  # loose: m·n·u·κ ≈ 1e-12·κ for 2001 rows, κ ≈ 1
    optimum = lstsq(data.X, data.y)
    tol = loss_tol(data, optimum.coef, optimum.intercept)
    assert summary["optimum"]["loss"] == pytest.approx(optimum.loss, rel=tol, abs=0)
    tol = loss_tol(data, summary["trained"]["weight"], summary["trained"]["bias"])
    assert summary["trained"]["metrics"]["train"]["mse"] == pytest.approx(summary["gap"]["trained_loss"], rel=tol, abs=0)


def test_two_process_solve_refines_an_ill_conditioned_design_across_the_ranks(tmp_path):
    """Degree-8 polynomial of raw x (condition number ~8e12): the merged R alone is off by ~5e-12;
    refinement passes with the sums added across the ranks round every coefficient correctly, as one process."""
    from fractions import Fraction

    x = np.linspace(1, 30, 301)
    X = np.stack([x ** k for k in range(1, 9)], axis=1)
    y = np.cos(x) + 0.01 * x ** 3
    names = [f"p{k}" for k in range(1, 9)]
    path = write_table(tmp_path / "poly.csv", {**dict(zip(names, X.T)), "y": y})
    X, y = np.loadtxt(path, delimiter=",", skiprows=1, usecols=range(8)), np.loadtxt(path, delimiter=",",
                                                                                      skiprows=1, usecols=8)
    # exact reference: the normal equations of [X, 1] in rationals on the same float64 values
    rows = [[Fraction(float(v)) for v in r] + [Fraction(1)] for r in X]
    b = [Fraction(float(v)) for v in y]
    M = [[sum(r[i] * r[j] for r in rows) for j in range(9)] + [sum(r[i] * t for r, t in zip(rows, b))] for i in range(9)]
    for c in range(9):
        for i in range(c + 1, 9):
            f = M[i][c] / M[c][c]
            M[i] = [a - f * e for a, e in zip(M[i], M[c])]
    exact = [Fraction(0)] * 9
    for i in reversed(range(9)):
        exact[i] = (M[i][9] - sum(M[i][j] * exact[j] for j in range(i + 1, 9))) / M[i][i]
    exact = np.array([float(v) for v in exact])
    solved = torchrun("solve", path, "--json", cwd=tmp_path)
    assert solved.returncode == 0, solved.stderr[-2000:]
    result = json.loads(solved.stdout)
    got = np.array([result["coef"]["y"][name] for name in names] + [result["intercept"]["y"]])
    # refined in double-double (κ·u ≪ 1): correctly rounded, or 1 ulp, whatever κ and the chunks' order
    assert np.max(np.abs(got - exact) / np.abs(exact)) <= 2 * np.finfo(float).eps


@pytest.fixture(scope="module")
def weighted_csv(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dist-weighted")
    data = make_regression(1500, 3, 2, noise=0.5, seed=21)
    columns = dataset_columns(data)
    columns["w"] = np.random.default_rng(22).uniform(0.5, 2.0, data.n_samples)
    M = np.column_stack([columns[name] for name in ("x1", "x2", "x3", "y1", "y2")])
    M = (M - M.mean(axis=0)) / M.std(axis=0)  # κ as the accumulator sees the design: shifted and scaled
    kappa = np.linalg.cond(np.column_stack([M[:, :3], np.ones(len(M)), M[:, 3:]]) * np.sqrt(columns["w"])[:, None])
    return write_table(folder / "w.csv", columns), kappa


@pytest.mark.parametrize("reading", [[], ["--stream", "--chunk-rows", "200"]], ids=["whole", "streamed"])
def test_two_processes_give_one_process_answer_with_weights_standardize_and_hc_statistics(
        weighted_csv, tmp_path, capsys, reading):
    """The differential test of issue 13 under torchrun: weights, standardisation and HC1 statistics, full-batch
    training on the merged R, read whole or streamed; 1 and 2 processes agree.

    Two processes fold their parts of the rows into R and merge them: R differs from one process's by rounding,
    n^1.5·γ_n·κ² relative to its column norms (κ of the shifted, scaled design, about 30 here); every figure
    after is a function of R, or sums over rows added in another order; ×10 for the two sides and the steps.
    """
    path, kappa = weighted_csv
    bound = 10 * 1500 ** 1.5 * gamma(1500) * kappa ** 2
    args = ["fit", path, "--target", "y1", "y2", "--weights", "w", "--standardize", "--summary", "--cov-type",
            "HC1", "--epochs", "5", "--dtype", "float64", "--no-plots", *reading]
    fitted = torchrun(*args, "--out", tmp_path / "two", cwd=tmp_path)
    assert fitted.returncode == 0, fitted.stderr[-2000:]
    assert "R merged from 2 processes" in fitted.stdout
    assert main([str(a) for a in args] + ["--out", str(tmp_path / "one")]) == 0  # the reference: one process
    capsys.readouterr()
    (two, two_losses), (one, one_losses) = _summary_and_losses(tmp_path / "two"), _summary_and_losses(tmp_path / "one")
    assert two["engine"] == one["engine"] == "gram"
    np.testing.assert_allclose(two_losses, one_losses, rtol=bound)
    np.testing.assert_allclose(two["trained"]["weight"], one["trained"]["weight"], rtol=bound, atol=bound)
    np.testing.assert_allclose(two["trained"]["bias"], one["trained"]["bias"], rtol=bound, atol=bound)
    for key in ("mse", "rmse", "mae", "r2"):
        assert two["trained"]["metrics"]["train"][key] == pytest.approx(one["trained"]["metrics"]["train"][key], rel=bound)
    for ours, theirs in zip(two["optimum"]["statistics"], one["optimum"]["statistics"]):
        for term in theirs["term_names"]:
            for key in ("param", "std_err"):
                assert ours["terms"][term][key] == pytest.approx(theirs["terms"][term][key], rel=bound, abs=bound)
        assert ours["r2"] == pytest.approx(theirs["r2"], rel=bound)


def test_two_process_solve_summary_equals_one_process(weighted_csv, tmp_path, capsys):
    """solve --summary under torchrun: the residual pass (HC1, weights) of each process's rows, gathered."""
    path, kappa = weighted_csv
    bound = 10 * 1500 ** 1.5 * gamma(1500) * kappa ** 2  # as the fit above: R merged from two parts
    args = ["solve", path, "--target", "y1", "y2", "--weights", "w", "--summary", "--cov-type", "HC1", "--json"]
    solved = torchrun(*args, cwd=tmp_path)
    assert solved.returncode == 0, solved.stderr[-2000:]
    capsys.readouterr()
    assert main([str(a) for a in args]) == 0
    two, one = json.loads(solved.stdout), json.loads(capsys.readouterr().out)
    for ours, theirs in zip(two["statistics"], one["statistics"]):
        assert ours["cov_type"] == theirs["cov_type"] == "HC1" and ours["weighted"]
        for term in theirs["term_names"]:
            for key in ("param", "std_err", "t_value"):
                assert ours["terms"][term][key] == pytest.approx(theirs["terms"][term][key], rel=bound, abs=bound)


def _rank_exit_codes(stderr: str) -> list[int]:
    """The ranks' exit codes in torchrun's failure report (torchrun itself exits 1 whatever they were)."""
    import re

    return [int(code) for code in re.findall(r"exitcode\s*:\s*(-?\d+)", stderr)]


@pytest.mark.parametrize("reading", [[], ["--stream", "--chunk-rows", "100"]], ids=["every-rank-fails", "one-rank-fails"])
def test_a_damaged_data_file_exits_1_under_torchrun_as_in_one_process(tmp_path, capsys, reading):
    """Issue 15, finding 13: the ranks exited 2 (a DistributedError) where one process exits 1 (a DataError).
    Read whole, every rank finds the bad value; streamed, only rank 1 reads the chunk that holds it
    (chunk i is rank i % 2's) and rank 0 learns of it from rank 1: both exit 1."""
    rows = ["x1,x2,y"] + [f"{i},{i % 7},{2 * i + 1}" for i in range(300)]
    rows[151] = "150,abc,301"  # row 151 of the data (chunk 1 when streamed in chunks of 100)
    path = tmp_path / "bad.csv"
    path.write_text("\n".join(rows) + "\n")
    argv = ["solve", str(path), *reading]
    assert main(argv) == 1  # one process: a DataError
    one = capsys.readouterr().err
    assert one.count("\n") == 1 and "row 151 holds 'abc'" in one
    failed = torchrun(*argv, cwd=tmp_path)
    assert failed.returncode != 0
    codes = _rank_exit_codes(failed.stderr)  # torchrun ends (SIGTERM, -15) a rank still running when one has exited
    assert 1 in codes and set(codes) <= {1, -signal.SIGTERM}, failed.stderr[-3000:]
    assert "rank 1 failed: " in failed.stderr and "row 151 holds 'abc'" in failed.stderr


def test_two_process_hac_and_cluster_equal_one_process(tmp_path, capsys):
    # under torchrun each process makes the HAC/cluster pass over every row in file order: the same figures
    data = make_regression(600, 3, 1, noise=0.5, seed=21)
    columns = dataset_columns(data)
    columns["firm"] = np.arange(600) % 7  # 7 clusters, interleaved over the chunks of both processes
    path = write_table(tmp_path / "d.csv", columns)
    for flags in (["--cov-type", "HAC", "--maxlags", "3"], ["--cov-type", "cluster", "--cluster", "firm"]):
        argv = ["solve", path, "--features", *data.feature_names, "--target", "y", "--summary", "--json",
                "--stream", "--chunk-rows", "50", *flags]
        two = torchrun(*argv, cwd=tmp_path)
        assert two.returncode == 0, two.stderr[-2000:]
        assert main([str(a) for a in argv]) == 0
        one = json.loads(capsys.readouterr().out)
        # the same rows in the same order through the same pass: only the merged R factor differs, by rounding
        # (γ_{n}·κ relative on these well-conditioned rows, κ < 10); 1e-10 is loose
        got, want = json.loads(two.stdout)["statistics"], one["statistics"]
        for g, w in zip(got, want):
            assert g["cov_type"] == w["cov_type"] == flags[1]
            np.testing.assert_allclose(g["cov_params"], w["cov_params"], rtol=1e-10)


def test_two_process_formula_solve_equals_one_process(tmp_path, capsys):
    # a formula's columns under torchrun: read whole on every rank, or streamed (levels from every rank's first
    # pass over the whole file, the chunks shared): the answer of one process
    rng = np.random.default_rng(8)
    n = 400
    x = rng.normal(size=n)
    region = rng.choice(["east", "north", "south"], size=n)
    y = 1 + 2 * x + (region == "north") * 1.5 + rng.normal(size=n)
    path = tmp_path / "d.csv"
    path.write_text("x,region,y\n" + "".join(f"{a:.17g},{r},{b:.17g}\n" for a, r, b in zip(x, region, y)))
    for extra in ([], ["--stream", "--chunk-rows", "50"]):
        argv = ["solve", path, "--formula", "y ~ x + C(region) + x:C(region)", "--json", *extra]
        two = torchrun(*argv, cwd=tmp_path)
        assert two.returncode == 0, two.stderr[-2000:]
        assert main([str(a) for a in argv]) == 0
        one = json.loads(capsys.readouterr().out)
        got = json.loads(two.stdout)
        assert list(got["coef"]["y"]) == list(one["coef"]["y"])  # the same columns, in the same order
        # R merged from two processes instead of one pass: a few ulps of κ-scaled rounding; 1e-10 is loose
        np.testing.assert_allclose(list(got["coef"]["y"].values()), list(one["coef"]["y"].values()), rtol=1e-10)
