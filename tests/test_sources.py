"""The Source interface: rows in memory and files read in chunks give the same rows, shares and messages."""

import numpy as np
import pytest
import torch

from torchlinreg import tutorial_data
from torchlinreg.errors import ConfigError, DataError
from torchlinreg.formats import read_dataset, write_table
from torchlinreg.exact import accumulate, solve_source
from torchlinreg.sources import ArraySource, FileSource, Source, open_source, open_streamed, open_whole

from test_stream import FEATURES, N, _table, data_files  # noqa: F401 - data_files: the rows as CSV, Parquet, a folder

COLUMNS = dict(target="y1", features=list(FEATURES), weights="w")
NPY_COLUMNS = dict(target="c5", features=["c1", "c2", "c3"], weights="c4")  # a .npy file's columns are c1, c2, ...


def _columns() -> dict[str, np.ndarray]:
    """test_stream's rows, as writable arrays by column name."""
    table = _table()
    return {name: column.to_numpy().copy() for name, column in zip(table.column_names, table.columns)}


@pytest.fixture(scope="module")
def paths(data_files, tmp_path_factory):
    """test_stream's files (the same rows as CSV, Parquet of several row groups, a folder of Parquet parts),
    and those rows as a .npy file."""
    columns = _columns()
    npy = tmp_path_factory.mktemp("sources") / "d.npy"
    np.save(npy, np.column_stack([columns[n] for n in (*FEATURES, "w", "y1")]))
    return {**data_files, "npy": npy, "whole": data_files["parquet"]}


def _source(paths, kind) -> Source:
    if kind == "array":
        return ArraySource(read_dataset(paths["whole"], **COLUMNS), weight_name="w")
    return open_streamed(paths[kind], **COLUMNS)


def _stack(chunks):
    chunks = list(chunks)
    return tuple(None if chunks[0][i] is None else np.concatenate([c[i] for c in chunks]) for i in range(3))


# ---- the interface ------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["array", "csv", "parquet", "folder"])
@pytest.mark.parametrize("rows", [1, 64, 4096])
def test_chunks_hold_the_rows_that_a_whole_read_holds(paths, kind, rows):
    source = _source(paths, kind)
    assert isinstance(source, Source)
    assert (source.feature_names, source.target_names, source.weight_name) == (FEATURES, ("y1",), "w")
    chunks = list(source.chunks(rows))
    assert all(len(X) == rows for X, _, _ in chunks[:-1]) and 0 < len(chunks[-1][0]) <= rows
    for X, y, w in chunks:
        assert X.dtype == y.dtype == w.dtype == np.float64
        assert X.shape[1:] == (3,) and y.shape[1:] == (1,) and w.shape == (len(X),)
    X, y, w = _stack(chunks)
    # Exact equality: the whole read and the chunked read parse the same text (or pages) to float64
    # with the same pyarrow conversions, so each value has the same bits either way.
    whole = read_dataset(paths["csv" if kind == "csv" else "whole"], **COLUMNS)
    np.testing.assert_array_equal(X, whole.X.numpy())
    np.testing.assert_array_equal(y, whole.y.numpy())
    np.testing.assert_array_equal(w, whole.sample_weight.numpy())
    assert source.n_rows == N  # a CSV file's count is known after the pass


def test_an_array_source_over_the_tutorials_data():
    data = tutorial_data()
    source = ArraySource(data)
    assert source.in_memory and source.dataset is data and source.n_rows == data.n_samples
    assert (source.feature_names, source.target_names, source.weight_name) == (data.feature_names,
                                                                             data.target_names, None)
    X, y, w = _stack(source.chunks(7))
    assert w is None
    np.testing.assert_array_equal(X, data.X.double().numpy())
    np.testing.assert_array_equal(y, data.y.double().numpy())
    assert all(c[2] is None for c in source.chunks(7))


