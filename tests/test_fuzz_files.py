"""Fuzzed data files through the command: ``fit``, ``solve`` and ``predict`` either answer the
exact solution of the values in the file or refuse with one line, and leave no partial file.

Hypothesis writes CSV/TSV files (strings in numeric columns, empty cells, quoted fields, other
delimiters, a byte-order mark, very long lines and headers, huge and tiny magnitudes, duplicate
and empty column names), Parquet files (every column type, nulls, NaN, row groups) and damaged
or random bytes under every supported extension. A successful answer is compared with the exact
rational least-squares solution of the values the test itself parses from the file (Python's
``csv`` module, or the values it put in the Parquet table); see fuzzing.py for the profiles, the
seed and the checks.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import shutil
import sys
import tempfile
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import strategies as st

from fuzzing import (SMALLEST_NORMAL, _norm, assert_clean_stderr, assert_matches_reference, assert_refused,
                     files_under, least_squares_reference, profiles, run_cli, run_property)
from torchlinreg import load_model
from torchlinreg.formats import SUPPORTED_SUFFIXES
from torchlinreg.persistence import SavedModel, save_model

LIMIT = 1e150  # solve.MAX_MAGNITUDE: larger values are refused (their squares overflow)
# Non-zero values are drawn no smaller than 1 / LIMIT, so that every exact solution fits float64
# (|y / x| up to 1e300) and can be judged here; smaller ones: test_edge_cases.py.
DELIMITER = {".csv": ",", ".tsv": "\t"}
WIDE = 1_100_000  # characters: a header longer than pyarrow's 1 MiB read block
csv.field_size_limit(sys.maxsize)  # the reference parser reads the very long cells too


# ---- what goes into a file ---------------------------------------------------------------------

NAMES = st.one_of(
    st.sampled_from(["x", "y", "a", "b", "", " ", "x y", "a,b", "a;b", 'q"uote', "tab\there", "new\nline", "ünï",
                     "1", "nan", "NA", "-x", "#c", "é" * 70]),
    st.text(st.characters(codec="utf-8", exclude_characters="\ufeff"), max_size=6),
)

FAULTS = ["", " ", "NA", "N/A", "null", "nan", "NaN", "inf", "-inf", "Infinity", "1e999", "-1e400", "abc", "1,5",
          "1 000", "--1", "1e", "e5", "½", "١٢", "1_000", "0x1F", "true", "False", "$3", "3%", "2020-01-01",
          "12:30:00", "\x00", "\x01", '"', "'1'", "1..2", "+-1"]


def _floats(low=None, high=None, width=64):
    """Finite floats, none of them non-zero below 1e-150 (see LIMIT)."""
    return st.floats(low, high, width=width, allow_nan=False, allow_infinity=False).map(
        lambda v: 0.0 if abs(v) < 1e-150 else v)


@st.composite
def number_text(draw) -> str:
    """The text of a number as people and programs write it, including extreme and very long ones."""
    kind = draw(st.sampled_from(["int", "int", "float", "float", "big", "huge", "tiny", "long"]))
    if kind == "int":
        text = str(draw(st.integers(-1000, 1000)))
        text = draw(st.sampled_from([text, "+" + text.lstrip("-") if not text.startswith("-") else text,
                                     "00" + text if not text.startswith("-") else text]))
    elif kind == "float":
        value = draw(_floats(-1e6, 1e6))
        text = draw(st.sampled_from([repr(value), f"{value:.3f}", f"{value:.6e}", f"{value:E}"]))
    elif kind == "big":
        text = str(draw(st.integers(-10**25, 10**25)))
    elif kind == "huge":
        exponent = draw(st.sampled_from([13, 100, 149, 150, 151, 200, 300, 308]))  # from 151 on: refused
        text = f"{draw(st.sampled_from(['', '-']))}{draw(st.integers(1, 9))}e{exponent}"
    elif kind == "tiny":
        # not below 1e-150 (see LIMIT), but 1e-400 reads as 0
        text = draw(st.sampled_from(["1e-3", "-2.5e-13", "1e-100", "1e-150", "-3.5e-149", "1e-400"]))
    else:  # a very long line: hundreds of thousands of digits
        digits = draw(st.integers(1, 300_000))
        zeros = digits if digits < 149 else max(digits, 400)  # above 1e-150, or read as 0 (see LIMIT)
        text = draw(st.sampled_from(["0." + "0" * zeros + "1", "1." + "3" * digits, "1" + "0" * min(digits, 400)]))
    return draw(st.sampled_from([text, text, f" {text}", f"{text} "]))


def reference_number(text: str) -> float:
    """What a number cell reads as, parsed here by Python (plus the spellings pyarrow also accepts)."""
    s = text.strip(" \t")
    if s in ("true", "True", "TRUE"):
        return 1.0
    if s in ("false", "False", "FALSE"):
        return 0.0
    if re.fullmatch(r"0[xX][0-9a-fA-F]+", s):  # pyarrow reads hexadecimal integers
        return float(int(s, 16))
    return float(s)


def _is_fine(text: str) -> bool:
    """A number cell the tool must accept: finite and small enough to square."""
    value = reference_number(text)
    return math.isfinite(value) and abs(value) <= LIMIT


class TextFile:
    """A drawn text file; ``expected_ok``: well-formed and numeric, so the command must answer."""

    def __init__(self, suffix: str, content: bytes, expected_ok: bool, notes: list):
        self.suffix, self.content, self.expected_ok, self.notes = suffix, content, expected_ok, notes

    def __repr__(self) -> str:  # what hypothesis prints for a failing case: the start of the file
        return f"TextFile({self.suffix}, ok={self.expected_ok}, {self.notes}, {len(self.content)} bytes: " \
               f"{self.content[:600]!r})"


_PLAIN_NAMES = NAMES.filter(lambda name: not any(ch in name for ch in "\n\r\x00"))
HEADERS = st.one_of(  # mostly usable headers (unique names, odd as they may be), some with repeats
    st.integers(2, 5).flatmap(lambda n: st.lists(_PLAIN_NAMES, min_size=n, max_size=n, unique=True)),
    st.integers(1, 5).flatmap(lambda n: st.lists(NAMES, min_size=n, max_size=n)))


@st.composite
def text_files(draw, headers=HEADERS) -> TextFile:
    # Half the files are meant to be read (their quoting, BOM, line ends, magnitudes and long
    # lines still vary); the others may break any rule.
    clean = draw(st.booleans())
    suffix = draw(st.sampled_from([".csv", ".csv", ".tsv"]))
    delimiter = DELIMITER[suffix] if clean else draw(st.sampled_from([DELIMITER[suffix], ",", "\t", ";", "|"]))
    names = list(draw(headers))
    n_rows, n_cols = draw(st.integers(1 if clean else 0, 8)), len(names)
    kinds = draw(st.lists(st.sampled_from(["numeric"] if clean else ["numeric", "faulty", "text", "empty", "mixed"]),
                          min_size=n_cols, max_size=n_cols))
    numbers_text = number_text().filter(_is_fine) if clean else number_text()
    columns = []
    for kind in kinds:
        numbers = draw(st.lists(numbers_text, min_size=n_rows, max_size=n_rows))
        if draw(st.booleans()):  # a column of one magnitude, as in real data: 1e13 next to 1e-3
            exponent = draw(st.sampled_from([3, -3, 13, -13, 100, -100, 147, -140]))
            mantissas = st.one_of(st.integers(-999, 999).map(str), _floats(-999, 999).map(lambda m: f"{m:.6f}"))
            numbers = [f"{m}e{exponent}" for m in draw(st.lists(mantissas, min_size=n_rows, max_size=n_rows))]
        if kind == "faulty" and n_rows:
            for i in draw(st.lists(st.integers(0, n_rows - 1), min_size=1, max_size=2)):
                numbers[i] = draw(st.sampled_from(FAULTS))
        elif kind == "text":
            numbers = draw(st.lists(st.one_of(st.sampled_from(FAULTS), st.text(max_size=5)),
                                    min_size=n_rows, max_size=n_rows))
        elif kind == "empty":
            numbers = [""] * n_rows
        elif kind == "mixed":
            numbers = draw(st.lists(st.one_of(number_text(), st.sampled_from(FAULTS), st.text(max_size=5)),
                                    min_size=n_rows, max_size=n_rows))
        columns.append(numbers)
    wide = draw(st.integers(0, 39)) == 0  # a header past the read block: a wide file
    if wide:
        names.append("w" * WIDE)
        columns.insert(0, draw(st.lists(numbers_text, min_size=n_rows, max_size=n_rows)))
        names.insert(0, names.pop())
        kinds.insert(0, "numeric")
    rows = [list(r) for r in zip(*columns)] if columns else []

    quoting = draw(st.sampled_from(["minimal", "all"] if clean else ["minimal", "all", "unsafe"]))
    ragged = not clean and draw(st.integers(0, 3)) == 0 and n_rows > 0
    if ragged:
        i = draw(st.integers(0, n_rows - 1))
        rows[i] = rows[i][:-1] if draw(st.booleans()) else rows[i] + ["1"]
    eol = draw(st.sampled_from(["\n", "\n", "\r\n", "\r"]))
    bom = draw(st.booleans())
    blank = draw(st.booleans())

    def field_text(s: str) -> str:
        special = delimiter in s or "\n" in s or "\r" in s
        if quoting == "all" or '"' in s or (special and quoting == "minimal"):
            return '"' + s.replace('"', '""') + '"'
        return s

    lines = [delimiter.join(field_text(s) for s in names)] + [delimiter.join(field_text(s) for s in r) for r in rows]
    if blank and len(lines) > 1:
        lines.insert(draw(st.integers(1, len(lines))), "")
    text = eol.join(lines) + (eol if draw(st.booleans()) else "")
    content = ("\ufeff" if bom else "").encode() + text.encode("utf-8", "surrogatepass")

    cells = names + [c for r in rows for c in r]
    expected_ok = (delimiter == DELIMITER[suffix] and not ragged and n_rows >= 1 and len(names) >= 2
                   and len(set(names)) == len(names) and all(k == "numeric" for k in kinds)
                   and all(_is_fine(c) for col in columns for c in col)
                   and not any(ch in s for s in names for ch in "\n\r\x00")
                   and (quoting != "unsafe" or not any(delimiter in s or "\n" in s or "\r" in s for s in cells)))
    notes = [f"delimiter {delimiter!r}", f"quoting {quoting}", f"kinds {kinds}", f"eol {eol!r}"]
    notes += ["BOM"] * bom + ["ragged"] * ragged + ["wide header"] * wide
    return TextFile(suffix, content, expected_ok, notes)


def parse_text(content: bytes, delimiter: str) -> tuple[list[str], list[list[str]]]:
    """The header and rows as Python's csv module reads them (blank lines skipped, as pyarrow does)."""
    text = content.decode("utf-8", "surrogateescape")
    text = text[1:] if text.startswith("\ufeff") else text
    rows = [r for r in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter) if r]
    return rows[0], rows[1:]


