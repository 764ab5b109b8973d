"""`torchrun --nproc-per-node 2 -m torchlinreg solve --l2` on loopback: the R factors merged across the processes
give the ridge and the GCV of the rows in one process (issue 18 item 2: GCV works for torchrun data).

Tolerance: 1e-10 relative, issue 18's figure (the merged R differs from one process's by rounding only).
"""

import json

import numpy as np
from torchlinreg import make_regression, write_table
from torchlinreg.data import dataset_columns
from torchlinreg.ridge_solve import ridge_cv

from test_distributed_cli import torchrun


def close(a, b):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    assert np.abs(a - b).max() <= 1e-10 * max(np.abs(b).max(), 1.0), (a, b)


def test_two_process_ridge_gcv_equals_one_process(tmp_path):
    """One torchrun launch (seconds): --l2-grid checks the merged R's GCV and the ridge at the chosen alpha."""
    data = make_regression(1001, 3, 2, noise=2.0, seed=17)
    path = write_table(tmp_path / "d.csv", dataset_columns(data))
    run = torchrun("solve", path, "--target", "y1", "y2", "--stream", "--chunk-rows", "100", "--json",
                   "--l2-grid", "0.1", "30", "3000", cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    out = json.loads(run.stdout)  # printed once: only rank 0 prints
    X, Y = data.X.double().numpy(), data.y.double().numpy()
    ref = ridge_cv(X, Y, (0.1, 30.0, 3000.0), mode="gcv")
    close([[out["coef"][t][f] for f in data.feature_names] for t in data.target_names], ref.coef)
    close([out["intercept"][t] for t in data.target_names], ref.intercept)
    close([out["gcv"][t] for t in data.target_names], ref.scores.T)
