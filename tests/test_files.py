import csv
import os
import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from torchlinreg.errors import DataError, OutputError
from torchlinreg.formats import SUPPORTED_SUFFIXES, WRITABLE_SUFFIXES, read_dataset, write_table

EDGE_FLOATS = [5e-324, -5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, -1.7976931348623157e308,
               0.1, 1 / 3, 1e22, 1e-300, 123456789.125, -0.0]


def random_floats(rng, n):
    """Finite float64 values from random bit patterns (every magnitude, subnormals included), then the edge cases."""
    bits = rng.integers(0, 2**64, size=4 * n, dtype=np.uint64).view(np.float64)
    values = np.concatenate([bits[np.isfinite(bits)][: n - len(EDGE_FLOATS)], EDGE_FLOATS])
    assert len(values) == n
    return values


def same_bits(tensor, array):
    return np.array_equal(tensor.numpy().view(np.uint64), np.asarray(array, np.float64).view(np.uint64))


def write_csv_by_hand(path, header, rows, delimiter=","):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, delimiter=delimiter, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path


def expect_error(path, match, **kwargs):
    """read_dataset fails with a DataError: one line, starting with the file's name, no pyarrow traceback."""
    with pytest.raises(DataError, match=match) as info:
        read_dataset(path, **kwargs)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__ or info.value.__context__ is None
    return message


# ---- reading --------------------------------------------------------------------------------------

def test_csv_values_are_the_files_exactly(tmp_path):
    rng = np.random.default_rng(0)
    values = random_floats(rng, 40).reshape(10, 4)  # (n, 3 features + target)
    rows = [[repr(float(v)) for v in row] for row in values]  # Python's shortest exact text
    path = write_csv_by_hand(tmp_path / "data.csv", ["a", "b", "c", "y"], rows)
    data = read_dataset(path)
    assert data.X.dtype == torch.float64 and data.y.dtype == torch.float64
    assert data.X.shape == (10, 3) and data.y.shape == (10, 1)
    assert same_bits(data.X, values[:, :3]) and same_bits(data.y, values[:, 3:])
    assert data.feature_names == ("a", "b", "c") and data.target_names == ("y",)


def test_default_target_is_last_column_and_text_columns_are_skipped(tmp_path):
    path = tmp_path / "mixed.csv"
    path.write_text("id,city,a,flag,b,y\n1,Oslo,0.5,true,7,10.25\n2,Rome,-1.5,false,8,11\n3,Lima,2,true,9,-12.5\n")
    data = read_dataset(path)
    assert data.feature_names == ("id", "a", "flag", "b") and data.target_names == ("y",)
    assert torch.equal(data.X, torch.tensor([[1, 0.5, 1, 7], [2, -1.5, 0, 8], [3, 2, 1, 9]], dtype=torch.float64))
    assert torch.equal(data.y, torch.tensor([[10.25], [11], [-12.5]], dtype=torch.float64))


def test_explicit_columns_keep_the_given_order_and_several_targets(tmp_path):
    values = np.arange(15.0).reshape(5, 3) / 4
    path = write_csv_by_hand(tmp_path / "d.csv", ["a", "b", "c"], values.tolist())
    data = read_dataset(path, features=["c", "a"], target=["b"])
    assert data.feature_names == ("c", "a") and torch.equal(data.X, torch.from_numpy(values[:, [2, 0]]))
    two = read_dataset(path, features=["b"], target=["c", "a"])
    assert two.target_names == ("c", "a") and two.y.shape == (5, 2)
    assert torch.equal(two.y, torch.from_numpy(values[:, [2, 0]]))
    only_target = read_dataset(path, target="a")  # one name as a string; features default to the others
    assert only_target.feature_names == ("b", "c") and torch.equal(only_target.y, torch.from_numpy(values[:, [0]]))


def test_tsv(tmp_path):
    path = write_csv_by_hand(tmp_path / "d.tsv", ["x, in cm", "y"], [["1.5", "2"], ["3", "-4.25"]], delimiter="\t")
    data = read_dataset(path)
    assert data.feature_names == ("x, in cm",)
    assert torch.equal(data.X, torch.tensor([[1.5], [3]], dtype=torch.float64))
    assert torch.equal(data.y, torch.tensor([[2], [-4.25]], dtype=torch.float64))


