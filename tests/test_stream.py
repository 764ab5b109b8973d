"""Streaming input: every result is compared with the whole data read at once by pyarrow."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
import torch
from torch.utils.data import DataLoader

from torchlinreg import formats as files
from torchlinreg.errors import DataError
from torchlinreg.solve import lstsq
from torchlinreg.exact import accumulate, solve_source
from torchlinreg.filesource import open_files as open_source
from torchlinreg.minibatch import ShuffledBatches

from test_solve import loss_rtol, ls_rtol

N = 1000  # rows of the small data sets: not a multiple of any chunk size below
FEATURES = ("x1", "x2", "x3")
TARGETS = ("y1", "y2")


def _table(n=N, seed=0) -> pa.Table:
    """Features of different scales, two targets, positive weights, and a row id."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 3)) * [1.0, 1e3, 1e-2] + [0.0, 5e3, 1.0]
    Y = X @ [[1.5, -2.0], [1e-3, 3e-3], [40.0, 7.0]] + [0.5, -1.0] + rng.standard_normal((n, 2))
    columns = {"id": np.arange(n, dtype=np.float64), **dict(zip(FEATURES, X.T)), **dict(zip(TARGETS, Y.T))}
    columns["w"] = rng.uniform(0.1, 3.0, n)
    return pa.table(columns)


def _write(table: pa.Table, path, **kw):
    if path.suffix in (".csv", ".tsv"):
        pa_csv.write_csv(table, path, pa_csv.WriteOptions(delimiter="\t" if path.suffix == ".tsv" else ","))
    else:
        pq.write_table(table, path, **kw)
    return path


def _whole(table: pa.Table, names) -> np.ndarray:
    return np.column_stack([table.column(n).to_numpy() for n in names])


def _read_back(path) -> pa.Table:
    """The whole file, read by pyarrow with every column float64 (the reference)."""
    if path.is_dir():
        return pa.concat_tables(_read_back(p) for p in sorted(path.iterdir()))
    if path.suffix in (".csv", ".tsv"):
        delimiter = "\t" if path.suffix == ".tsv" else ","
        names = path.read_text().split("\n", 1)[0].split(delimiter)
        return pa_csv.read_csv(path, parse_options=pa_csv.ParseOptions(delimiter=delimiter),
                               convert_options=pa_csv.ConvertOptions(column_types={n: pa.float64() for n in names}))
    return pq.read_table(path)


def _stack(chunks) -> tuple[np.ndarray, np.ndarray]:
    """``X`` and ``y`` of unweighted chunks, stacked."""
    chunks = list(chunks)
    return tuple(np.concatenate([chunk[i] for chunk in chunks]) for i in (0, 1))


def _close(solution, reference, X, Y, w=None, fit_intercept=True):
    """The same rows solved in other chunks: two computations of one least-squares problem. This design's
    condition number (~7e5) is below solve.REFINE_ABOVE_CONDITION, so both come from R alone: the
    normal-equation bound ls_rtol and the loss bound loss_rtol of test_solve (the old 1e-12 was below them:
    5e-11 for the coefficients, 2e-9 for the loss)."""
    coef_rtol, intercept_rtol = ls_rtol(X, Y, reference.coef, w, fit_intercept)
    for (got, want), rtol in (((solution.coef, reference.coef), coef_rtol),
                              ((solution.intercept, reference.intercept), intercept_rtol)):
        np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * np.abs(want).max())
    assert solution.loss == pytest.approx(reference.loss, rel=loss_rtol(X, Y, reference.coef, reference.intercept, w))
    assert solution.n_samples == reference.n_samples


@pytest.fixture(scope="module")
def data_files(tmp_path_factory):
    """The same rows as CSV, TSV, one Parquet file of several row groups, and a folder of 3 Parquet parts."""
    root = tmp_path_factory.mktemp("stream")
    table = _table()
    parts = root / "parts"
    parts.mkdir()
    for i, (start, stop) in enumerate([(0, 400), (400, 401), (401, N)]):  # a part of one row
        _write(table.slice(start, stop - start), parts / f"part-{i}.parquet")
    return {"csv": _write(table, root / "data.csv"), "tsv": _write(table, root / "data.tsv"),
            "parquet": _write(table, root / "data.parquet", row_group_size=256), "folder": parts}