class ParquetFile:
    """A drawn table, the Python values in each column, and whether the command must answer."""

    def __init__(self, table: pa.Table, values: list, expected_ok: bool, row_group_size: int):
        self.table, self.values, self.expected_ok, self.row_group_size = table, values, expected_ok, row_group_size

    def __repr__(self) -> str:
        return (f"ParquetFile(ok={self.expected_ok}, row_group_size={self.row_group_size}, "
                f"schema={self.table.schema}, values={repr(self.values)[:800]})")


PARQUET_KINDS = {  # kind: (strategy of one value, pyarrow type, numeric)
    "float64": (st.one_of(_floats(), st.sampled_from([1e150, -1e151, 1e300, 1e-150, 1e13, 1e-3, -0.0])),
                pa.float64(), True),
    "float64-bad": (st.one_of(st.floats(), st.none()), pa.float64(), True),
    "float32": (_floats(width=32), pa.float32(), True),
    "float16": (_floats(width=16), pa.float16(), True),
    "int64": (st.integers(-2**63, 2**63 - 1), pa.int64(), True),
    "int8": (st.integers(-128, 127), pa.int8(), True),
    "uint64": (st.integers(0, 2**64 - 1), pa.uint64(), True),
    "bool": (st.booleans(), pa.bool_(), True),
    "decimal": (st.integers(-10**37, 10**37).map(lambda i: Decimal(i).scaleb(-5)), pa.decimal128(38, 5), True),
    "string-number": (number_text(), pa.string(), False),
    "string": (st.one_of(st.text(max_size=5), st.sampled_from(FAULTS)), pa.string(), False),
    "large-string": (st.one_of(number_text(), st.sampled_from(FAULTS), st.none()), pa.large_string(), False),
    "binary": (st.binary(max_size=4), pa.binary(), False),
    "null": (st.none(), pa.null(), False),
    "timestamp": (st.integers(0, 2**40), pa.timestamp("s"), False),
    "list": (st.lists(st.integers(-5, 5), max_size=2), pa.list_(pa.int64()), False),
}


