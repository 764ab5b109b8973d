"""(a) Exact least-squares fit: torchlinreg against scikit-learn, NumPy, PyTorch, statsmodels, and one XᵀX each.

    python bench/exact_fit.py [--quick] [--only NAME ...]

Sizes: 10⁶×100 and 10⁷×10, float64 (``--quick``: 5·10⁴×20). Every contender
fits ``y ≈ X w + b`` with an intercept on the same data (built in each child from seed 0,
see ``_harness.make_data``). The lower bound is one float64 ``X.T @ X``: any one-pass
method reads X once and does at least that much arithmetic. It is timed in NumPy and in
PyTorch (same data, each library's own product and threads), and the faster is the bound.
Coefficients are checked against torchlinreg's: the largest relative difference over ``[w, b]``.

Targets (issue 16): torchlinreg at least 8× faster than scikit-learn's LinearRegression
(moonshot 15×), within 2× of the faster library's one XᵀX, with under a tenth of
scikit-learn's extra memory.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as h  # noqa: E402

FULL = [(1_000_000, 100), (10_000_000, 10)]
QUICK = [(50_000, 20)]
REFERENCE = "torchlinreg lstsq"
GRAM_NUMPY, GRAM_TORCH = "one float64 XᵀX (NumPy)", "one float64 XᵀX (PyTorch)"


def setup(p):
    return h.make_data(p["n"], p["d"], seed=0)


def _coef(w, b) -> dict:
    import numpy as np

    return {"coef": np.concatenate([np.ravel(w), np.ravel(b)]).astype(float)}


def run_lstsq(data, p):
    from torchlinreg.solve import lstsq

    X, y = data
    s = lstsq(X, y, **p.get("lstsq", {}))
    return _coef(s.coef, s.intercept)


def run_accumulate(data, p):
    from torchlinreg.solve import QRAccumulator

    X, y = data
    s = QRAccumulator(X.shape[1]).update(X, y).solve()
    return _coef(s.coef, s.intercept)


def run_accumulate_chunked(data, p):
    from torchlinreg.solve import QRAccumulator

    X, y = data
    acc = QRAccumulator(X.shape[1])
    for start in range(0, len(X), p["chunk"]):
        acc.update(X[start:start + p["chunk"]], y[start:start + p["chunk"]])
    s = acc.solve()
    return _coef(s.coef, s.intercept)


def run_sklearn(data, p):
    from sklearn.linear_model import LinearRegression

    X, y = data
    m = LinearRegression().fit(X, y)
    return _coef(m.coef_, m.intercept_)


def _with_ones(X):
    import numpy as np

    return np.hstack([X, np.ones((len(X), 1))])  # the caller's part of the cost: these solvers have no intercept


def run_numpy(data, p):
    import numpy as np

    X, y = data
    sol = np.linalg.lstsq(_with_ones(X), y, rcond=None)[0]
    return _coef(sol[:-1], sol[-1])


def run_torch(data, p):
    import torch

    X, y = data
    sol = torch.linalg.lstsq(torch.from_numpy(_with_ones(X)), torch.from_numpy(y)[:, None]).solution[:, 0].numpy()
    return _coef(sol[:-1], sol[-1])


def run_statsmodels(data, p):
    import statsmodels.api as sm

    X, y = data
    params = sm.OLS(y, sm.add_constant(X, prepend=False)).fit().params
    return _coef(params[:-1], params[-1])


def run_gram(data, p):
    X, _ = data
    G = X.T @ X  # (d, d) float64: the one-pass lower bound
    return {"check": float(G[0, 0])}


def setup_torch(p):
    import torch

    return tuple(torch.from_numpy(a) for a in setup(p))  # the same arrays, shared


def run_gram_torch(data, p):
    X, _ = data
    G = X.T @ X
    return {"check": float(G[0, 0])}


# torchlinreg is built on PyTorch: like every contender, its imports are done before timing.
TL_IMPORTS = ("torch", "torchlinreg.solve")


def contenders() -> list[h.Contender]:
    C = h.Contender
    return [
        C(REFERENCE, run_lstsq, setup, imports=TL_IMPORTS, note="the one call, default settings"),
        C("torchlinreg lstsq(refine=True)", run_lstsq, setup, imports=TL_IMPORTS,
          params={"lstsq": {"refine": True}}, note="refinement passes forced (double-double residuals)"),
        C("QRAccumulator.update(X, y) + solve", run_accumulate, setup, imports=TL_IMPORTS,
          note="the QR alone, whole array in one update, no refinement"),
        C("QRAccumulator, chunks of 8192 rows", run_accumulate_chunked, setup, imports=TL_IMPORTS,
          note="same QR, fed in chunks as a stream would"),
        C("sklearn LinearRegression", run_sklearn, setup, imports=("sklearn.linear_model",)),
        C("numpy.linalg.lstsq", run_numpy, setup, note="on [X, 1] (the copy is counted)"),
        C("torch.linalg.lstsq", run_torch, setup, imports=("torch",), note="on [X, 1], driver gelsy (CPU default)"),
        C("statsmodels OLS().fit()", run_statsmodels, setup, imports=("statsmodels.api",), repeat=1,
          note="add_constant copy counted; one run"),
        C(GRAM_NUMPY, run_gram, setup, repeat=5, note="lower bound of any one-pass method"),
        C(GRAM_TORCH, run_gram_torch, setup_torch, imports=("torch",), repeat=5, note="the same in PyTorch"),
    ]


def max_rel_diff(a, b) -> float:
    import numpy as np

    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def main(argv=None) -> int:
    args = h.parse_args(__doc__.splitlines()[0], argv)
    h.print_header("exact fit: torchlinreg against the peers" + (" (--quick)" if args.quick else ""))
    chosen = h.selected(contenders(), args.only)
    for n, d in QUICK if args.quick else FULL:
        params = {"n": n, "d": d, "chunk": 8192}
        print(f"\n## {n:,} × {d} float64 ({n * d * 8 / h.MB:,.0f} MB of X)\n", flush=True)
        results = h.run_all(chosen, params, quick=args.quick)
        ref = next((r for r in results if r.name == REFERENCE and r.ok), None)

        def agreement(r):
            if ref is None or "coef" not in r.out or "coef" not in ref.out:
                return "-"
            return f"{max_rel_diff(r.out['coef'], ref.out['coef']):.1e}"

        h.print_table(results, REFERENCE, {"max rel diff of [w, b]": agreement})
        by = {r.name: r for r in results if r.ok}
        if ref is not None:
            sk = by.get("sklearn LinearRegression")
            bound = min((by[k] for k in (GRAM_NUMPY, GRAM_TORCH) if k in by), key=lambda r: r.seconds, default=None)
            h.target("sklearn LinearRegression time / torchlinreg lstsq time (moonshot 15×)",
                     sk.seconds / ref.seconds if sk else None, 8, at_least=True)
            h.target(f"torchlinreg lstsq time / the faster library's one XᵀX time ({bound.name if bound else '-'})",
                     ref.seconds / bound.seconds if bound else None, 2, at_least=False)
            h.target("torchlinreg lstsq extra memory / sklearn's",
                     ref.extra_mb / sk.extra_mb if sk and sk.extra_mb > 0 else None, 0.1, at_least=False, unit="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
