"""`torchrun --nproc-per-node 2 -m torchlinreg ...` on loopback: the same answers as one process."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from torchlinreg import lstsq, make_regression, write_table
from torchlinreg.data import dataset_columns


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
    np.testing.assert_allclose(got, reference.coef, rtol=1e-10)
    fitted = torchrun("fit", path, "--target", "y1", "y2", "--optimizer", "lbfgs", "--epochs", "30",
                      "--dtype", "float64", "--no-plots", "--out", tmp_path / "out", cwd=tmp_path)
    assert fitted.returncode == 0, fitted.stderr[-2000:]
    assert fitted.stdout.count("Current weight:") == 1 and "R merged from 2 processes" in fitted.stdout
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    np.testing.assert_allclose(summary["weight"], reference.coef, rtol=1e-8)
    assert summary["engine"] == "gram"


def test_a_rank_that_fails_stops_every_rank_with_its_name(csv_file, tmp_path):
    path, _ = csv_file
    failed = torchrun("fit", path, "--batch-size", "10", "--out", tmp_path / "out", cwd=tmp_path)
    assert failed.returncode != 0
    assert "rank 0 failed" in failed.stderr and "rank 1 failed" in failed.stderr
    assert not (tmp_path / "out").exists()