@st.composite
def parquet_files(draw) -> ParquetFile:
    clean = draw(st.booleans())  # half of them numeric, unique names, values in range: they must be read
    n_rows, n_cols = draw(st.integers(1 if clean else 0, 8)), draw(st.integers(2 if clean else 1, 5))
    names = draw(st.lists(NAMES, min_size=n_cols, max_size=n_cols, unique=clean))
    numeric = ["float64"] * 6 + ["int64", "int8", "uint64", "float32", "float16", "bool", "decimal"]
    kinds = draw(st.lists(st.sampled_from(numeric if clean else numeric + [
        "float64-bad", "string-number", "string", "large-string", "binary", "null", "timestamp", "list"]),
        min_size=n_cols, max_size=n_cols))
    arrays, values = [], []
    for kind in kinds:
        strategy, kind_type, _ = PARQUET_KINDS[kind]
        if clean:
            strategy = strategy.filter(lambda v: abs(float(v)) <= LIMIT)
        column = draw(st.lists(strategy, min_size=n_rows, max_size=n_rows))
        arrays.append(pa.array(column, type=kind_type))
        values.append(column)
    table = pa.Table.from_arrays(arrays, names=names)
    fine = all(PARQUET_KINDS[k][2] and all(v is not None and math.isfinite(float(v)) and abs(float(v)) <= LIMIT
                                           for v in col) for k, col in zip(kinds, values))
    expected_ok = fine and n_rows >= 1 and n_cols >= 2 and len(set(names)) == len(names)
    return ParquetFile(table, values, expected_ok, draw(st.integers(1, max(n_rows, 1))))