# ---- opening and chunks ---------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["csv", "tsv", "parquet", "folder"])
@pytest.mark.parametrize("chunk_rows", [1, 333, 4096])
def test_chunks_hold_the_rows_in_file_order(data_files, kind, chunk_rows):
    path = data_files[kind]
    source = open_source(path, target=list(TARGETS), features=list(FEATURES), weights="w")
    chunks = list(source.chunks(chunk_rows))
    assert [len(X) for X, _, _ in chunks[:-1]] == [chunk_rows] * (len(chunks) - 1)  # whole chunks, last shorter
    whole = _read_back(path)
    X, y, w = (np.concatenate(parts) for parts in zip(*chunks))
    np.testing.assert_array_equal(X, _whole(whole, FEATURES))
    np.testing.assert_array_equal(y, _whole(whole, TARGETS))
    np.testing.assert_array_equal(w, whole.column("w").to_numpy())
    assert X.dtype == y.dtype == w.dtype == np.float64
    assert source.n_rows == N


def test_parquet_row_count_is_known_before_reading_and_csv_after_a_pass(data_files):
    assert open_source(data_files["parquet"]).n_rows == N
    assert open_source(data_files["folder"]).n_rows == N
    source = open_source(data_files["csv"])
    assert source.n_rows is None
    for _ in source.chunks():
        pass
    assert source.n_rows == N


@pytest.mark.parametrize("kind", ["csv", "parquet", "folder"])
def test_columns_are_chosen_as_read_dataset_chooses_them(data_files, kind):
    path = data_files[kind]
    for kw in ({}, {"target": "y1"}, {"target": ["y2", "y1"], "features": ["x3", "id"]}, {"target": "y1", "weights": "w"}):
        source = open_source(path, **kw)
        if kind != "folder":
            data = files.read_dataset(path, **kw)
            assert (source.feature_names, source.target_names) == (data.feature_names, data.target_names)
        assert source.weight_name == kw.get("weights")
    assert open_source(path).target_names == ("w",)  # the last column by default
    assert "w" not in open_source(path, target="y1", weights="w").feature_names


def test_a_text_column_is_left_out_with_a_warning_and_a_typo_is_an_error(tmp_path):
    rows = "".join(f"n{i},{i},{2 * i}\n" for i in range(50))
    (tmp_path / "text.csv").write_text("name,x,y\n" + rows)
    with pytest.warns(UserWarning, match="left out column 'name', which is not numeric"):
        assert open_source(tmp_path / "text.csv").feature_names == ("x",)
    (tmp_path / "typo.csv").write_text("code,x,y\n" + "".join(f"{i},{i},{i}\n" for i in range(50)) + "5O,1,2\n")
    with pytest.raises(DataError, match=r"typo.csv: column 'code' row 51 holds '5O', not a number; correct it"):
        open_source(tmp_path / "typo.csv")
    with pytest.raises(DataError, match="no column 'yy'; did you mean 'y'"):
        open_source(tmp_path / "text.csv", target="yy", features=["x"])
    with pytest.raises(DataError, match=r"text.csv: column 'name' row 1 holds 'n0', not a number"):
        open_source(tmp_path / "text.csv", features=["name", "x"])


def test_later_decimals_in_a_column_of_integers_are_read(tmp_path):
    # pyarrow infers int64 from the first block; the stream reads float64 whatever the first block holds
    n = 200_000
    path = tmp_path / "ints.csv"
    with open(path, "w") as f:
        f.write("x,y\n")
        f.writelines(f"{i},{i % 7}\n" for i in range(n))
        f.write("2.5,0.25\n")
    X, y = _stack(open_source(path).chunks(50_000))
    assert X[-1, 0] == 2.5 and y[-1, 0] == 0.25 and len(X) == n + 1
    np.testing.assert_array_equal(X[:n, 0], np.arange(n))


