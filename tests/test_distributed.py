"""torchlinreg.distributed: shards, the merge of R factors, DDP, and failures that end every rank.

The end-to-end tests launch two real processes with torchrun on loopback (tests/dist_worker.py)
and compare what they write with references computed here, in one process: ``lstsq`` on the
whole data set, and plain mini-batch SGD on the same batches.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import dist_worker as worker
import torch.distributed
from torchlinreg.config import TrainConfig
from torchlinreg.distributed import (Dist, DistributedError, check_same_schema, ddp_mse, epoch_batches, from_env,
                                     merge_accumulators, quiet_unless_main, run_guarded, shard, wrap_ddp)
from torchlinreg.distributed.merge import _pack, _unpack
from torchlinreg.distributed.schema import _schema_difference
from torchlinreg.errors import TorchlinregError
from torchlinreg.model import build_model
from torchlinreg.solve import QRAccumulator, lstsq
from torchlinreg.training import train

from bounds import U64, gamma

WORKER = Path(__file__).with_name("dist_worker.py")
LAUNCH_TIMEOUT_S = 90  # a hang fails the test instead of blocking CI
HANG_TIMEOUT_S = 10  # the job's collective timeout in the hang test; the others use the worker's 300 s


def ls_tol(X, y) -> float:
    """An unrefined solution from R (backward-stable factor of the centred data) against the refined one (a few
    ulps): the LS forward-error bound m·n·u·(κ + κ²·‖r‖/(‖A‖‖x‖)) of the centred design (Higham §20.1), ×10."""
    A, Y = X.double().numpy(), y.double().numpy()
    A, Y = A - A.mean(0), Y - Y.mean(0)
    s = np.linalg.svd(A, compute_uv=False)
    x = np.linalg.lstsq(A, Y, rcond=None)[0]
    kappa, eta = s[0] / s[-1], np.linalg.norm(Y - A @ x) / (s[0] * np.linalg.norm(x))
    return 10 * A.shape[0] * (A.shape[1] + 1) * U64 * (kappa + kappa ** 2 * eta)


def amplification(X, y, weight, bias) -> float:
    """‖|A||θ̃|‖ / ‖A θ̃‖ for A = [X, 1, y], θ̃ = [Wᵀ; b; -I]: what relative rounding of A's entries does to the residual."""
    X, y = np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.float64)
    W, b = np.asarray(weight, dtype=np.float64), np.asarray(bias, dtype=np.float64)
    return float(np.linalg.norm(np.abs(X) @ np.abs(W.T) + np.abs(b) + np.abs(y)) / np.linalg.norm(X @ W.T + b - y))