def reference_value(value) -> float:
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    if isinstance(value, str):
        return reference_number(value)
    return float(value)  # Decimal, int, bool and float: correctly rounded


# ---- running a command on a file and judging the answer -----------------------------------------

def reference_columns(path: Path, names: list[str], parquet_values=None) -> np.ndarray:
    """The named columns as the test reads the file, as a float64 (n, len(names)) array."""
    suffix = path.suffix
    if parquet_values is not None:
        header, columns = parquet_values
        picked = [columns[header.index(name)] for name in names]
        assert all(header.count(name) == 1 for name in names)
        values = np.array([[reference_value(v) for v in col] for col in picked], dtype=np.float64)
        return values.T.reshape(-1, len(names))
    if suffix in DELIMITER:
        header, rows = parse_text(path.read_bytes(), DELIMITER[suffix])
        assert all(header.count(name) == 1 for name in names), (header, names)
        assert all(len(r) == len(header) for r in rows), "the command read rows the csv module reads differently"
        index = [header.index(name) for name in names]
        values = np.array([[reference_number(r[i]) for i in index] for r in rows], dtype=np.float64)
        return values.reshape(-1, len(names))
    if suffix in (".parquet", ".pq"):
        table = pq.read_table(path)  # damaged files: the values pyarrow decodes are the file's values
        return np.array([[reference_value(v) for v in table.column(name).to_pylist()] for name in names],
                        dtype=np.float64).T.reshape(-1, len(names))
    arrays = np.load(path, allow_pickle=False)
    if suffix == ".npy":
        return np.column_stack([arrays[:, int(name[1:]) - 1] for name in names]).astype(np.float64)
    if {"X", "y"} <= set(arrays.files):
        def col(name):
            key, a = ("X", arrays["X"]) if name.startswith("x") else ("y", arrays["y"])
            a = a[:, None] if a.ndim == 1 else a
            return a[:, int(name[1:]) - 1 if len(name) > 1 else 0]
        return np.column_stack([col(name) for name in names]).astype(np.float64)
    [only] = [arrays[k] for k in arrays.files if arrays[k].ndim == 2]
    return np.column_stack([only[:, int(name[1:]) - 1] for name in names]).astype(np.float64)