def test_true_false_columns_read_as_read_dataset_reads_them(tmp_path):
    n = 60_000  # more than pyarrow's first block of 1 MiB, from which the column types are taken
    path = tmp_path / "flags.csv"
    path.write_text("flag,x,y\n" + "".join(f"{'true' if i % 3 else 'false'},{i},{i / 7!r}\n" for i in range(n)))
    data = files.read_dataset(path)
    X, y = _stack(open_source(path).chunks(7_000))
    np.testing.assert_array_equal(X, data.X.numpy())
    np.testing.assert_array_equal(y, data.y.numpy())
    with open(path, "a") as f:
        f.write("maybe,1,2\n")
    with pytest.raises(DataError, match=f"column 'flag' row {n + 1} holds 'maybe', not true or false like the rows"):
        list(open_source(path).chunks())


def test_a_folder_must_hold_one_format_and_the_same_columns(tmp_path):
    table = _table(20)
    with pytest.raises(DataError, match="holds no .csv, .tsv, .parquet, .pq files"):
        open_source(tmp_path)
    _write(table, tmp_path / "a.parquet")
    _write(table.drop_columns(["x2"]), tmp_path / "b.parquet")
    with pytest.raises(DataError, match=r"b.parquet: lacks column 'x2', which a.parquet has; give every file in "):
        open_source(tmp_path)
    (tmp_path / "b.parquet").unlink()
    _write(table, tmp_path / "c.csv")
    with pytest.raises(DataError, match="c.csv: is CSV but a.parquet is PARQUET; keep files of one format"):
        open_source(tmp_path)
    (tmp_path / "c.csv").unlink()
    (tmp_path / "_SUCCESS").write_text("")  # written by Spark; ignored like pyarrow.dataset ignores it
    _write(table, tmp_path / "d.pq")
    assert len(open_source(tmp_path).paths) == 2


def test_unsupported_and_missing_paths(tmp_path):
    np.save(tmp_path / "a.npy", np.ones((3, 2)))
    with pytest.raises(DataError, match=r"a.npy: cannot stream '.npy' files"):
        open_source(tmp_path / "a.npy")
    with pytest.raises(DataError, match="no such file"):
        open_source(tmp_path / "missing.csv")
    (tmp_path / "semi.csv").write_text("a;b\n1;2\n")
    with pytest.raises(DataError, match="seem separated by ';'"):
        open_source(tmp_path / "semi.csv")
    (tmp_path / "header.csv").write_text("a,b\n")
    with pytest.raises(DataError, match="has no data rows"):
        open_source(tmp_path / "header.csv")


# ---- bad values far into a file ----------------------------------------------------------------

BAD_ROW = 150_001


@pytest.fixture(scope="module")
def long_rows():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((BAD_ROW + 99, 2))
    return X, X @ [1.0, 2.0] + 3.0


@pytest.fixture(scope="module")
def long_lines(long_rows):
    X, y = long_rows
    return [f"{a:.17g},{b:.17g},{t:.17g}\n" for (a, b), t in zip(X.tolist(), y.tolist())]


@pytest.mark.parametrize("bad_line, message", [
    ("1.0,abc,2.0\n", rf"bad.csv: column 'b' row {BAD_ROW} holds 'abc', not a number; correct it, or leave the column out"),
    ("1.0,,2.0\n", rf"bad.csv: column 'b' has a missing value in row {BAD_ROW}; fill or remove that row"),
    ("1.0,nan,2.0\n", rf"bad.csv: column 'b' holds NaN in row {BAD_ROW}; replace it"),
    ("1.0,2.0,-inf\n", rf"bad.csv: column 't' holds -inf in row {BAD_ROW}; replace it"),
    ("1.0,2.0,3.0,4.0\n", rf"bad.csv: row {BAD_ROW} has 4 field\(s\) but the header has 3 \(the row reads '1.0,2.0,3.0,4.0'\)"),
])
def test_a_bad_value_far_into_a_csv_stops_with_its_row_and_no_result(tmp_path, long_lines, bad_line, message):
    path = tmp_path / "bad.csv"
    with open(path, "w") as f:
        f.write("a,b,t\n")
        f.writelines(long_lines[:BAD_ROW - 1] + [bad_line] + long_lines[BAD_ROW:])
    source = open_source(path)  # the first block is clean
    results = []
    with pytest.raises(DataError, match=message):
        results.append(solve_source(source))
    assert results == []
    rows = 0
    with pytest.raises(DataError, match=message):  # earlier chunks come first: write nothing before a pass ends
        for X, _, _ in source.chunks(65_536):
            rows += len(X)
    assert rows == 2 * 65_536