@pytest.mark.parametrize("kind", ["array", "csv", "parquet", "folder"])
@pytest.mark.parametrize("parts", [1, 2, 3])
def test_parts_partition_the_rows(paths, kind, parts):
    source = _source(paths, kind)
    rows = 50
    every = list(source.chunks(rows))
    shares = [list(source.chunks(rows, part, parts)) for part in range(parts)]
    for part, share in enumerate(shares):  # chunk i belongs to part i % parts
        assert len(share) == len(every[part::parts])
        for got, want in zip(share, every[part::parts]):
            for a, b in zip(got, want):
                np.testing.assert_array_equal(a, b)
    ids = np.concatenate([X[:, 0] for share in shares for X, _, _ in share])  # x1 is distinct in every row
    assert len(ids) == N and len(np.unique(ids)) == N


@pytest.mark.parametrize("part, parts", [(2, 2), (-1, 2), (0, 0), (True, 2)])
def test_a_part_outside_the_parts_is_refused(paths, part, parts):
    for source in (_source(paths, "array"), _source(paths, "csv")):
        with pytest.raises(ValueError, match="part"):
            source.chunks(10, part, parts)


def test_the_exact_solve_is_the_same_from_rows_in_memory_and_from_a_file(paths):
    in_memory, streamed = (solve_source(_source(paths, kind), chunk_rows=64) for kind in ("array", "parquet"))
    np.testing.assert_allclose(in_memory.coef, streamed.coef, rtol=1e-9)
    np.testing.assert_allclose(in_memory.intercept, streamed.intercept, rtol=1e-9)
    assert accumulate(_source(paths, "array")).n_samples == N


# ---- open_source: whole or streamed ---------------------------------------------------------------

@pytest.mark.parametrize("kind, passes, max_memory, in_memory", [
    ("csv", "one", None, False),  # the solve needs one pass: streamed even though it fits
    ("parquet", "one", None, False),
    ("csv", "many", None, True),  # the data loop of a fit: read whole when it fits
    ("parquet", "many", None, True),
    ("parquet", "many", 20_000, False),  # ... and streamed when it does not
    ("csv", "many", 20_000, False),
    ("folder", "many", None, False),  # a folder always streams
    ("npy", "one", None, True),  # a format that cannot stream is read whole
])
def test_open_source_reads_whole_or_streams_as_the_passes_and_the_budget_ask(paths, kind, passes, max_memory,
                                                                             in_memory):
    source = open_source(paths[kind], **(NPY_COLUMNS if kind == "npy" else COLUMNS), passes=passes,
                         max_memory=max_memory)
    assert source.in_memory is in_memory
    assert isinstance(source, ArraySource if in_memory else FileSource)
    X, y, w = _stack(source.chunks(100))
    np.testing.assert_array_equal(X, read_dataset(paths["whole"], **COLUMNS).X.numpy())
    if in_memory:
        assert source.dataset.n_samples == N


def test_open_source_refuses_an_array_file_over_the_budget(paths):
    with pytest.raises(ConfigError, match=r"\.npy files are read whole, but .* over the .* of max_memory"):
        open_source(paths["npy"], **NPY_COLUMNS, passes="many", max_memory=20_000)
    with pytest.raises(ValueError, match="passes must be 'one' or 'many'"):
        open_source(paths["csv"], passes="two")


# ---- one message whichever way a file is read ----------------------------------------------------

@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
@pytest.mark.parametrize("bad, message", [
    (np.nan, "column 'x2' holds NaN in row 300; replace it with a number or remove that row"),
    (-np.inf, "column 'x2' holds -inf in row 300; replace it with a number or remove that row"),
    (1e200, "column 'x2' row 300 holds 1e+200, whose square overflows float64"),
])
def test_one_bad_value_gets_one_message_whole_and_streamed(tmp_path, suffix, bad, message):
    columns = _columns()
    columns["x2"][299] = bad
    path = write_table(tmp_path / f"bad{suffix}", columns)
    messages = []
    for read in (lambda: open_whole(path, **COLUMNS),
                 lambda: solve_source(open_streamed(path, **COLUMNS), chunk_rows=64),
                 lambda: solve_source(open_source(path, **COLUMNS, passes="many"), chunk_rows=64)):
        with pytest.raises(DataError) as caught:
            read()
        messages.append(str(caught.value))
    assert messages[0].startswith(f"{path}: {message}")
    assert messages == [messages[0]] * 3