def rel_err(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(mode: str, out: Path, *extra: str) -> tuple[subprocess.Popen, float]:
    """Start two ranks of tests/dist_worker.py on loopback with torchrun; the launcher and its start time."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
               "--master-port", str(free_port()), str(WORKER), mode, str(out), *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # two ranks on a 2-core runner: no thread oversubscription
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                               start_new_session=True)  # its own process group, to end it without ending pytest
    return process, time.monotonic()


def end(process: subprocess.Popen) -> tuple[str, str]:
    """Stop a launch: SIGTERM, which torchrun passes on to its workers, then SIGKILL; what they had written."""
    process.terminate()
    try:
        return process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        return process.communicate()


def finish(started: tuple[subprocess.Popen, float]) -> tuple[subprocess.CompletedProcess, float]:
    """Wait for a launch (at most LAUNCH_TIMEOUT_S); the finished process and its wall time in seconds."""
    process, start = started
    try:
        stdout, stderr = process.communicate(timeout=LAUNCH_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        stdout, stderr = end(process)
        pytest.fail(f"the 2-rank job hung for {LAUNCH_TIMEOUT_S} s:\n{stderr[-3000:]}")
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr), time.monotonic() - start


def torchrun(mode: str, out: Path, *extra: str) -> tuple[subprocess.CompletedProcess, float]:
    return finish(launch(mode, out, *extra))


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("torchlinreg: error:")]


# --- in one process --------------------------------------------------------------------------------

@pytest.mark.parametrize("n_rows", [0, 1, 2, 7, 10, 10_001])
@pytest.mark.parametrize("world_size", [1, 2, 3, 8])
def test_shards_cover_every_row_once_and_are_balanced(n_rows, world_size):
    parts = [shard(n_rows, Dist(rank=r, world_size=world_size)) for r in range(world_size)]
    assert [i for p in parts for i in range(p.start, p.stop)] == list(range(n_rows))
    sizes = [p.stop - p.start for p in parts]
    assert max(sizes) - min(sizes) <= 1


def test_shard_refuses_a_bad_row_count():
    with pytest.raises(ValueError, match="non-negative integer"):
        shard(-1, Dist())


def test_one_process_is_the_single_process_path(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    dist = from_env(timeout_s=5)
    assert (dist.rank, dist.world_size, dist.backend, dist.is_main, dist.is_distributed) == (0, 1, None, True, False)
    acc = QRAccumulator(2).update(np.eye(3, 2), np.arange(3.0))
    assert merge_accumulators(acc, dist) is acc
    model = build_model(2, 1)
    assert wrap_ddp(model, dist) is model
    check_same_schema(("x1", "x2", "y"), ("float64",) * 3, dist)
    with pytest.raises(ZeroDivisionError):  # a single process's errors pass unchanged
        run_guarded(lambda: 1 / 0, dist)
    assert run_guarded(lambda: 42, dist) == 42


def test_from_env_refuses_a_rank_outside_the_world(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(ValueError, match="RANK is '2'; it must be 0..1"):
        from_env()


def test_packing_keeps_every_number_of_an_accumulator():
    rng = np.random.default_rng(0)
    acc = QRAccumulator(3, 2).update(rng.standard_normal((4, 3)), rng.standard_normal((4, 2)), rng.uniform(0, 2, 4))
    back = _unpack(_pack(acc).numpy())
    assert back.R.shape == (4, 6) and np.array_equal(back.R, acc.R)
    assert (back.n_samples, back.sum_weights, back.n_positive, back.weighted) == (4, acc.sum_weights, 4, True)
    empty = _unpack(_pack(QRAccumulator(3, 2, fit_intercept=False)).numpy())
    assert (empty.R.shape, empty.n_samples, empty.fit_intercept) == ((0, 5), 0, False)


def test_schema_differences_name_the_rank_and_the_column():
    ref = (("x1", "x2", "y"), ("float64", "float64", "float64"))
    assert _schema_difference(ref, ref, 1) is None
    assert _schema_difference(ref, (("x1", "z", "y"), ref[1]), 3) == "column 2 is 'z' on rank 3 but 'x2' on rank 0"
    assert _schema_difference(ref, (ref[0], ("float64", "int64", "float64")), 1) == \
        "column 'x2' is int64 on rank 1 but float64 on rank 0"
    assert "rank 2 sees 2 column(s) (x1, y) but rank 0 sees 3" in _schema_difference(ref, (("x1", "y"), ("f", "f")), 2)
    assert _schema_difference(ref + (10_001,), ref + (10_001,), 1) is None
    assert _schema_difference(ref + (10_001,), ref + (9_999,), 1) == "rank 1 sees 9999 rows but rank 0 sees 10001"


@pytest.mark.parametrize("batch_size", [1000, 3, 10_001, None])
def test_epoch_batches_split_the_single_process_batches_among_the_ranks(batch_size):
    n, world_size = 10_001, 3
    ranks = [Dist(rank=r, world_size=world_size) for r in range(world_size)]
    plans = [epoch_batches(n, batch_size, torch.Generator().manual_seed(5), d) for d in ranks]
    if batch_size is None:
        expected = [torch.arange(n)]
    else:
        expected = list(torch.randperm(n, generator=torch.Generator().manual_seed(5)).split(batch_size))
    assert all(len(plan) == len(expected) for plan in plans)  # the same number of steps on every rank
    for k, batch in enumerate(expected):
        union = torch.cat([plan[k][0] + shard(n, d).start for plan, d in zip(plans, ranks)])
        assert sorted(union.tolist()) == sorted(batch.tolist())
        assert all(plan[k][1] == len(batch) for plan in plans)


def test_ddp_mse_shares_add_up_to_the_batch_mse():
    y_pred, y = torch.randn(10, 2, dtype=torch.float64), torch.randn(10, 2, dtype=torch.float64)
    dist = Dist(rank=0, world_size=2)
    shares = ddp_mse(y_pred[:4], y[:4], 10, dist) + ddp_mse(y_pred[4:], y[4:], 10, dist)
    # 20 positive squared terms summed in two pieces vs in one: γ_20 relative per side, the scalings and
    # division a few roundings more: 2·γ_24
    assert torch.allclose(shares / dist.world_size, torch.nn.functional.mse_loss(y_pred, y), rtol=2 * gamma(24), atol=0)


def test_only_rank_0_prints(capsys):
    with quiet_unless_main(Dist(rank=1, world_size=2)):
        print("from rank 1")
    with quiet_unless_main(Dist(rank=0, world_size=2)):
        print("from rank 0")
    assert capsys.readouterr().out == "from rank 0\n"


# --- two processes, on loopback ---------------------------------------------------------------------

needs_gloo = pytest.mark.skipif(not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
                                reason="this PyTorch build has no torch.distributed with gloo")

@pytest.fixture(scope="module")
def hang_job(tmp_path_factory):
    """The job whose rank 1 never joins the merge, started early: its wait for the timeout overlaps the others."""
    out = tmp_path_factory.mktemp("hang")
    started = launch("hang", out, "--timeout", str(HANG_TIMEOUT_S))
    yield started, out
    if started[0].poll() is None:  # its test did not run: it ends by itself at the timeout; wait for it
        finish(started)


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory, hang_job):
    """One successful 2-rank run: what each rank wrote, and the launch."""
    out = tmp_path_factory.mktemp("ok")
    done, _ = torchrun("ok", out)  # no relaunch: see test_shutdown_ends_gloos_threads_after_ddp
    assert done.returncode == 0, done.stderr[-3000:]
    records = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    for r, record in enumerate(records):
        record["gloo_threads_after_shutdown"] = json.loads((out / f"rank{r}.threads.json").read_text())
    return records, done


@needs_gloo
def test_two_ranks_solve_exactly_as_one_process(two_ranks):
    (rank0, rank1), _ = two_ranks
    data = worker.data()
    reference = lstsq(data.X, data.y)  # one process, all rows, refined
    assert (rank0["rows"], rank1["rows"]) == ([0, 5001], [5001, 10_001])
    assert rank0["R"] == rank1["R"]  # bit for bit: both merged the same factors in the same order, same kernels
    solved = rank0["solution"]
    assert solved["n_samples"] == 10_001
    coef = np.array([[solved["coef"][t][f] for f in data.feature_names] for t in data.target_names])
    intercept = np.array([solved["intercept"][name] for name in data.target_names])
    tol = ls_tol(data.X, data.y)  # the merged R's solution, unrefined, against the refined one (normwise)
    assert rel_err(coef, reference.coef) < tol
    assert rel_err(intercept, reference.intercept) < tol
    # the loss at (first-order) the optimum from R: R's backward error moves ‖r‖² by at most γ_{n+p}·amp² of it
    amp = amplification(data.X, data.y, reference.coef, reference.intercept)
    assert rel_err(solved["loss"], reference.loss) < 10 * gamma(data.n_samples + 5 + 1 + 2) * amp ** 2


@needs_gloo
def test_ddp_training_equals_single_process_training_on_the_same_batches(two_ranks):
    """DDP averages the ranks' gradients; each rank's loss is its share of the whole batch's MSE (``ddp_mse``)
    and the ranks split the single-process batches among them (``epoch_batches``), so every step is the step
    of single-process mini-batch SGD with the same seed: the parameters agree to rounding."""
    (rank0, rank1), _ = two_ranks
    assert rank0["trained"] == rank1["trained"]  # the ranks agree exactly
    data = worker.data()
    model = build_model(worker.N_FEATURES, worker.N_TARGETS, seed=worker.SEED).double()
    optimizer = torch.optim.SGD(model.parameters(), lr=worker.LR)
    order = torch.Generator().manual_seed(worker.SEED)
    # The bound of the trajectories' difference: each step's gradient 2/(b·m)·A_bᵀ r over b rows is summed in two
    # pieces (DDP's all-reduce) instead of one: within γ_{b+p}·2/(b·m)·|A_b|ᵀ(|A_b||θ̃|) per entry; a stable step
    # does not magnify carried differences, so the parameters differ by at most Σ lr·‖that‖ over the steps, ×10.
    X, Y = data.X.double().numpy(), data.y.double().numpy()
    drift = 0.0
    for epoch in range(worker.EPOCHS):
        for idx in torch.randperm(worker.N_SAMPLES, generator=order).split(worker.BATCH_SIZE):
            W, b = model.linear.weight.detach().numpy(), model.linear.bias.detach().numpy()
            Ab, magnitude = np.abs(X[idx.numpy()]), np.abs(X[idx.numpy()]) @ np.abs(W.T) + np.abs(b) + np.abs(Y[idx.numpy()])
            scale = 2 / (len(idx) * worker.N_TARGETS)
            drift += worker.LR * scale * gamma(len(idx) + 8) * np.linalg.norm(np.vstack([Ab.T @ magnitude, magnitude.sum(0)]))
            optimizer.zero_grad()
            loss = torch.nn.functional.mse_loss(model(data.X[idx]), data.y[idx])
            loss.backward()
            optimizer.step()
    trained = rank0["trained"]
    tol = 10 * drift / float(model.linear.weight.detach().abs().max())  # rel_err is relative to the largest entry
    assert rel_err(trained["weight"], model.linear.weight.detach()) < tol
    bias_tol = 10 * drift / float(model.linear.bias.detach().abs().max())
    assert rel_err(trained["bias"], model.linear.bias.detach()) < bias_tol
    losses = trained["losses"]  # on all rows, from the merged R
    assert all(b < a for a, b in zip(losses, losses[1:]))
    final = torch.nn.functional.mse_loss(model(data.X), data.y).item()
    # the loss from the merged R vs the rows' sum at parameters within the drift: γ_{n+p}·amp² each (×10), plus
    # the parameters' difference, first order ‖∇loss‖·‖δθ‖ ≤ 2/(n·m)·‖Aᵀr‖·10·drift
    W, b = model.linear.weight.detach().numpy(), model.linear.bias.detach().numpy()
    r = X @ W.T + b - Y
    grad = 2 / r.size * np.linalg.norm(np.vstack([X.T @ r, r.sum(0)]))
    loss_tol = 10 * gamma(len(X) + 8) * amplification(X, Y, W, b) ** 2 + grad * 10 * drift / final
    assert rel_err(losses[-1], final) < loss_tol
    # and torchlinreg's own single-process loop, with the same settings, takes the same steps
    single = build_model(worker.N_FEATURES, worker.N_TARGETS, seed=worker.SEED)
    history = train(single, data.X, data.y, TrainConfig(epochs=worker.EPOCHS, lr=worker.LR, dtype="float64",
                                                        batch_size=worker.BATCH_SIZE, seed=worker.SEED))
    assert rel_err([r.loss for r in history.records], losses[:-1]) < loss_tol  # as above, at each epoch's start
    assert rel_err(trained["weight"], single.linear.weight.detach()) < tol


@needs_gloo
def test_only_rank_0_prints_in_a_job(two_ranks):
    _, done = two_ranks
    assert "printed by rank 0: solved on 10001 rows" in done.stdout
    assert "printed by rank 1" not in done.stdout


@needs_gloo
def test_shutdown_ends_gloos_threads_after_ddp(two_ranks):
    """shutdown destroys the process group then and there, also after DDP (whose first use imports
    torch.distributed.nn.functional, whose default arguments would otherwise hold the group): gloo's
    threads and connections end with the interpreter whole, not in its teardown at exit, where a rank
    aborted once with "terminate called without an active exception"."""
    (rank0, rank1), _ = two_ranks
    if not (rank0["gloo_threads"] and rank1["gloo_threads"]):
        pytest.skip("gloo's threads cannot be told apart by name here (no /proc/self/task, or other names)")
    assert rank0["gloo_threads_after_shutdown"] == rank1["gloo_threads_after_shutdown"] == []


@needs_gloo
def test_a_rank_that_fails_ends_every_rank_naming_it(tmp_path):
    done, seconds = torchrun("fail", tmp_path)
    assert done.returncode != 0
    failed = "torchlinreg: error: rank 1 failed: simulated failure: row 17 of this rank's chunk is unusable"
    errors = error_lines(done.stderr)
    assert f"{failed} (during the solve)" in errors, done.stderr[-3000:]  # rank 1, about itself
    assert f"{failed} (rank 0 stopped too, during the solve)" in errors  # rank 0, blocked in the merge until then
    assert seconds < LAUNCH_TIMEOUT_S  # rank 0 stopped at once, not at the 300 s collective timeout
    assert not list(tmp_path.iterdir())  # nobody wrote results


@needs_gloo
def test_ranks_that_see_different_columns_refuse_to_start(tmp_path):
    done, _ = torchrun("schema", tmp_path)
    assert done.returncode != 0
    message = "the ranks see different data: column 3 is 'z' on rank 1 but 'x3' on rank 0"
    assert any(message in line for line in error_lines(done.stderr)), done.stderr[-3000:]
    assert not list(tmp_path.iterdir())


@needs_gloo
def test_a_rank_that_never_joins_a_collective_is_named_at_the_timeout(hang_job):
    started, out = hang_job
    done, seconds = finish(started)
    assert done.returncode != 0
    message = f"rank 1 did not reach the end of the solve within {HANG_TIMEOUT_S} s"
    assert any(message in line for line in error_lines(done.stderr)), done.stderr[-3000:]
    assert seconds < LAUNCH_TIMEOUT_S < 600  # ended by the collective timeout, not by rank 1's 600 s sleep (robust to a slow machine)
    assert not list(out.iterdir())


def test_distributed_error_carries_the_ranks():
    error = DistributedError("rank 1 failed: x", rank=0, failed_ranks=(1,))
    assert (error.rank, error.failed_ranks, str(error)) == (0, (1,), "rank 1 failed: x")
    assert isinstance(error, TorchlinregError)