@pytest.mark.parametrize("bad, shown", [(np.nan, "NaN"), (-np.inf, "-inf")])
def test_a_bad_value_in_a_later_parquet_part_names_that_file_and_its_row(tmp_path, long_rows, bad, shown):
    # accumulate finds it from the block's Gram matrix, then converts the chunk again for the message
    X, y = long_rows
    b = X[:, 1].copy()
    b[BAD_ROW - 1] = bad
    table = pa.table({"a": X[:, 0], "b": b, "t": y})
    _write(table.slice(0, 100), tmp_path / "part-0.parquet")
    _write(table.slice(100), tmp_path / "part-1.parquet", row_group_size=50_000)
    with pytest.raises(DataError, match=rf"part-1.parquet: column 'b' holds {shown} in row {BAD_ROW - 100}; replace it"):
        accumulate(open_source(tmp_path))


def test_a_negative_weight_far_into_a_file(tmp_path, long_rows):
    X, y = long_rows
    w = np.ones(len(y))
    w[BAD_ROW - 1] = -1.0
    path = _write(pa.table({"a": X[:, 0], "b": X[:, 1], "w": w, "t": y}), tmp_path / "w.parquet")
    with pytest.raises(DataError, match=rf"w.parquet: weight column 'w' row {BAD_ROW} is negative"):
        solve_source(open_source(path, weights="w"))
    zero = _write(pa.table({"a": X[:10, 0], "w": np.zeros(10), "t": y[:10]}), tmp_path / "zero.parquet")
    with pytest.raises(DataError, match="weight column 'w' is all zero"):
        solve_source(open_source(zero, weights="w", target="t"))


# ---- the exact solution ----------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["csv", "parquet", "folder"])
@pytest.mark.parametrize("chunk_rows", [1, 7, 333, 65_536])
def test_solve_source_equals_lstsq_on_the_whole_data(data_files, kind, chunk_rows):
    path = data_files[kind]
    whole = _read_back(path)
    X, Y = _whole(whole, FEATURES), _whole(whole, TARGETS)
    reference = lstsq(X, Y, feature_names=FEATURES, target_names=TARGETS)
    source = open_source(path, target=list(TARGETS), features=list(FEATURES))
    solution = solve_source(source, chunk_rows=chunk_rows)
    _close(solution, reference, X, Y)
    assert (solution.feature_names, solution.target_names) == (FEATURES, TARGETS)


@pytest.mark.parametrize("kind", ["csv", "folder"])
def test_weighted_solve_source_equals_weighted_lstsq(data_files, kind):
    path = data_files[kind]
    whole = _read_back(path)
    X, Y, w = _whole(whole, FEATURES), _whole(whole, TARGETS), whole.column("w").to_numpy()
    reference = lstsq(X, Y, sample_weight=w)
    solution = solve_source(open_source(path, target=list(TARGETS), features=list(FEATURES), weights="w"),
                            chunk_rows=97)
    _close(solution, reference, X, Y, w)
    # Σw of 1000 positive terms in two orders: each within γ_1000 ≈ 1.1e-13 relative, so 2.2e-13 < 1e-12
    assert solution.sum_weights == pytest.approx(reference.sum_weights, rel=1e-12)


