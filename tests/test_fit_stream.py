"""`torchlinreg fit` on data it streams (a small --max-memory, --stream, a folder) against the in-memory fit
and against references computed here."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from torch.utils.data import DataLoader

from torchlinreg import make_regression, write_table
from torchlinreg.cli import main
from torchlinreg.data import dataset_columns
from torchlinreg.model import build_model
from torchlinreg.filesource import open_files as open_source
from torchlinreg.minibatch import ShuffledBatches

from test_solve import loss_rtol, ls_rtol

SMALL = "64K"  # --max-memory that no test file fits in whole: forces streaming


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def summary(folder):
    return json.loads((folder / "summary.json").read_text())


def history(folder):
    return json.loads((folder / "history.json").read_text())


@pytest.fixture(scope="module")
def weighted_csv(tmp_path_factory):
    data = make_regression(3001, 3, 2, noise=0.4, seed=21)
    columns = dataset_columns(data)
    columns["w"] = np.random.default_rng(4).uniform(0.2, 3.0, data.n_samples)
    return write_table(tmp_path_factory.mktemp("stream") / "d.csv", columns), data, columns["w"]


def test_a_file_over_max_memory_streams_and_fits_as_in_memory(capsys, tmp_path, weighted_csv):
    path, data, _ = weighted_csv
    common = ["--target", "y1", "y2", "--features", "x1", "x2", "x3", "--optimizer", "sgd", "--lr", "0.2",
              "--momentum", "0.5", "--epochs", "25", "--dtype", "float64", "--standardize", "--summary",
              "--cov-type", "HC3", "--no-plots", "--quiet"]
    code, out, err = run(capsys, "fit", path, *common, "--max-memory", SMALL, "--chunk-rows", "700",
                         "--out", tmp_path / "streamed")
    assert code == 0, err
    assert "streamed: the optimum" in out and "over the 64 KiB of --max-memory" in out
    code, out_memory, err = run(capsys, "fit", path, *common, "--out", tmp_path / "memory")
    assert code == 0, err
    streamed, memory = summary(tmp_path / "streamed"), summary(tmp_path / "memory")
    assert streamed["reading"]["mode"] == "stream" and memory["reading"] == {"mode": "memory"}
    assert streamed["engine"] == memory["engine"] == "gram"
    assert streamed["n_samples"] == memory["n_samples"] == 3001
    # Both train on the Gram matrix of the same rows (engine gram), built in other chunks: its entries agree to
    # γ_m·‖A_i‖‖A_j‖ (≈ 7e-13 relative, m = 3001); 25 steps of SGD on the standardized, well-conditioned problem
    # (a contraction) carry that into the weights times at most the steps and κ ≈ 1: ~2e-11 ≪ 1e-9
    np.testing.assert_allclose(streamed["trained"]["weight"], memory["trained"]["weight"], rtol=1e-9)
    np.testing.assert_allclose(streamed["trained"]["bias"], memory["trained"]["bias"], rtol=1e-9)
    np.testing.assert_allclose(history(tmp_path / "streamed")["records"][-1]["loss"],
                               history(tmp_path / "memory")["records"][-1]["loss"], rtol=1e-9)
    for key in ("mse", "rmse", "mae", "r2"):  # metrics of weights 1e-9 apart: first order, the same 1e-9
        assert streamed["trained"]["metrics"]["train"][key] == pytest.approx(memory["trained"]["metrics"]["train"][key], rel=1e-9)
    # The optimum's loss, read from R (well conditioned: no refinement) in two computations: loss_rtol of
    # test_solve (≈ 1e-10 here; the old 1e-12 was below it)
    X, Y = data.X.double().numpy(), data.y.double().numpy()
    coef, *_ = np.linalg.lstsq(np.column_stack([X, np.ones(len(X))]), Y, rcond=None)
    assert streamed["gap"]["optimum_loss"] == pytest.approx(memory["gap"]["optimum_loss"],
                                                            rel=loss_rtol(X, Y, coef[:-1].T, coef[-1]))
    # Statistics from R and a second pass over the rows. Parameters: ls_rtol (≈ 1.2e-8 for the smallest
    # coefficient here); standard errors: σ̂² (loss_rtol ≈ 8e-10) times (RᵀR)⁻¹ with HC3 leverages, first order
    # in the Gram perturbation times κ² ≈ 1, ≲ 1e-9; t = param / std_err: the sum of both; r2 = 1 - rss/tss
    # moves by loss_rtol·(1 - r2)/r2 ≪ 1e-10.
    rel = max(1e-8, 2 * max(ls_rtol(X, Y, coef[:-1].T)))
    for ours, theirs in zip(streamed["optimum"]["statistics"], memory["optimum"]["statistics"]):  # HC3: R plus a second pass
        for term, figures in theirs["terms"].items():
            for name in ("param", "std_err", "t_value"):
                assert ours["terms"][term][name] == pytest.approx(figures[name], rel=rel), (term, name)
        assert ours["r2"] == pytest.approx(theirs["r2"], rel=1e-10)


def test_weighted_rows_stream_with_their_weights(capsys, tmp_path, weighted_csv):
    path, data, w = weighted_csv
    code, _, err = run(capsys, "fit", path, "--target", "y1", "--features", "x1", "x2", "x3", "--weights", "w",
                       "--optimizer", "lbfgs", "--epochs", "30", "--dtype", "float64", "--stream", "--summary",
                       "--no-plots", "--quiet", "--out", tmp_path / "out")
    assert code == 0, err
    got = summary(tmp_path / "out")
    X, y = data.X.double().numpy(), data.y[:, 0].double().numpy()
    A, sw = np.column_stack([X, np.ones(len(X))]), np.sqrt(w)
    reference = np.linalg.lstsq(A * sw[:, None], y * sw, rcond=None)[0]  # weighted least squares, computed here
    # the streamed optimum vs LAPACK: ls_rtol of test_solve (the old 1e-10 was below it for the smallest coefficient)
    np.testing.assert_allclose(got["optimum"]["coef"]["y1"]["x1"], reference[0],
                               rtol=ls_rtol(X, y, reference[:3], w)[0])
    # L-BFGS for 30 epochs stops at its own tolerance, not at rounding: 1e-7 is convergence, not arithmetic
    np.testing.assert_allclose(got["trained"]["weight"][0], reference[:3], rtol=1e-7)
    assert got["optimum"]["statistics"][0]["n_obs"] == 3001 and got["optimum"]["statistics"][0]["log_likelihood"] is not None


def test_streamed_mini_batches_are_the_shuffled_batches_of_a_dataloader(capsys, tmp_path, weighted_csv):
    path, data, _ = weighted_csv
    batch, chunk, lr, epochs, seed = 64, 250, 0.05, 3, 7
    code, out, err = run(capsys, "fit", path, "--target", "y1", "y2", "--features", "x1", "x2", "x3",
                         "--batch-size", batch, "--chunk-rows", chunk, "--lr", lr, "--epochs", epochs, "--seed", seed,
                         "--dtype", "float64", "--max-memory", SMALL, "--no-plots", "--out", tmp_path / "out")
    assert code == 0, err
    assert "engine: data (mini-batches of 64 rows" in out
    # The reference: the tutorial's loop over the same DataLoader, written here.
    source = open_source(path, target=["y1", "y2"], features=["x1", "x2", "x3"])
    dataset = ShuffledBatches(source, batch, seed=seed, chunk_rows=chunk, dtype=torch.float64)
    model = build_model(3, 2, seed=seed).double()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    X, Y = data.X.double(), data.y.double()
    losses = []
    for epoch in range(epochs):
        with torch.no_grad():
            losses.append(torch.nn.functional.mse_loss(model(X), Y).item())
        dataset.set_epoch(epoch)
        for Xb, yb in DataLoader(dataset, batch_size=None):
            optimizer.zero_grad()
            torch.nn.functional.mse_loss(model(Xb), yb).backward()
            optimizer.step()
    got = summary(tmp_path / "out")
    # the same batches, the same float64 ops in the same order (both PyTorch, same kernels): equal but for
    # rounding of ~3·47 SGD steps of γ_4-sized products, amplified by at most (1 + lr·λ_max) per step: ≪ 1e-10
    np.testing.assert_allclose(got["trained"]["weight"], model.linear.weight.detach().numpy(), rtol=1e-10)
    np.testing.assert_allclose(got["trained"]["bias"], model.linear.bias.detach().numpy(), rtol=1e-10)
    np.testing.assert_allclose([r["loss"] for r in history(tmp_path / "out")["records"]], losses, rtol=1e-10)


def test_modes_that_need_every_row_in_memory_are_refused(capsys, tmp_path, weighted_csv):
    path, _, _ = weighted_csv
    for extra, words in ((["--engine", "data"], "--engine gram"),
                         (["--validation-fraction", "0.2"], "a file of their own")):
        code, out, err = run(capsys, "fit", path, "--max-memory", SMALL, *extra, "--out", tmp_path / "out")
        assert code == 2 and words in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "out").exists()
    np.save(tmp_path / "d.npy", np.ones((3000, 4)))
    code, _, err = run(capsys, "fit", tmp_path / "d.npy", "--max-memory", SMALL, "--out", tmp_path / "out")
    assert code == 2 and "Parquet" in err and err.count("\n") == 1
    for bad in ("lots", "-5M", "0"):  # argparse's error: one line, exit 2
        with pytest.raises(SystemExit) as stop:
            main(["fit", str(path), f"--max-memory={bad}"])
        err = capsys.readouterr().err
        assert stop.value.code == 2 and "--max-memory" in err and "expected a size" in err and err.count("\n") == 1


def test_a_bad_row_deep_in_a_streamed_file_stops_before_any_output(capsys, tmp_path):
    rows = ["x,y"] + [f"{i},{2 * i + 1}" for i in range(5000)]
    rows[4001] = "4000,oops"
    (tmp_path / "bad.csv").write_text("\n".join(rows) + "\n")
    code, _, err = run(capsys, "fit", tmp_path / "bad.csv", "--stream", "--chunk-rows", "512",
                       "--out", tmp_path / "out", "--save", tmp_path / "model")
    assert code == 1 and "row 4001" in err and "'oops'" in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob("model*"))


def test_solve_summary_of_a_streamed_file_equals_the_in_memory_one(capsys, weighted_csv):
    path, _, _ = weighted_csv
    args = ["solve", path, "--target", "y2", "--weights", "w", "--summary", "--cov-type", "HC2", "--json"]
    code, out, err = run(capsys, *args, "--stream", "--chunk-rows", "300")
    assert code == 0, err
    code, out_memory, err = run(capsys, *args)
    assert code == 0, err
    streamed, memory = json.loads(out)["statistics"][0], json.loads(out_memory)["statistics"][0]
    # HC2 standard errors from R and a second pass, two computations: σ̂² to loss_rtol (≈ 8e-10) and (RᵀR)⁻¹ first
    # order in the Gram perturbation (γ_m·κ², κ ≈ 1): 1e-8 is above both. The log-likelihood
    # -n/2·(log(2π·loss) + 1) moves by n/2·Δloss/loss, relative loss_rtol / |log(2π·loss) + 1| (≈ 1 here).
    _, data, w = weighted_csv
    X, y = data.X.double().numpy(), data.y[:, 1].double().numpy()
    A, sw = np.column_stack([X, np.ones(len(X))]) * np.sqrt(w)[:, None], np.sqrt(w)
    theta = np.linalg.lstsq(A, y * sw, rcond=None)[0]
    loss = np.average((X @ theta[:3] + theta[3] - y) ** 2, weights=w)
    rel = loss_rtol(X, y, theta[:3], theta[3], w) / abs(np.log(2 * np.pi * loss) + 1)
    for term, figures in memory["terms"].items():
        assert streamed["terms"][term]["std_err"] == pytest.approx(figures["std_err"], rel=1e-8)
    assert streamed["log_likelihood"] == pytest.approx(memory["log_likelihood"], rel=max(rel, 1e-10))


def test_plots_and_report_of_streamed_data_draw_a_sample_and_say_so(capsys, tmp_path):
    data = make_regression(12_000, 1, 1, noise=0.5, seed=5)
    path = write_table(tmp_path / "d.parquet", dataset_columns(data))
    code, out, err = run(capsys, "fit", path, "--max-memory", SMALL, "--optimizer", "lbfgs", "--epochs", "5",
                         "--report", "--quiet", "--out", tmp_path / "out")
    assert code == 0, err
    assert "the plots show a random sample of" in out
    written = {p.name for p in (tmp_path / "out").iterdir()}
    assert {"loss.png", "data.png", "current_model.png", "residuals.png", "report.html"} <= written
    got = summary(tmp_path / "out")
    sample = got["reading"]["plot_sample_rows"]
    assert 9_000 < sample <= 10_000 and got["n_samples"] == 12_000
    page = (tmp_path / "out" / "report.html").read_text()
    assert f"a random sample of {sample:,} rows" in page and "12,000" in page


_MEASURE = textwrap.dedent("""
    import json, resource, sys
    import torch, torchlinreg.fitting, torchlinreg.filesource, torchlinreg.minibatch  # the baseline: all loaded
    from torchlinreg.cli import main
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    code = main(sys.argv[1:])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"code": code, "growth_mb": (peak - base) / 1024}))
""")


def _fit_growth(*argv) -> dict:
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", _MEASURE, *map(str, argv)], capture_output=True, text=True, env=env,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_a_streamed_fit_stays_within_its_memory_whatever_the_file_size(tmp_path):
    n, step, d = 1_500_000, 250_000, 8
    names = [f"x{i}" for i in range(1, d + 1)] + ["y"]
    schema = pa.schema([(name, pa.float64()) for name in names])
    rng = np.random.default_rng(3)
    big, small = tmp_path / "big.parquet", tmp_path / "small.parquet"
    with pq.ParquetWriter(big, schema) as parquet, pq.ParquetWriter(small, schema) as prefix:
        for start in range(0, n, step):  # written in pieces: the test itself stays small
            X = rng.standard_normal((step, d))
            piece = pa.table(dict(zip(names, [*X.T, X @ np.arange(1.0, d + 1) + rng.standard_normal(step)])))
            parquet.write_table(piece)
            if start == 0:
                prefix.write_table(piece)
    args = ["--max-memory", "32M", "--optimizer", "lbfgs", "--epochs", "5", "--quiet", "--no-plots"]
    reference = _fit_growth("fit", small, *args, "--out", tmp_path / "small")  # the same chunks, a sixth of the rows
    measured = _fit_growth("fit", big, *args, "--out", tmp_path / "big")
    assert reference["code"] == measured["code"] == 0
    decoded_mb = n * len(names) * 8 / 2**20  # 103 MiB as float64; read whole, fit holds about 12 such copies
    assert measured["growth_mb"] < reference["growth_mb"] + 48, (measured, reference)
    assert measured["growth_mb"] < decoded_mb, (measured, decoded_mb)
    assert summary(tmp_path / "big")["n_samples"] == n