def check_fit_or_solve(root: Path, command: str, name: str, content: bytes | None, expected_ok: bool,
                       *, table: pa.Table | None = None, row_group_size: int = 0, parquet_values=None) -> None:
    work = Path(tempfile.mkdtemp(dir=root))
    try:
        path = work / name
        if table is not None:
            pq.write_table(table, path, row_group_size=row_group_size)
        else:
            path.write_bytes(content)
        out_dir, model = work / "out", work / "model"
        if command == "solve":
            code, out, err = run_cli("solve", path, "--json")
        else:
            code, out, err = run_cli("fit", path, "--out", out_dir, "--no-plots", "--epochs", "5", "--quiet",
                                     "--save", model)
        context = f"torchlinreg {command} {name}: exit {code}\nstderr: {err[:3000]}"
        if code not in (0, 3):
            message = assert_refused(code, out, err)
            # The solver refuses a solution beyond float64's range (values far below 1e-150 next to
            # ordinary ones), naming the column but not the file: right exactly when it overflows.
            overflows = (expected_ok or str(path) not in message) and exact_solution_overflows(path, parquet_values)
            assert not expected_ok or overflows, "a well-formed file was refused: " + context
            assert str(path) in message or overflows, "the message does not name the file: " + context
            assert files_under(work) == [path], "a refused command left files: " + context
            return
        assert code == 0 or command == "fit", context
        if command == "solve":
            assert_clean_stderr(err)
            solution = json.loads(out)
            targets = list(solution["intercept"])
            features = list(solution["coef"][targets[0]])
            for message in solution["warnings"]:
                assert f"torchlinreg: warning: {message}" in err.splitlines(), context
        else:
            summary = json.loads((out_dir / "summary.json").read_text())
            solution, features, targets = summary["optimum"], summary["features"], summary["targets"]
        X = reference_columns(path, features, parquet_values)
        Y = reference_columns(path, targets, parquet_values)
        if command == "fit":
            check_fit_outputs(work, code, out, err, summary, model)
        assert_matches_reference(solution, X, Y, features, targets, context)
        if expected_ok and parquet_values is None and path.suffix in DELIMITER:
            header, _ = parse_text(path.read_bytes(), DELIMITER[path.suffix])
            assert (features, targets) == (header[:-1], header[-1:]), context
    finally:
        shutil.rmtree(work, ignore_errors=True)