def test_one_pass_without_refinement_and_without_intercept(data_files):
    path = data_files["parquet"]
    whole = _read_back(path)
    X, y = _whole(whole, FEATURES), _whole(whole, ["y1"])
    source = open_source(path, target="y1", features=list(FEATURES))
    _close(solve_source(source, refine=False, chunk_rows=100), lstsq(X, y), X, y)  # neither refines this design
    _close(solve_source(source, fit_intercept=False), lstsq(X, y, fit_intercept=False), X, y, fit_intercept=False)
    acc = accumulate(open_source(data_files["csv"]), chunk_rows=100)  # the default columns
    assert acc.n_samples == N and acc.n_features == 6  # id, x1..x3, y1, y2; target w


# ---- shuffled mini-batches --------------------------------------------------------------------------

def _ids(batches) -> np.ndarray:
    return np.concatenate([X[:, 0].numpy() for X, *_ in batches])


@pytest.fixture(scope="module")
def id_source(data_files):
    return open_source(data_files["parquet"], features=["id", "x1"], target="y1", weights="w")


def test_shuffled_batches_cover_every_row_once_in_whole_batches(id_source, data_files):
    dataset = ShuffledBatches(id_source, 64, buffer_rows=200, chunk_rows=90, seed=5)
    batches = list(DataLoader(dataset, batch_size=None))
    assert [len(X) for X, _, _ in batches[:-1]] == [64] * (len(batches) - 1) and 1 <= len(batches[-1][0]) <= 64
    ids = _ids(batches)
    np.testing.assert_array_equal(np.sort(ids), np.arange(N))
    assert not np.array_equal(ids, np.arange(N))
    whole = _read_back(data_files["parquet"])
    for X, y, w in batches:  # each row's values stay together
        rows = X[:, 0].numpy().astype(int)
        assert X.dtype == y.dtype == w.dtype == torch.float32 and y.shape == (len(rows), 1)
        np.testing.assert_array_equal(X[:, 1].numpy(), whole.column("x1").to_numpy()[rows].astype(np.float32))
        np.testing.assert_array_equal(w.numpy(), whole.column("w").to_numpy()[rows].astype(np.float32))


def test_shuffled_batches_depend_on_seed_plus_epoch_only(id_source):
    def order(seed, epoch=None):
        dataset = ShuffledBatches(id_source, 50, buffer_rows=300, chunk_rows=128, seed=seed, dtype=torch.float64)
        if epoch is not None:
            dataset.set_epoch(epoch)
        return _ids(dataset)

    first = order(3)
    np.testing.assert_array_equal(first, order(3))
    np.testing.assert_array_equal(first, order(3, epoch=0))
    for other in (order(3, epoch=1), order(4)):
        assert not np.array_equal(first, other)
        np.testing.assert_array_equal(np.sort(other), np.arange(N))
    np.testing.assert_array_equal(order(3, epoch=1), order(4, epoch=0))  # seed + epoch, as DistributedSampler


def test_ranks_and_workers_read_disjoint_rows_that_cover_the_data(id_source):
    ranks = [_ids(ShuffledBatches(id_source, 32, buffer_rows=100, chunk_rows=70, rank=r, world_size=3))
             for r in range(3)]
    assert all(len(ids) for ids in ranks)
    np.testing.assert_array_equal(np.sort(np.concatenate(ranks)), np.arange(N))
    loader = DataLoader(ShuffledBatches(id_source, 32, buffer_rows=100, chunk_rows=70), batch_size=None, num_workers=2)
    np.testing.assert_array_equal(np.sort(_ids(loader)), np.arange(N))


def test_shuffled_batches_check_their_arguments(id_source):
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        ShuffledBatches(id_source, 0)
    with pytest.raises(ValueError, match="give both rank and world_size"):
        ShuffledBatches(id_source, 8, rank=1)
    with pytest.raises(ValueError, match="rank must be an integer from 0 to world_size - 1 = 1"):
        ShuffledBatches(id_source, 8, rank=2, world_size=2)
    assert "batch_size=8" in repr(ShuffledBatches(id_source, 8))
    no_weights = open_source(id_source.paths[0], features=["id"], target="y1")
    assert len(next(iter(ShuffledBatches(no_weights, 8)))) == 2  # (X, y)


