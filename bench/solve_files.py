"""(f) `torchlinreg solve FILE` end to end, as a user types it, against the peers' scripts on the same file.

    python bench/solve_files.py [--quick] [--only NAME ...]

Every contender is a fresh command (``python -c`` for the peers), so start-up and imports count
as they do for a user; the file is read into the page cache first (``cat``). Two files in
``/tmp/torchlinreg-bench/``, written once and reused (seeded, float64, target ``y`` last):

- Parquet, 10⁶ rows × 100 features (about 0.8 GB);
- CSV, 10⁶ rows × 20 features (about 0.4 GB).

Peers: pyarrow → pandas → scikit-learn's ``LinearRegression.fit``; pyarrow's bare read plus
one float64 ``XᵀX`` (the least any exact solver must do); pandas ``read_csv`` + scikit-learn;
pyarrow's ``csv.read_csv`` alone; statsmodels' ``OLS(...).fit().summary()`` for ``--summary``.
"peak RSS" is the command's own maximum resident memory (``ru_maxrss`` of the child process); the
table's "extra peak MB" is the harness child's, which only starts the command, and means nothing here.

Targets (issue 13, item 7): Parquet: ``solve`` ≥ 8× faster than pyarrow → pandas →
scikit-learn, ≤ 1.5× the bare read + XᵀX, peak RSS ≤ a quarter of scikit-learn's. CSV: ≤ 1.3×
pyarrow's ``read_csv`` alone, ≥ 2× faster than pandas + scikit-learn, peak RSS ≤ half of
theirs. ``solve --summary`` ≥ 3× faster than statsmodels' summary.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as h  # noqa: E402

DIR = Path("/tmp/torchlinreg-bench")
SIZES = {"parquet": (1_000_000, 100), "csv": (1_000_000, 20)}
QUICK_SIZES = {"parquet": (20_000, 10), "csv": (20_000, 5)}


def data_path(kind: str, rows: int, d: int) -> Path:
    return DIR / f"solve_{rows}x{d}.{kind}"


def write_file(kind: str, rows: int, d: int) -> Path:
    """Write the file once, in pieces (a temporary name until it is whole); reuse it afterwards."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    path = data_path(kind, rows, d)
    if path.exists():
        return path
    DIR.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(13)
    scale, mean, coef = np.logspace(-1, 1, d), rng.uniform(-5, 5, d), rng.uniform(-2, 2, d)
    schema = pa.schema([(f"x{j}", pa.float64()) for j in range(d)] + [("y", pa.float64())])
    tmp = path.with_suffix(".partial")
    step = 1 << 17
    writer = pq.ParquetWriter(tmp, schema) if kind == "parquet" else pa_csv.CSVWriter(tmp, schema)
    with writer:
        for start in range(0, rows, step):
            k = min(step, rows - start)
            X = rng.standard_normal((k, d)) * scale + mean
            y = X @ coef + 3.0 + rng.standard_normal(k)
            writer.write_table(pa.table([*X.T, y], schema=schema))
    tmp.rename(path)
    print(f"wrote {path} ({path.stat().st_size / 1e9:.2f} GB)", file=sys.stderr)
    return path


PEERS = {
    "pyarrow → pandas → scikit-learn": """
        import pyarrow.parquet as pq
        from sklearn.linear_model import LinearRegression
        df = pq.read_table(PATH).to_pandas()
        LinearRegression().fit(df.drop(columns="y").to_numpy(), df["y"].to_numpy())
    """,
    "pyarrow bare read + one float64 XᵀX": """
        import numpy as np, pyarrow.parquet as pq
        t = pq.read_table(PATH)
        X = np.column_stack([c.to_numpy() for c in t.columns])
        G = X.T @ X
    """,
    "pandas read_csv + scikit-learn": """
        import pandas as pd
        from sklearn.linear_model import LinearRegression
        df = pd.read_csv(PATH)
        LinearRegression().fit(df.drop(columns="y").to_numpy(), df["y"].to_numpy())
    """,
    "pyarrow csv.read_csv alone": """
        import pyarrow.csv as pa_csv
        pa_csv.read_csv(PATH)
    """,
    "pandas read_csv + statsmodels OLS summary": """
        import pandas as pd, statsmodels.api as sm
        df = pd.read_csv(PATH)
        str(sm.OLS(df["y"], sm.add_constant(df.drop(columns="y"))).fit().summary())
    """,
}