def default_columns(path: Path, parquet_values=None) -> tuple[list[str], list[str]]:
    """The features and targets the command takes by default: the last column is the target
    (``.npy`` columns ``c1, c2, ...``; ``.npz`` arrays ``X`` and ``y``, see ``read_dataset``)."""
    if parquet_values is not None:
        header = list(parquet_values[0])
    elif path.suffix in DELIMITER:
        header, _ = parse_text(path.read_bytes(), DELIMITER[path.suffix])
    elif path.suffix in (".parquet", ".pq"):
        header = pq.read_schema(path).names
    elif path.suffix == ".npy":
        header = [f"c{j + 1}" for j in range(np.load(path, allow_pickle=False).shape[1])]
    else:
        with np.load(path, allow_pickle=False) as arrays:
            shapes = {k: arrays[k].shape for k in arrays.files}
        if {"X", "y"} <= set(shapes):
            def names(stem, shape):
                return [stem] if len(shape) == 1 else [f"{stem}{j + 1}" for j in range(shape[1])]
            return names("x", shapes["X"]), names("y", shapes["y"])
        header = [f"c{j + 1}" for j in range(next(s for s in shapes.values() if len(s) == 2)[1])]
    return header[:-1], header[-1:]


def exact_solution_overflows(path: Path, parquet_values=None) -> bool:
    """Whether the solver rightly refuses the file's default design, naming a column but not the file:
    its exact coefficients overflow float64 (as values far below 1e-150 next to ordinary targets
    make them), or a feature or target has a norm below 2.2e-308 (only subnormal values)."""
    try:
        features, targets = default_columns(path, parquet_values)
        X, Y = reference_columns(path, features, parquet_values), reference_columns(path, targets, parquet_values)
    except Exception:  # noqa: BLE001 (a file the reference cannot read: the refusal must name it)
        return False
    if any(0 < _norm(column) < SMALLEST_NORMAL for column in [*X.T, *Y.T]):
        return True
    ref = least_squares_reference(X, Y)
    return ref.coef is None or ref.intercept is None


def check_fit_outputs(work: Path, code: int, out: str, err: str, summary: dict, model: Path):
    """A fit that ran: whole output files, finite numbers everywhere, exit 3 exactly when it diverged."""
    context = f"exit {code}\nstdout: {out[-2000:]}\nstderr: {err[:3000]}"
    assert "Traceback" not in err and "encountered in" not in err, context
    history = json.loads((work / "out" / "history.json").read_text())
    assert all(math.isfinite(r["loss"]) for r in history["records"]), context
    assert np.isfinite(summary["trained"]["weight"]).all() and np.isfinite(summary["trained"]["bias"]).all(), context
    for line in out.splitlines():  # the numbers printed: never inf or NaN (column names may be 'nan')
        fields = line.split()
        if line.startswith(("Weight:", "Bias:", "Initial weight:", "Current weight:")):
            assert re.search(r"\b(nan|inf)\b", line.lower()) is None, context
        elif line.startswith(("  weight ", "  bias", "  loss (MSE)")):  # trained, optimum, difference
            assert not {v.lower().lstrip("+-") for v in fields[-3:]} & {"nan", "inf"}, context
        elif line.startswith(("  train ", "  validation ")):  # MSE, RMSE, MAE; R² may be -inf (ŷ that far off)
            assert not {v.lower().lstrip("+-") for v in fields[-4:-1]} & {"nan", "inf"} and fields[-1] != "nan", context
    if code == 3:
        assert summary["status"] == "diverged" and "training diverged" in err, context
        assert "--lr" in err or "--standardize" in err, context  # the fix
    else:
        assert summary["status"] != "diverged", context
    saved = load_model(model)
    assert np.array_equal(saved.weight, summary["trained"]["weight"]) and np.array_equal(saved.bias, summary["trained"]["bias"]), context
    assert not [p for p in files_under(work) if p.name.startswith(".")], "temporary files left: " + context


# ---- the properties ------------------------------------------------------------------------------

@profiles(slow_examples=500)
@pytest.mark.parametrize("command", ["solve", "fit"])
def test_text_files(tmp_path, profile, command):
    def check(case: TextFile):
        check_fit_or_solve(tmp_path, command, f"data{case.suffix}", case.content, case.expected_ok)

    headers = st.one_of(st.sampled_from([["a", "b"], ["b", "a", "y"], ["a", "x", "b"], ["a"], ["a", "b", "a"]]),
                        HEADERS, HEADERS.map(lambda names: ["a", "b"] + names))
    run_property(check, text_files(), profile, examples=FOUND_TEXT)