# ---- memory: bounded by the chunk, not the file ------------------------------------------------------

_MEASURE = textwrap.dedent("""
    import json, resource, sys, time
    import torch  # the baseline is an interpreter with torch and torchlinreg loaded
    from torchlinreg.exact import solve_source
    from torchlinreg.filesource import open_files as open_source
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    solution = solve_source(open_source(sys.argv[1]), chunk_rows=65_536)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"growth_mb": (peak - base) / 1024, "seconds": seconds, "n": solution.n_samples}))
""")


def _peak_growth(path) -> dict:
    # one BLAS thread: the measurement is of memory, and multi-threaded QR of narrow blocks only adds noise
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", _MEASURE, str(path)], capture_output=True, text=True, env=env,
                         check=True)
    return json.loads(out.stdout)


@pytest.mark.slow
def test_peak_memory_is_bounded_by_the_chunk_not_the_file(tmp_path):
    n, step, margin_mb = 2_500_000, 250_000, 200
    names = [f"x{i}" for i in range(1, 11)] + ["y"]
    schema = pa.schema([(name, pa.float64()) for name in names])
    rng = np.random.default_rng(2)
    big, csv, small = tmp_path / "big.parquet", tmp_path / "big.csv", tmp_path / "small.parquet"
    with pq.ParquetWriter(big, schema) as parquet, pa_csv.CSVWriter(csv, schema) as text, \
            pq.ParquetWriter(small, schema) as prefix:
        for start in range(0, n, step):  # written in pieces: the test itself stays small
            X = rng.standard_normal((step, 10))
            piece = pa.table(dict(zip(names, [*X.T, X @ np.arange(1.0, 11.0) + rng.standard_normal(step)])))
            parquet.write_table(piece)
            text.write_table(piece)
            if start < 2 * step:
                prefix.write_table(piece)
    decoded_mb = n * len(names) * 8 / 2**20
    reference = _peak_growth(small)  # 500,000 rows: the same chunks, a fifth of the data
    for path in (big, csv):
        measured = _peak_growth(path)
        assert measured["n"] == n
        assert measured["growth_mb"] < margin_mb, measured
        assert measured["growth_mb"] < reference["growth_mb"] + 64, (measured, reference)
        assert os.path.getsize(path) / 2**20 > 0.8 * margin_mb
    assert decoded_mb > 0.8 * margin_mb


# ---- reading ahead in a background thread ---------------------------------------------------------

def test_read_ahead_gives_the_same_chunks_as_reading_in_turn(data_files, monkeypatch):
    import torchlinreg.filesource as stream  # where the chunks are read

    source = open_source(data_files["parquet"], target=list(TARGETS), features=list(FEATURES))
    monkeypatch.setattr(stream, "READ_AHEAD", 0)
    in_turn = list(source.chunks(97))
    monkeypatch.setattr(stream, "READ_AHEAD", 3)
    ahead = list(source.chunks(97))
    assert len(ahead) == len(in_turn) == -(-N // 97)
    for (X1, y1, _), (X2, y2, _) in zip(in_turn, ahead):
        np.testing.assert_array_equal(X1, X2)
        np.testing.assert_array_equal(y1, y2)


def test_read_ahead_raises_the_producers_error_after_the_items_before_it():
    from torchlinreg.filesource import _read_ahead

    def items():
        yield from range(5)
        raise DataError("data.csv: row 6 holds 'x'")

    got = []
    with pytest.raises(DataError, match="row 6"):
        for item in _read_ahead(items(), 2):
            got.append(item)
    assert got == [0, 1, 2, 3, 4]


def test_closing_a_read_ahead_early_stops_its_thread_and_closes_the_source():
    import threading

    from torchlinreg.filesource import _read_ahead

    closed = threading.Event()

    def items():
        try:
            yield from range(10**9)
        finally:
            closed.set()

    before = threading.active_count()
    reader = _read_ahead(items(), 2)
    assert [next(reader) for _ in range(3)] == [0, 1, 2]
    reader.close()
    assert closed.is_set()
    assert threading.active_count() == before


@pytest.mark.parametrize("depth", [1, 2])
def test_read_ahead_keeps_at_most_depth_plus_one_items_alive(depth):
    # a record batch can be a whole row group: the items alive are the memory the pass holds
    import time

    from torchlinreg.filesource import _read_ahead

    started = []

    def items():
        for k in range(8):
            started.append(k)
            yield k

    for item in _read_ahead(items(), depth):
        deadline = time.monotonic() + 10  # a loaded machine may be slow to run the thread at all
        while len(started) < min(item + depth + 1, 8) and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.05)  # time enough for the thread to run further ahead, which it must not
        assert len(started) == min(item + depth + 1, 8), (item, started)