def _whole_and_streamed(path) -> tuple[str, str]:
    """The messages of a whole read and of a streamed pass over ``path``."""
    with pytest.raises(DataError) as whole:
        open_whole(path, **COLUMNS)
    with pytest.raises(DataError) as streamed:
        list(open_streamed(path, **COLUMNS).chunks(64))
    return str(whole.value), str(streamed.value)


def test_text_in_a_numeric_column_gets_one_message_whole_and_streamed(tmp_path):
    lines = ["x1,x2,x3,y1,w"] + [f"{i},{2 * i},{i % 7},{i + 0.5},1" for i in range(400)]
    lines[250] = "249,498,4,abc,1"
    path = tmp_path / "text.csv"
    path.write_text("\n".join(lines) + "\n")
    message = f"{path}: column 'y1' row 250 holds 'abc', not a number; correct it, or choose another target"
    assert _whole_and_streamed(path) == (message, message)


def test_a_negative_weight_gets_one_message_whole_and_streamed(tmp_path):
    columns = _columns()
    columns["w"][410] = -1.0
    path = write_table(tmp_path / "neg.parquet", columns)
    message = f"{path}: weight column 'w' row 411 is negative; weights must be >= 0"
    assert _whole_and_streamed(path) == (message, message)


def test_the_tensors_of_an_array_source_are_not_copied_when_float64():
    data = tutorial_data()
    data64 = type(data)(data.X.double(), data.y.double())
    X, _, _ = next(ArraySource(data64).chunks(10))
    assert np.shares_memory(X, data64.X.numpy())
    assert torch.equal(torch.from_numpy(X), data64.X[:10])


def test_arrays_and_dataframes_are_sources_with_their_names():
    """ArraySource.from_arrays: NumPy arrays, tensors, and pandas DataFrames/Series give the same rows (exact:
    the same float64 values, copied) and the names a DataFrame or a Series carries."""
    import pandas as pd
    import torch

    from torchlinreg.data import ArraySource

    rng = np.random.default_rng(31)
    X = rng.standard_normal((250, 2))
    y = X @ np.array([2.0, -1.0]) + 0.5 + 0.1 * rng.standard_normal(250)
    w = rng.uniform(0.5, 2.0, 250)
    frame = pd.DataFrame({"a": X[:, 0], "b": X[:, 1], "target": y, "weight": w})
    from_frame = ArraySource.from_arrays(frame[["a", "b"]], frame["target"], frame["weight"])
    assert (from_frame.feature_names, from_frame.target_names, from_frame.weight_name) == (("a", "b"), ("target",),
                                                                                           "weight")
    from_numpy = ArraySource.from_arrays(X, y, w)
    assert (from_numpy.feature_names, from_numpy.target_names) == (("x1", "x2"), ("y",))
    from_tensor = ArraySource.from_arrays(torch.from_numpy(X), torch.from_numpy(y), w, feature_names=["a", "b"])
    for source in (from_frame, from_tensor):
        for (Xa, ya, wa), (Xb, yb, wb) in zip(source.chunks(100), from_numpy.chunks(100)):
            np.testing.assert_array_equal(Xa, Xb)
            np.testing.assert_array_equal(ya, yb)
            np.testing.assert_array_equal(wa, wb)
    X[0, 0] = 99.0  # the source holds its own copy
    assert next(from_numpy.chunks(10))[0][0, 0] != 99.0
    with pytest.raises(ValueError, match="X must be 1-D or 2-D"):
        ArraySource.from_arrays(np.zeros((2, 2, 2)), np.zeros(2))