@pytest.mark.parametrize("suffix", [".parquet", ".pq"])
def test_parquet_written_by_pyarrow(tmp_path, suffix):
    rng = np.random.default_rng(1)
    n = 30
    f64, f32 = random_floats(rng, n), rng.standard_normal(n).astype(np.float32)
    i32, flags, target = rng.integers(-9, 9, n, dtype=np.int32), rng.random(n) < 0.5, rng.standard_normal(n)
    names = [f"r{i}" for i in range(n)]
    table = pa.table({"f64": f64, "name": names, "f32": f32, "i32": i32, "flag": flags, "t": target})
    path = tmp_path / f"d{suffix}"
    pq.write_table(table, path, row_group_size=7)
    data = read_dataset(path)
    assert data.feature_names == ("f64", "f32", "i32", "flag") and data.target_names == ("t",)
    expected = np.column_stack([f64, f32.astype(np.float64), i32.astype(np.float64), flags.astype(np.float64)])
    assert same_bits(data.X, expected) and same_bits(data.y, target[:, None])


def test_npy_columns_are_c0_c1_and_the_target_is_last(tmp_path):
    values = random_floats(np.random.default_rng(2), 12).reshape(4, 3)
    np.save(tmp_path / "d.npy", values)
    data = read_dataset(tmp_path / "d.npy")
    assert data.feature_names == ("c1", "c2") and data.target_names == ("c3",)
    assert same_bits(data.X, values[:, :2]) and same_bits(data.y, values[:, 2:])
    picked = read_dataset(tmp_path / "d.npy", features=["c3"], target=["c1"])
    assert same_bits(picked.X, values[:, [2]]) and same_bits(picked.y, values[:, [0]])


@pytest.mark.parametrize("x_shape, y_shape, features, targets", [
    ((5, 2), (5,), ("x1", "x2"), ("y",)),
    ((5,), (5, 1), ("x",), ("y",)),
    ((5, 3), (5, 2), ("x1", "x2", "x3"), ("y1", "y2")),
])
def test_npz_X_and_y(tmp_path, x_shape, y_shape, features, targets):
    rng = np.random.default_rng(3)
    X, y = rng.standard_normal(x_shape), rng.integers(0, 9, y_shape)
    np.savez(tmp_path / "d.npz", X=X, y=y, other=np.ones(3))
    data = read_dataset(tmp_path / "d.npz")
    assert data.feature_names == features and data.target_names == targets
    assert same_bits(data.X, X.reshape(5, -1)) and same_bits(data.y, y.reshape(5, -1))


def test_npz_names_select_columns(tmp_path):
    X, y = np.arange(12.0).reshape(4, 3), np.arange(4.0) + 0.5
    np.savez(tmp_path / "d.npz", X=X, y=y)
    data = read_dataset(tmp_path / "d.npz", features=["x3", "y"], target="x1")
    assert torch.equal(data.X, torch.from_numpy(np.column_stack([X[:, 2], y])))
    assert torch.equal(data.y, torch.from_numpy(X[:, [0]]))


def test_npz_with_one_2d_array_reads_like_npy(tmp_path):
    values = np.arange(8.0).reshape(4, 2)
    np.savez(tmp_path / "d.npz", table=values, weights=np.ones(4))
    data = read_dataset(tmp_path / "d.npz")
    assert data.feature_names == ("c1",) and data.target_names == ("c2",)
    assert torch.equal(data.X, torch.from_numpy(values[:, :1])) and torch.equal(data.y, torch.from_numpy(values[:, 1:]))


def test_dtype_float32(tmp_path):
    values = np.random.default_rng(4).standard_normal((6, 2))
    np.save(tmp_path / "d.npy", values)
    data = read_dataset(tmp_path / "d.npy", dtype=torch.float32)
    assert data.X.dtype == torch.float32 and torch.equal(data.X, torch.from_numpy(values[:, :1]).float())


def test_dtype_must_be_floating_point(tmp_path):
    with pytest.raises(ValueError, match="floating-point"):
        read_dataset(tmp_path / "d.csv", dtype=torch.int64)


# ---- writing --------------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", WRITABLE_SUFFIXES)
def test_write_then_read_is_bit_exact(tmp_path, suffix):
    rng = np.random.default_rng(5)
    a, b, y = random_floats(rng, 200), random_floats(rng, 200)[::-1].copy(), torch.from_numpy(rng.standard_normal(200))
    path = write_table(tmp_path / f"out{suffix}", {"a": a, "b": b.tolist(), "y": y})
    assert path == tmp_path / f"out{suffix}"
    data = read_dataset(path)
    assert data.feature_names == ("a", "b")
    assert same_bits(data.X, np.column_stack([a, b])) and same_bits(data.y, y.numpy()[:, None])
    assert sorted(os.listdir(tmp_path)) == [f"out{suffix}"]  # no temporary file left beside it