# ---- how much is read at once -------------------------------------------------------------------

def test_parquet_is_read_in_whole_row_groups_up_to_read_bytes_and_never_less_than_a_chunk(tmp_path):
    names = ["a", "b", "y"]
    path = tmp_path / "groups.parquet"
    rng = np.random.default_rng(4)
    values = rng.standard_normal((250_000, 3))
    pq.write_table(pa.table(dict(zip(names, values.T))), path, row_group_size=100_000)  # 100k, 100k, 50k rows

    def batch_rows(read_bytes, chunk_rows):
        source = open_source(path, target="y", read_bytes=read_bytes)
        return [len(batch) for _, _, batch in source._pieces(chunk_rows)]

    row_bytes = 8 * len(names)
    assert batch_rows(192 << 20, 65_536) == [100_000, 100_000, 50_000]  # whole row groups
    assert max(batch_rows(30_000 * row_bytes, 1_000)) == 30_000  # row groups over read_bytes: as many rows as fit
    assert max(batch_rows(30_000 * row_bytes, 40_000)) == 40_000  # but never fewer than a chunk
    for read_bytes in (192 << 20, 30_000 * row_bytes):  # whatever is read at once, the chunks are the same
        source = open_source(path, target="y", read_bytes=read_bytes)
        chunks = list(source.chunks(7_000))
        assert [len(X) for X, _, _ in chunks] == [7_000] * 35 + [5_000]
        np.testing.assert_array_equal(np.vstack([X for X, _, _ in chunks]), values[:, :2])
    with pytest.raises(ValueError, match="read_bytes must be a positive integer"):
        open_source(path, target="y", read_bytes=0)


def test_the_command_reads_less_at_once_under_a_small_memory_budget(tmp_path):
    from torchlinreg.memory import STREAM_READ_BYTES, stream_read_bytes
    from torchlinreg.sources import open_source as open_chosen

    assert stream_read_bytes(64 << 30) == STREAM_READ_BYTES == 192 << 20
    assert stream_read_bytes(200 << 20) == 25 << 20  # an eighth: a pass holds about 3 batches at its peak
    assert stream_read_bytes(1 << 20) == 1 << 20  # never below 1 MiB (and never below a chunk: see above)
    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"x": np.arange(10.0), "y": np.arange(10.0)}), path)
    assert open_chosen(path, max_memory=80 << 20, stream=True).read_bytes == 10 << 20  # as --max-memory 80M --stream