FOUND_TEXT = [
    # Seed 185091702871953 (issue 12): c = 8.951653070e-4 a + 2 d exactly, columns 1e13 apart in
    # scale. The constant column b was mixed into the null space by rounding, so the minimum-norm
    # groups tied it in, missed the fit test, and the answer fell back to the scaled minimum norm
    # (‖w‖ = 1 where the exact minimum norm is 0.447).
    TextFile(".csv", b"a,b,c,d,y\n0,0,0,0,0\n0,0,0,0,0\n1e13,0,8951653070,0,0\n0,0,2,1,1\n", True, ["found"]),
]


@profiles(slow_examples=300)
@pytest.mark.parametrize("command", ["solve", "fit"])
def test_parquet_files(tmp_path, profile, command):
    def check(case: ParquetFile):
        header = case.table.column_names
        check_fit_or_solve(tmp_path, command, "data.parquet", None, case.expected_ok, table=case.table,
                           row_group_size=case.row_group_size, parquet_values=(header, case.values))

    run_property(check, parquet_files(), profile, examples=FOUND_PARQUET)


def _found_parquet(columns: dict) -> ParquetFile:
    """A float64 table that exploration found, as an explicit example."""
    table = pa.table({name: pa.array(values, type=pa.float64()) for name, values in columns.items()})
    return ParquetFile(table, [list(v) for v in columns.values()], True, table.num_rows)


FOUND_PARQUET = [
    # Seed 2330719984699 (issue 12): b = 1.27e96 * y + 7.06e-63 at row 6 alone. Exactly, the design
    # has rank 3 and its solution overflows float64; to working precision b and y are collinear
    # (the 7.06e-63 is 1e-158 of b's norm), so the answer is rank 2 with a warning, as numpy's.
    _found_parquet({"x": [0.0] * 7, "y": [0.0] * 6 + [1.0], "a": [0.0] * 7,
                    "b": [0.0] * 5 + [7.06e-63, 1.27e96], "t": [0.0] * 5 + [1e150, 0.0]}),
    # Seed 20261207004: a design of infinite κ (x ≈ 9.3e16 · y), targets 1 or 0 in one row, or all 0 (the
    # oracle's loss slack, eps·κ·mean(y²), was inf or NaN, and exact rationals cannot hold either).
    _found_parquet({"x": [9.278518826717272e+16, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0], "y": [1.0] + [0.0] * 6,
                    "a": [0.0] * 6 + [1.0], "b": [0.0] * 6 + [1.0]}),
    _found_parquet({"x": [9.278518826717272e+16, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0], "y": [1.0] + [0.0] * 6,
                    "a": [0.0] * 6 + [1.0], "b": [0.0] * 7}),
]


@st.composite
def damaged_files(draw) -> tuple[str, bytes]:
    """Random bytes, or a good file of a random kind truncated, with bytes flipped, or with bytes inserted."""
    suffix = draw(st.sampled_from(SUPPORTED_SUFFIXES))
    if draw(st.integers(0, 3)) == 0:
        return suffix, draw(st.binary(max_size=3000))
    X = np.array(draw(st.lists(st.integers(-50, 50), min_size=12, max_size=12)), dtype=np.float64).reshape(4, 3)
    sink = io.BytesIO()
    if suffix in DELIMITER:
        d = DELIMITER[suffix]
        sink.write(("a" + d + "b" + d + "y\n" + "".join(d.join(map(repr, r)) + "\n" for r in X)).encode())
    elif suffix in (".parquet", ".pq"):
        pq.write_table(pa.table({"a": X[:, 0], "b": X[:, 1], "y": X[:, 2]}), sink)
    elif suffix == ".npy":
        np.save(sink, X)
    else:
        np.savez(sink, X=X[:, :2], y=X[:, 2])
    content = bytearray(sink.getvalue())
    how = draw(st.sampled_from(["truncate", "flip", "insert", "overwrite"]))
    at = draw(st.integers(0, len(content) - 1))
    if how == "truncate":
        del content[at:]
    elif how == "flip":
        for i in draw(st.lists(st.integers(0, len(content) - 1), min_size=1, max_size=4)):
            content[i] ^= draw(st.integers(1, 255))
    elif how == "insert":
        content[at:at] = draw(st.binary(min_size=1, max_size=64))
    else:
        piece = draw(st.binary(min_size=1, max_size=64))
        content[at:at + len(piece)] = piece
    return suffix, bytes(content)