def significant_digits(text):
    mantissa = text.lower().lstrip("-").split("e")[0].replace(".", "")
    return mantissa.strip("0")


def test_csv_floats_are_written_as_shortest_exact_text(tmp_path):
    values = random_floats(np.random.default_rng(6), 300)
    write_table(tmp_path / "out.csv", {"v": values})
    with open(tmp_path / "out.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["v"]
    texts = [row[0] for row in rows[1:]]
    assert np.array_equal(np.array([float(t) for t in texts]).view(np.uint64), values.view(np.uint64))
    # as few digits as Python's repr, which is the shortest text that reads back to the same float
    assert [len(significant_digits(t)) for t in texts] == [len(significant_digits(repr(float(v)))) for v in values]


def test_existing_file_is_kept_unless_forced(tmp_path):
    path = write_table(tmp_path / "out.csv", {"a": [1.5]})
    with pytest.raises(OutputError, match=r"out\.csv: already exists; pass force=True"):
        write_table(path, {"a": [2.5]})
    assert path.read_text() == '"a"\n1.5\n'
    write_table(path, {"a": [2.5]}, force=True)
    assert path.read_text() == '"a"\n2.5\n'
    assert os.listdir(tmp_path) == ["out.csv"]


def test_write_unknown_extension(tmp_path):
    with pytest.raises(OutputError, match=re.escape("use one of .csv, .tsv, .parquet, .pq")):
        write_table(tmp_path / "out.xlsx", {"a": [1.0]})
    assert os.listdir(tmp_path) == []


def test_write_into_missing_folder_or_over_a_folder(tmp_path):
    with pytest.raises(OutputError, match="does not exist"):
        write_table(tmp_path / "nowhere" / "out.csv", {"a": [1.0]})
    (tmp_path / "d.csv").mkdir()
    with pytest.raises(OutputError, match="is a folder"):
        write_table(tmp_path / "d.csv", {"a": [1.0]}, force=True)


@pytest.mark.parametrize("columns, match", [
    ({}, "non-empty mapping"),
    ({"a": [1.0, 2.0], "b": [1.0]}, "'b' has 1 values but 'a' has 2"),
    ({"a": np.ones((2, 2))}, "must be 1-D"),
    ({"a": ["x", "y"]}, "must hold numbers"),
])
def test_write_refuses_bad_columns(tmp_path, columns, match):
    with pytest.raises(ValueError, match=match):
        write_table(tmp_path / "out.csv", columns)
    assert os.listdir(tmp_path) == []


# ---- errors: the file -----------------------------------------------------------------------------

def test_missing_file(tmp_path):
    expect_error(tmp_path / "nope.csv", "no such file; check the path")


def test_folder(tmp_path):
    (tmp_path / "data.csv").mkdir()
    expect_error(tmp_path / "data.csv", "is a folder, not a data file")


def test_unknown_extension(tmp_path):
    (tmp_path / "data.xlsx").write_bytes(b"whatever")
    message = expect_error(tmp_path / "data.xlsx", r"cannot read '\.xlsx' files")
    assert message.endswith(", ".join(SUPPORTED_SUFFIXES))


@pytest.mark.parametrize("name", [f"empty{suffix}" for suffix in SUPPORTED_SUFFIXES])
def test_empty_file(tmp_path, name):
    (tmp_path / name).write_bytes(b"")
    expect_error(tmp_path / name, r"the file is empty \(0 bytes\)")


def test_random_bytes_in_parquet(tmp_path):
    (tmp_path / "d.parquet").write_bytes(np.random.default_rng(7).bytes(2000))
    expect_error(tmp_path / "d.parquet", "is not a readable Parquet file .*; check that it is a Parquet file")


def test_csv_text_in_parquet(tmp_path):
    (tmp_path / "d.pq").write_text("a,y\n1,2\n")
    expect_error(tmp_path / "d.pq", "is not a readable Parquet file")


def test_binary_garbage_in_csv(tmp_path):
    (tmp_path / "d.csv").write_bytes(np.random.default_rng(8).bytes(2000))
    expect_error(tmp_path / "d.csv", r"holds binary data \(a NUL byte at offset \d+\), not CSV text")


def test_parquet_named_csv(tmp_path):
    pq.write_table(pa.table({"a": [1.0], "y": [2.0]}), tmp_path / "d.csv")
    expect_error(tmp_path / "d.csv", "holds binary data")


@pytest.mark.parametrize("name, content, match", [
    ("d.npy", b"a,y\n1,2\n", r"is not a NumPy \.npy file"),
    ("d.npz", b"a,y\n1,2\n", r"is not a NumPy \.npz file \(not a zip archive\)"),
    ("d.npz", b"PK\x03\x04" + bytes(100), r"cannot be read as \.npz"),
])
def test_npy_npz_content_is_checked(tmp_path, name, content, match):
    (tmp_path / name).write_bytes(content)
    expect_error(tmp_path / name, match)


def test_npy_inside_npz(tmp_path):
    np.save(tmp_path / "d.npy", np.ones((2, 2)))
    os.replace(tmp_path / "d.npy", tmp_path / "d.npz")
    expect_error(tmp_path / "d.npz", r"not a NumPy \.npz file")


def test_blank_lines_only(tmp_path):
    (tmp_path / "d.csv").write_text("\n\n\n")
    expect_error(tmp_path / "d.csv", "only blank lines, no header")


def test_header_without_rows(tmp_path):
    (tmp_path / "d.csv").write_text("a,b,y\n")
    expect_error(tmp_path / "d.csv", "has no data rows; add rows of values")


def test_parquet_and_npy_without_rows(tmp_path):
    pq.write_table(pa.table({"a": pa.array([], pa.float64()), "y": pa.array([], pa.float64())}), tmp_path / "d.parquet")
    expect_error(tmp_path / "d.parquet", "no data rows")
    np.save(tmp_path / "d.npy", np.ones((0, 3)))
    expect_error(tmp_path / "d.npy", "no data rows")


def test_row_with_wrong_number_of_fields(tmp_path):
    (tmp_path / "d.csv").write_text('a,b,y\n1,2,3\n"two\nlines",5,6\n7,8\n9,10,11\n')
    expect_error(tmp_path / "d.csv", r"row 3 has 2 field\(s\) but the header has 3 \(the row reads '7,8'\)")


def test_header_not_utf8(tmp_path):
    (tmp_path / "d.csv").write_bytes("prix_\u20ac,y\n1,2\n".encode("cp1252"))
    expect_error(tmp_path / "d.csv", "header is not UTF-8 text; save the file as UTF-8")


def test_values_separated_by_another_delimiter(tmp_path):
    (tmp_path / "d.csv").write_text("a;b;y\n1;2;3\n")
    expect_error(tmp_path / "d.csv", "has one column, 'a;b;y'; its values seem separated by ';', not ','")


# ---- errors: the columns --------------------------------------------------------------------------

@pytest.fixture
def simple_csv(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("name,price,size,y\nA,1,2,3\nB,4,5,6\nC,7,8,9\n")
    return path


def test_unknown_column_names_the_columns(simple_csv):
    message = expect_error(simple_csv, "no column 'prise'; did you mean 'price'", target=["prise"])
    assert message.endswith("the columns are 'name', 'price', 'size', 'y'")
    expect_error(simple_csv, "no column 'weight'; the columns are 'name'", features=["price", "weight"])


def test_duplicate_column_names(tmp_path):
    (tmp_path / "d.csv").write_text("a,b,a,y\n1,2,3,4\n")
    expect_error(tmp_path / "d.csv", r"column name 'a' appears twice \(columns 1 and 3\); rename one")
    pq.write_table(pa.table([pa.array([1.0]), pa.array([2.0])], names=["y", "y"]), tmp_path / "d.parquet")
    expect_error(tmp_path / "d.parquet", "column name 'y' appears twice")


def test_text_in_a_chosen_column_names_row_and_value(tmp_path):
    (tmp_path / "d.csv").write_text("x,y\n1,1\n2,2\nabc,3\n4,4\n")
    expect_error(tmp_path / "d.csv", "column 'x' row 3 holds 'abc', not a number; correct it, or leave the column out",
                 features=["x"])


def test_text_in_the_default_target(simple_csv):
    simple_csv.write_text("a,label\n1,2\n2,cat\n")
    expect_error(simple_csv, "column 'label' row 2 holds 'cat', not a number; .*pass target")


def test_text_column_in_parquet(tmp_path):
    pq.write_table(pa.table({"a": ["1.5", "2", "n/a?"], "y": [1.0, 2.0, 3.0]}), tmp_path / "d.parquet")
    expect_error(tmp_path / "d.parquet", r"column 'a' row 3 holds 'n/a\?', not a number", features=["a"])


@pytest.mark.parametrize("cell", ["", "NA", "null"])
def test_missing_value_in_csv(tmp_path, cell):
    (tmp_path / "d.csv").write_text(f"price,y\n1,2\n{cell},3\n")
    expect_error(tmp_path / "d.csv", "column 'price' has a missing value in row 2; fill or remove that row")


def test_missing_value_in_a_later_parquet_row_group(tmp_path):
    table = pa.table({"a": [1.0, 2.0, 3.0, 4.0, None], "y": [1.0] * 5})
    pq.write_table(table, tmp_path / "d.parquet", row_group_size=2)  # the null is in the third row group
    expect_error(tmp_path / "d.parquet", "column 'a' has a missing value in row 5")


@pytest.mark.parametrize("cell, shown", [
    ("nan", "NaN"), ("NaN", "NaN"), ("inf", "inf"), ("-inf", "-inf"), ("1e999", "inf"),
])
def test_non_finite_value_in_csv(tmp_path, cell, shown):
    (tmp_path / "d.csv").write_text(f"a,y\n1,2\n3,4\n5,{cell}\n")
    expect_error(tmp_path / "d.csv", f"column 'y' holds {shown} in row 3; replace it with a number or remove that row")


def test_non_finite_value_in_npy(tmp_path):
    values = np.ones((4, 3))
    values[2, 1] = np.nan
    np.save(tmp_path / "d.npy", values)
    expect_error(tmp_path / "d.npy", "column 'c2' holds NaN in row 3")


def test_too_large_for_float32(tmp_path):
    (tmp_path / "d.csv").write_text("a,y\n1,2\n1e300,3\n")
    expect_error(tmp_path / "d.csv", r"column 'a' row 2 holds 1e\+300, too large for torch.float32",
                 dtype=torch.float32)


def test_target_also_a_feature(simple_csv):
    expect_error(simple_csv, "column 'size' is both a feature and the target; list it in only one",
                 features=["price", "size"], target="size")
    expect_error(simple_csv, r"column 'y' is both a feature and the target \(by default the last column\)",
                 features=["y"])


def test_no_feature_columns_left(tmp_path):
    (tmp_path / "d.csv").write_text("name,y\nA,1\n")
    expect_error(tmp_path / "d.csv", "no numeric feature columns besides the target 'y'")


def test_column_listed_twice(simple_csv):
    expect_error(simple_csv, "feature column 'price' is listed twice", features=["price", "price"])


def test_empty_or_malformed_column_lists(simple_csv):
    expect_error(simple_csv, "no feature column given; name at least one", features=[])
    with pytest.raises(ValueError, match="a name or a sequence of names"):
        read_dataset(simple_csv, target=3)


# ---- errors: NumPy arrays -------------------------------------------------------------------------

def test_npy_must_be_2d(tmp_path):
    np.save(tmp_path / "d.npy", np.arange(5.0))
    expect_error(tmp_path / "d.npy", r"holds an array of shape \(5,\); save a 2-D array")


def test_npy_objects_are_never_unpickled(tmp_path):
    np.save(tmp_path / "d.npy", np.array([[{"a": 1}, 2]], dtype=object), allow_pickle=True)
    expect_error(tmp_path / "d.npy", "holds Python objects, which are never unpickled")


def test_npy_of_text(tmp_path):
    np.save(tmp_path / "d.npy", np.array([["a", "b"], ["c", "d"]]))
    expect_error(tmp_path / "d.npy", "holds <U1 values, not real numbers")


def test_npz_without_X_and_y(tmp_path):
    np.savez(tmp_path / "d.npz", a=np.ones(3), b=np.ones(3))
    expect_error(tmp_path / "d.npz", r"needs arrays 'X' and 'y', or a single 2-D array, but holds 'a', 'b'")


def test_npz_rows_differ(tmp_path):
    np.savez(tmp_path / "d.npz", X=np.ones((3, 2)), y=np.ones(2))
    expect_error(tmp_path / "d.npz", "array 'X' has 3 rows but 'y' has 2")