def test_the_readmes_streaming_calls(tmp_path):
    # the lines of the README's "The library" example that stream and accumulate
    import torchlinreg as tl

    rng = np.random.default_rng(8)
    X = rng.standard_normal((3000, 3)) * [1.0, 5.0, 0.1] + [0.0, 100.0, -2.0]
    y = X @ np.array([1.5, -0.2, 7.0]) + 4.0 + 0.01 * rng.standard_normal(3000)
    (tmp_path / "parts").mkdir()
    for k, rows in enumerate((slice(0, 1200), slice(1200, 3000))):
        pq.write_table(pa.table({"x1": X[rows, 0], "x2": X[rows, 1], "x3": X[rows, 2], "y": y[rows]}),
                       tmp_path / "parts" / f"{k}.parquet")
    reference = lstsq(X, y)
    src = tl.open_source(tmp_path / "parts", target="y")
    big = tl.solve_source(src)
    acc = tl.QRAccumulator(n_features=3)
    acc.update(X[:1000], y[:1000])
    acc.update_columns([X[1000:, 0], X[1000:, 1], X[1000:, 2], y[1000:]])
    # other chunks (and columns given one by one): ls_rtol of test_solve, ≈ 1.5e-11 and 7.5e-11 here: 1e-10 is above
    for solution in (big, acc.solve()):
        np.testing.assert_allclose(solution.coef, reference.coef, rtol=1e-10)
        np.testing.assert_allclose(solution.intercept, reference.intercept, rtol=1e-10)
    # a loss read from R with a residual 1e-3 of ‖y‖: loss_rtol ≈ 3e-5 (the old 1e-9 was below it)
    assert acc.loss(reference.coef, reference.intercept) == pytest.approx(
        reference.loss, rel=loss_rtol(X, y, reference.coef, reference.intercept))
    streamed = tl.run_fit(src, tl.TrainConfig(optimizer="lbfgs", epochs=20), tmp_path / "run-big", quiet=True,
                          plots=False)  # the README's line, without the printing and the pictures
    assert streamed.to_dict()["reading"]["mode"] == "stream" and streamed.n_samples == 3000
    np.testing.assert_allclose(streamed.solution.coef, reference.coef, rtol=1e-10)  # as big's, above


@pytest.mark.parametrize("header, late_row, message", [
    # Review of session 5: pyarrow's words for the failed block, 0-based column number and all.
    (b"a,b,y", b"5,\x806,7", "column 'b' row 250000 holds '\\\\x806', which is not UTF-8 text"),
    # Review of session 5: "holds only blank lines" where the whole read names the quote.
    (b'a,"b,y', None, 'the header has a quote (") that is never closed'),
])
def test_solve_streams_damaged_text_with_the_whole_reads_precision(tmp_path, capsys, header, late_row, message):
    """solve streams every CSV; a damaged value deep in the file, or a damaged header, is named as
    precisely as a whole read names it: the file, the column and the row."""
    from torchlinreg.cli import main

    rows = [b"%d,%d,%d" % (i % 7, i % 5, i % 3) for i in range(300_000)]
    if late_row is not None:
        rows[249_999] = late_row  # data row 250,000: beyond the first read block (1 MiB)
    path = tmp_path / "d.csv"
    path.write_bytes(b"\n".join([header, *rows]) + b"\n")
    assert main(["solve", str(path)]) == 1
    out, err = capsys.readouterr()
    assert not out and err.count("\n") == 1 and f"{path}: " in err and message in err, err


@pytest.mark.parametrize("newline", [b"\n", b"\r\n"], ids=["LF", "CRLF"])
def test_csv_pieces_end_at_row_ends_even_inside_quoted_text(tmp_path, monkeypatch, newline):
    """The CSV pass cuts the file into pieces at row ends and parses them on two threads: with pieces of a few
    dozen bytes, quoted text holding newlines and delimiters (in a column not chosen), a UTF-8 byte-order mark
    and the file's last row without a newline, the rows are the whole read's, value for value."""
    import torchlinreg.formats.text as text
    from torchlinreg.filesource import open_files
    from torchlinreg.formats import read_dataset

    rows = [b'x,note,y']
    for i in range(200):
        note = b'"two\nlines, and ""quotes"""' if i % 7 == 0 else b"plain"
        rows.append(b"%d.5,%s,%d" % (i, note, 3 * i))
    path = tmp_path / "q.csv"
    path.write_bytes(b"\xef\xbb\xbf" + newline.join(rows))  # no newline after the last row
    whole = read_dataset(path, target="y", features=["x"])
    monkeypatch.setattr(text, "PIECE_BYTES", 48)  # many pieces, most cut near a quoted newline
    chunks = list(open_files(path, target="y", features=["x"]).chunks(37))
    np.testing.assert_array_equal(np.vstack([X for X, _, _ in chunks]), whole.X.numpy())  # the same text parsed
    np.testing.assert_array_equal(np.vstack([y for _, y, _ in chunks]), whole.y.numpy())