@profiles(slow_examples=500)
def test_damaged_and_random_bytes(tmp_path, profile):
    def check(case):
        suffix, content = case
        check_fit_or_solve(tmp_path, "solve", f"data{suffix}", content, expected_ok=False)

    run_property(check, damaged_files(), profile, examples=FOUND_DAMAGED)


FOUND_DAMAGED = [
    # Seed 20261207001 (make fuzz, once solve streamed every CSV): bytes that are not UTF-8 in the header
    # (a raw 'utf-8 codec' message with no file in it) and in a row of the wrong width (pyarrow printed a
    # traceback from the invalid-row handler).
    (".csv", b"\x80a,b,y\n0,0,0\n1,2,3\n4,5,6\n"),
    (".csv", b"a,b,y\n0,-1,-10\n-10,-10,-10\n-10\x800,0\n0,0,0\n"),
    # Seed 20261207002: a Parquet column name that is not UTF-8 (a raw 'utf-8 codec' message when streamed).
    (".parquet", (lambda sink: (pq.write_table(pa.table({"a": [1.0, 2.0], "b": [2.0, 1.0], "\x01": [3.0, 5.0]}), sink),
                                sink.getvalue().replace(b"\x18\x01\x01", b"\x18\x01\xf9"))[1])(io.BytesIO())),
]


@profiles(slow_examples=300)
def test_predict_reads_fuzzed_data_files(tmp_path, profile):
    """A good model on a fuzzed CSV: the predictions of the values in the file, or one line and no output."""
    model = SavedModel(np.array([[1.5, -2.0], [0.25, 3.0]]), np.array([0.5, -1.0]), ("a", "b"), ("y", "z"), {})
    save_model(tmp_path / "model", model)

    def check(case: TextFile):
        work = Path(tempfile.mkdtemp(dir=tmp_path))
        try:
            path, output = work / f"data{case.suffix}", work / "predictions.csv"
            path.write_bytes(case.content)
            code, out, err = run_cli("predict", tmp_path / "model", path, "-o", output)
            if code != 0:
                assert_refused(code, out, err, codes=(1,))
                assert not output.exists() and files_under(work) == [path]
                return
            assert_clean_stderr(err)
            X = reference_columns(path, ["a", "b"])
            header, rows = parse_text(output.read_bytes(), ",")
            assert header == ["predicted_y", "predicted_z"]
            got = np.array([[float(v) for v in r] for r in rows]).reshape(-1, 2)
            for i, x in enumerate(X):
                for t in range(2):
                    terms = [Fraction(x[j]) * Fraction(model.weight[t, j]) for j in range(2)]
                    terms.append(Fraction(model.bias[t]))
                    exact = sum(terms)
                    assert abs(Fraction(got[i, t]) - exact) <= 4 * np.finfo(float).eps * sum(abs(v) for v in terms), \
                        (x, got[i], float(exact))
        finally:
            shutil.rmtree(work, ignore_errors=True)

    headers = st.one_of(st.sampled_from([["a", "b"], ["b", "a", "y"], ["a", "x", "b"], ["a"], ["a", "b", "a"]]),
                        HEADERS, HEADERS.map(lambda names: ["a", "b"] + names))
    run_property(check, text_files(headers), profile)
