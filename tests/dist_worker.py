"""One rank of the distributed tests, launched by tests/test_distributed.py through torchrun.

    python -m torch.distributed.run --nproc-per-node 2 ... tests/dist_worker.py MODE OUT_DIR [--timeout S]

Every rank builds the same data set, takes its shard of the rows and then, by MODE:
  ok      checks the columns, solves exactly from the merged R factors, trains with DDP;
          every rank writes rank<R>.json (R, the solution, the parameters after training,
          gloo's threads while the group is up) and, after shutdown, rank<R>.threads.json
          (gloo's threads left: none, or the group outlived shutdown)
  fail    rank 1 raises in the middle of the solve, before the merge
  schema  rank 1 sees a column under another name
  hang    rank 1 never joins the merge (it sleeps)
Errors end as the command line ends them: one line on stderr, exit code 1.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

import torch

from torchlinreg.data import make_regression
from torchlinreg.distributed import (check_same_schema, ddp_mse, epoch_batches, from_env, merge_accumulators,
                                     quiet_unless_main, run_guarded, shard, shutdown, wrap_ddp)
from torchlinreg.errors import DataError, TorchlinregError
from torchlinreg.model import build_model
from torchlinreg.solve import QRAccumulator

N_SAMPLES, N_FEATURES, N_TARGETS, DATA_SEED = 10_001, 5, 2, 1  # odd: the shards differ by one row
BATCH_SIZE, EPOCHS, LR, SEED = 1000, 3, 0.05, 59  # 11 steps an epoch, the last of one row


def data():
    return make_regression(N_SAMPLES, N_FEATURES, N_TARGETS, seed=DATA_SEED)


def solve(mode: str, dist, X, y) -> QRAccumulator:
    acc = QRAccumulator(N_FEATURES, N_TARGETS).update(X, y)
    if mode == "fail" and dist.rank == 1:
        raise DataError("simulated failure: row 17 of this rank's chunk is unusable")
    if mode == "hang" and dist.rank == 1:
        time.sleep(600)  # never joins the merge; torchrun ends this process when rank 0 gives up
    return merge_accumulators(acc, dist)


def train_ddp(dist, X, y, acc: QRAccumulator) -> dict:
    """Mini-batch SGD with DDP; the loss of every epoch on all rows comes from the merged R, no collective."""
    model = build_model(N_FEATURES, N_TARGETS, seed=SEED).double()
    ddp = wrap_ddp(model, dist)
    optimizer = torch.optim.SGD(ddp.parameters(), lr=LR)
    order = torch.Generator().manual_seed(SEED)
    losses = []
    for epoch in range(EPOCHS):
        losses.append(acc.loss(model.linear.weight.detach(), model.linear.bias.detach()))
        for idx, batch_rows in epoch_batches(N_SAMPLES, BATCH_SIZE, order, dist):
            optimizer.zero_grad()
            y_pred = ddp(X[idx])  # (rows of this rank in the batch, n_targets), maybe 0 rows
            loss = ddp_mse(y_pred, y[idx], batch_rows, dist)
            loss.backward()
            optimizer.step()
    losses.append(acc.loss(model.linear.weight.detach(), model.linear.bias.detach()))
    return {"weight": model.linear.weight.tolist(), "bias": model.linear.bias.tolist(), "losses": losses}


def gloo_threads() -> list[str]:
    """The names of this process's threads that belong to gloo (Linux); [] where /proc/self/task is missing."""
    tasks = Path("/proc/self/task")
    names = []
    if tasks.is_dir():
        for task in tasks.iterdir():
            with contextlib.suppress(OSError):  # a thread that ended meanwhile
                names.append((task / "comm").read_text().strip())
    return sorted(name for name in names if "gloo" in name)


def run(mode: str, out: Path, dist) -> None:
    dataset = data()
    names = dataset.feature_names + dataset.target_names
    if mode == "schema" and dist.rank == 1:
        names = tuple("z" if n == "x3" else n for n in names)
    check_same_schema(names, ("float64",) * len(names), dist, n_rows=dataset.n_samples)
    rows = shard(N_SAMPLES, dist)
    X, y = dataset.X[rows], dataset.y[rows]
    acc = run_guarded(lambda: solve(mode, dist, X, y), dist, what="the solve")
    solution = acc.solve(feature_names=dataset.feature_names, target_names=dataset.target_names)
    trained = run_guarded(lambda: train_ddp(dist, X, y, acc), dist, what="training")
    print(f"printed by rank {dist.rank}: solved on {acc.n_samples} rows")
    record = {"rank": dist.rank, "world_size": dist.world_size, "rows": [rows.start, rows.stop],
              "R": acc.R.tolist(), "n_samples": acc.n_samples, "solution": solution.to_dict(), "trained": trained,
              "gloo_threads": gloo_threads()}
    (out / f"rank{dist.rank}.json").write_text(json.dumps(record))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=("ok", "fail", "schema", "hang"))
    parser.add_argument("out", type=Path)
    parser.add_argument("--timeout", type=float, default=300.0)  # far above any start-up: a wait for it is obvious
    args = parser.parse_args(argv)
    dist = from_env(timeout_s=args.timeout)
    try:
        with quiet_unless_main(dist):
            run(args.mode, args.out, dist)
    except TorchlinregError as exc:
        print(f"torchlinreg: error: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        shutdown(dist)
    if args.mode == "ok":  # what shutdown left running: gloo's threads must have ended with the group
        (args.out / f"rank{dist.rank}.threads.json").write_text(json.dumps(gloo_threads()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