def setup(p):
    return p


def run_command(p, params):
    """One command in a fresh process; its time is measured by the harness, its peak RSS here."""
    if "peer" in params:
        argv = [sys.executable, "-c", f"PATH = {str(params['path'])!r}\n" + textwrap.dedent(PEERS[params["peer"]])]
    else:
        argv = [sys.executable, "-m", "torchlinreg", "solve", params["path"], "--target", "y", "--json",
                *params.get("extra", ())]
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{argv[:3]} failed: {done.stderr[-500:]}")
    return {"peak_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}


def contenders(kind: str) -> list[h.Contender]:
    C = h.Contender
    ours = [C("torchlinreg solve", run_command, setup, note="streamed: the solve needs one pass")]
    if kind == "parquet":
        names = ["pyarrow → pandas → scikit-learn", "pyarrow bare read + one float64 XᵀX"]
    else:
        names = ["pandas read_csv + scikit-learn", "pyarrow csv.read_csv alone"]
        ours.append(C("torchlinreg solve --summary", run_command, setup, params={"extra": ["--summary"]},
                      note="statistics from R: no second pass"))
        names.append("pandas read_csv + statsmodels OLS summary")
    return ours + [C(name, run_command, setup, params={"peer": name}) for name in names]


def main(argv=None) -> int:
    args = h.parse_args(__doc__.splitlines()[0], argv)
    h.print_header("torchlinreg solve FILE end to end against the peers' scripts" + (" (--quick)" if args.quick else ""))
    print("peak RSS: the command's own ru_maxrss (a fresh process per run)")
    by = {}
    for kind, (rows, d) in (QUICK_SIZES if args.quick else SIZES).items():
        path = write_file(kind, rows, d)
        subprocess.run(["cat", str(path)], stdout=subprocess.DEVNULL, check=True)  # into the page cache
        print(f"\n## {path.name}: {rows:,} rows × {d} features + y, {path.stat().st_size / 1e9:.2f} GB\n", flush=True)
        results = h.run_all(h.selected(contenders(kind), args.only), {"path": str(path)}, quick=args.quick)
        h.print_table(results, "torchlinreg solve", {"peak RSS MB": lambda r: f"{r.out.get('peak_mb', 0):,.0f}"})
        by[kind] = {r.name: r for r in results if r.ok}

    def ratio(kind, a, b, what="seconds"):
        x, y = by.get(kind, {}).get(a), by.get(kind, {}).get(b)
        if x is None or y is None:
            return None
        return getattr(x, what) / getattr(y, what) if what == "seconds" else x.out["peak_mb"] / y.out["peak_mb"]

    ours = "torchlinreg solve"
    h.target("Parquet: pyarrow → pandas → scikit-learn time / solve time",
             ratio("parquet", "pyarrow → pandas → scikit-learn", ours), 8, at_least=True)
    h.target("Parquet: solve time / (bare read + XᵀX) time", ratio("parquet", ours, "pyarrow bare read + one float64 XᵀX"),
             1.5, at_least=False)
    h.target("Parquet: solve peak RSS / scikit-learn's", ratio("parquet", ours, "pyarrow → pandas → scikit-learn", "rss"),
             0.25, at_least=False)
    h.target("CSV: solve time / pyarrow read_csv time", ratio("csv", ours, "pyarrow csv.read_csv alone"), 1.3,
             at_least=False)
    h.target("CSV: pandas + scikit-learn time / solve time", ratio("csv", "pandas read_csv + scikit-learn", ours), 2,
             at_least=True)
    h.target("CSV: solve peak RSS / pandas + scikit-learn's", ratio("csv", ours, "pandas read_csv + scikit-learn", "rss"),
             0.5, at_least=False)
    h.target("CSV: statsmodels summary time / solve --summary time",
             ratio("csv", "pandas read_csv + statsmodels OLS summary", "torchlinreg solve --summary"), 3, at_least=True)
    return 0


if __name__ == "__main__":
    t0 = time.perf_counter()
    code = main()
    print(f"(bench wall time {time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    sys.exit(code)
