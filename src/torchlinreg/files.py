"""Data files in and out: CSV, TSV, Parquet and NumPy files to a ``Dataset``, tables back to files.

CSV, TSV and Parquet go through pyarrow, ``.npy``/``.npz`` through NumPy (never unpickling).
A file that cannot be used raises ``DataError`` with a one-line message naming the file, the
column and the row (1-based, the header not counted) and saying how to fix it.
"""

from __future__ import annotations

import difflib
import os
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import torch

from .data import Dataset, default_names
from .errors import DataError, OutputError
from .outputs import atomic_write_bytes

SUPPORTED_SUFFIXES: tuple[str, ...] = (".csv", ".tsv", ".parquet", ".pq", ".npy", ".npz")
WRITABLE_SUFFIXES: tuple[str, ...] = (".csv", ".tsv", ".parquet", ".pq")

_DELIMITERS = {".csv": ",", ".tsv": "\t"}
# pyarrow's default null markers without the NaN spellings: "nan" then reads as NaN and is reported as NaN
_NULL_VALUES = ["", "NA", "N/A", "n/a", "NULL", "null", "#N/A", "#N/A N/A", "#NA"]
_SNIFF_BYTES = 1 << 16  # enough of the start of a file to tell text from binary
_BLOCK_BYTES = 1 << 20  # pyarrow's default CSV read block
_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # a zip with members, an empty zip
_MAX_LISTED = 20  # column names quoted in one message


@dataclass(frozen=True)
class _Table:
    """A file's columns before any value is checked: names and types in file order."""

    schema: pa.Schema
    num_rows: int
    read: Callable[[list[str]], pa.Table]  # the named columns, every row
    default_target: tuple[str, ...]
    feature_pool: tuple[str, ...] | None = None  # default features come from these; None: every column


def read_dataset(
    path: str | os.PathLike,
    *,
    target: Sequence[str] | None = None,
    features: Sequence[str] | None = None,
    weights: str | None = None,
    dtype: torch.dtype = torch.float64,
) -> Dataset:
    """Read a regression data set from a CSV, TSV, Parquet, ``.npy`` or ``.npz`` file.

    Parameters
    ----------
    path : the file; its extension (one of ``SUPPORTED_SUFFIXES``) says how to read it.
    target : the target column name(s); default: the last column (``.npz``: the ``y`` columns).
    features : the input column names, in the order wanted; default: every other numeric
        (integer, float, bool, decimal) column in file order (``.npz``: the ``X`` columns).
    weights : a column of non-negative sample weights (weighted least squares); it is
        neither a feature nor a target.
    dtype : floating-point dtype of the returned tensors; float64 keeps the file's values exactly.

    Returns
    -------
    Dataset with ``X`` of shape (n_samples, n_features) and ``y`` of shape (n_samples, n_targets).

    Column names: ``.npy`` columns are ``c1, c2, ...``; ``.npz`` arrays ``X`` (1-D or 2-D) and
    ``y`` give ``x`` or ``x1, x2, ...`` and ``y`` or ``y1, y2, ...`` (as ``make-data`` names them). An ``.npz`` without
    both ``X`` and ``y`` but with exactly one 2-D array is read like a ``.npy``.

    Raises
    ------
    DataError
        The file is missing, empty, not of its extension's format, lacks a named column, or a
        selected column holds a non-number, a missing value, NaN or an infinity.
    """
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating-point torch dtype such as torch.float64, got {dtype!r}")
    path = Path(path)
    suffix, head = _check_file(path)
    table = _OPENERS[suffix](path, suffix, head)
    weight_col = _names(path, weights, "weight", table.schema.names) if weights is not None else ()
    if weight_col and target is None and table.default_target == weight_col:
        raise DataError(f"{path}: the weight column {weights!r} is the last column, the default target; "
                        "name the target with --target")
    if weight_col and features is None:  # default features: every other numeric column but the weights
        names = table.schema.names
        chosen_targets = _names(path, target, "target", names) or table.default_target
        features = [n for n in (table.feature_pool or names) if n not in chosen_targets + weight_col
                    and _is_numeric(table.schema.field(n).type)]
    targets, feats, default_note = _select(path, table, target, features)
    if weight_col and weight_col[0] in feats + targets:
        raise DataError(f"{path}: column {weights!r} is the weight column and also a feature or target; "
                        "list it in only one place")
    columns = table.read(list(feats + targets + weight_col))
    target_fix = f"or pass --target to choose the target{default_note}" if default_note else "or choose another target"
    X = _matrix(path, columns, feats, dtype, "or leave the column out")  # (n, d)
    y = _matrix(path, columns, targets, dtype, target_fix)  # (n, m)
    w = None
    if weight_col:
        w = _matrix(path, columns, weight_col, torch.float64, "or choose another weight column")[:, 0]  # (n,)
        if bool((w < 0).any()):
            row = int(torch.nonzero(w < 0)[0, 0]) + 1
            raise DataError(f"{path}: weight column {weights!r} row {row} is negative; weights must be >= 0")
        if not bool((w > 0).any()):
            raise DataError(f"{path}: weight column {weights!r} is all zero; give some rows a positive weight")
    return Dataset(X, y, feats, targets, sample_weight=w)


def read_columns(path: str | os.PathLike, names: Sequence[str]) -> np.ndarray:
    """The named columns of a data file as a float64 array of shape (n_samples, len(names)).

    For prediction: the file must hold those columns (other columns, such as the target,
    may be there or not). Raises :class:`DataError` like :func:`read_dataset`.
    """
    path = Path(path)
    suffix, head = _check_file(path)
    table = _OPENERS[suffix](path, suffix, head)
    chosen = _names(path, list(names), "feature", table.schema.names)
    _check_unique(path, table.schema.names, set(chosen))
    if table.num_rows == 0:
        raise DataError(f"{path}: has no data rows; add rows of values")
    columns = table.read(list(chosen))
    return _matrix(path, columns, chosen, torch.float64, "or leave the column out").numpy()


def write_table(
    path: str | os.PathLike,
    columns: Mapping[str, np.ndarray | Sequence[float]],
    *,
    force: bool = False,
) -> Path:
    """Write named columns to a CSV, TSV or Parquet file (chosen by extension), atomically.

    Parameters
    ----------
    path : the file to write; its extension is one of ``WRITABLE_SUFFIXES``.
    columns : column name -> 1-D values of equal length (array, sequence or CPU/GPU tensor).
        Floats are written as float64 in the shortest text that reads back to the same bits.
    force : replace ``path`` if it exists.

    Returns
    -------
    The path written.

    Raises
    ------
    OutputError
        Unsupported extension, ``path`` exists (and not ``force``) or is a folder, or it cannot be written.
    ValueError
        ``columns`` is empty, a column is not 1-D numbers, or the lengths differ.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in WRITABLE_SUFFIXES:
        raise OutputError(f"{path}: cannot write {_suffix_text(path)} files; "
                          f"use one of {', '.join(WRITABLE_SUFFIXES)}")
    table = _arrow_table(columns)
    if path.is_dir():
        raise OutputError(f"{path}: is a folder; pass a file path")
    if path.exists() and not force:
        raise OutputError(f"{path}: already exists; pass --force to replace it, or choose another path")
    if not path.parent.is_dir():
        raise OutputError(f"{path}: folder {str(path.parent)!r} does not exist; create it or choose another path")
    sink = pa.BufferOutputStream()
    if suffix in _DELIMITERS:
        pa_csv.write_csv(table, sink, pa_csv.WriteOptions(delimiter=_DELIMITERS[suffix]))
    else:
        pq.write_table(table, sink)
    try:
        return atomic_write_bytes(path, sink.getvalue().to_pybytes())
    except OutputError:
        raise
    except OSError as exc:  # atomic_write_bytes creates its temporary file outside its own handler
        raise OutputError(f"{path}: cannot be written ({exc.strerror or exc}); "
                          "choose a folder you can write to") from None


# ---- opening a file: names, types, row count -------------------------------------------------

def _check_file(path: Path) -> tuple[str, bytes]:
    """The file's lower-case extension and its first bytes, after checking it can be read."""
    if path.is_dir():
        raise DataError(f"{path}: is a folder, not a data file; pass the path of a file inside it")
    if not path.exists():
        raise DataError(f"{path}: no such file; check the path")
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise DataError(f"{path}: cannot read {_suffix_text(path)} files; "
                        f"use one of {', '.join(SUPPORTED_SUFFIXES)}")
    try:
        with open(path, "rb") as f:
            head = f.read(_SNIFF_BYTES)
    except OSError as exc:
        raise DataError(f"{path}: cannot be opened ({exc.strerror or exc}); check its permissions") from None
    if not head:
        raise DataError(f"{path}: the file is empty (0 bytes); write a header and data rows into it")
    return suffix, head


def _open_text(path: Path, suffix: str, head: bytes) -> _Table:
    kind, delimiter = suffix[1:].upper(), _DELIMITERS[suffix]
    nul = head.find(b"\x00")
    if nul >= 0:
        raise DataError(f"{path}: holds binary data (a NUL byte at offset {nul}), not {kind} text; "
                        f"check that it is a {kind} file, saved as UTF-8")
    parse = pa_csv.ParseOptions(delimiter=delimiter)
    convert = pa_csv.ConvertOptions(null_values=_NULL_VALUES, strings_can_be_null=True)
    block_size = _block_size(path, head)
    try:
        table = pa_csv.read_csv(str(path), read_options=pa_csv.ReadOptions(block_size=block_size),
                                parse_options=parse, convert_options=convert)
        names = table.column_names  # decodes the header
    except UnicodeDecodeError:
        raise DataError(f"{path}: the header is not UTF-8 text; save the file as UTF-8") from None
    except pa.ArrowInvalid as exc:
        raise _text_parse_error(path, kind, delimiter, convert, exc, head, block_size) from None
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{path}: cannot be read as {kind} ({_clean(exc)}); check the file") from None
    check_delimiter(path, table.schema, delimiter)
    return _Table(table.schema, table.num_rows, table.select, (names[-1],))


def _block_size(path: Path, head: bytes) -> int:
    """pyarrow's read block: its default, or larger when the header line is longer (a wide file).

    pyarrow finds the columns in the first block, so a header longer than a block (1 MiB, some
    50,000 columns) would otherwise read as no header at all.
    """
    end = re.search(rb"[\r\n]", head)
    if end is not None or len(head) < _SNIFF_BYTES:
        return _BLOCK_BYTES
    length = len(head)
    with open(path, "rb") as f:  # scan on for the end of the header, a block at a time
        f.seek(length)
        while piece := f.read(_BLOCK_BYTES):
            end = re.search(rb"[\r\n]", piece)
            if end is not None:
                length += end.start()
                break
            length += len(piece)
    return max(_BLOCK_BYTES, length + _SNIFF_BYTES)


def _text_parse_error(path: Path, kind: str, delimiter: str, convert, exc: Exception, head: bytes,
                      block_size: int) -> DataError:
    """Turn pyarrow's parse error into one line; a row with the wrong number of fields gets its row number."""
    if "Empty CSV" in str(exc):  # pyarrow found no complete first line
        return no_header_error(path, kind, exc, head)
    invalid = []

    def note(row):
        invalid.append(row)
        return "error"

    # Again on one thread: only then does pyarrow know the row number. As Latin-1, which any bytes
    # are: pyarrow cannot hand a row that is not UTF-8 to the handler (it prints a traceback).
    try:
        pa_csv.read_csv(str(path), read_options=pa_csv.ReadOptions(use_threads=False, block_size=block_size,
                                                                    encoding="latin1"),
                        parse_options=pa_csv.ParseOptions(delimiter=delimiter, invalid_row_handler=note),
                        convert_options=convert)
    except (pa.ArrowException, OSError):
        pass
    if not invalid:
        return DataError(f"{path}: cannot be read as {kind} ({_clean(exc)}); check the file")
    return wrong_width_error(path, invalid[0], delimiter)


def wrong_width_error(path: Path, row, delimiter: str) -> DataError:
    """The message for pyarrow's invalid row ``row`` (read as Latin-1), read whole or streamed."""
    where = f"row {row.number - 1}" if row.number else "a row"  # pyarrow counts the header as row 1
    return DataError(f"{path}: {where} has {row.actual_columns} field(s) but the header has "
                     f"{row.expected_columns} (the row reads {_show(_utf8(row.text))}); "
                     f"give every row one value per column, separated by {delimiter!r}")


def no_header_error(path: Path, kind: str, exc: Exception, head: bytes) -> DataError:
    """The message for pyarrow's "Empty CSV" (no complete first line), read whole or streamed:
    blank lines only, or a header whose quote is never closed, or pyarrow's own words."""
    if not head.removeprefix(b"\xef\xbb\xbf").strip() and len(head) < _SNIFF_BYTES:
        return DataError(f"{path}: holds only blank lines, no header; write a header and data rows into it")
    header = head.removeprefix(b"\xef\xbb\xbf").lstrip(b"\r\n").splitlines()[0]
    if header.count(b'"') % 2:
        return DataError(f"{path}: the header has a quote (\") that is never closed, so the whole file reads "
                         f"as one value; close the quote or remove it")
    return DataError(f"{path}: cannot be read as {kind} ({_clean(exc)}); check the file")


def _utf8(latin1: str) -> str:
    """Text read as Latin-1, decoded as the UTF-8 it was meant to be (bytes that are not UTF-8 escaped)."""
    return latin1.encode("latin1").decode("utf-8", "backslashreplace")


def parquet_schema(path: Path) -> tuple[pa.Schema, int]:
    """A Parquet file's schema and row count from its footer, read whole or streamed.

    A damaged file can make pyarrow raise more than ArrowException and OSError (UnicodeDecodeError
    for a column name, ValueError, MemoryError for a size): any of them means the file is unusable.
    """
    try:
        with pq.ParquetFile(str(path)) as pf:
            schema, num_rows = pf.schema_arrow, pf.metadata.num_rows
            schema.names  # noqa: B018 (decodes the column names: not UTF-8 raises here)
    except Exception as exc:
        raise DataError(f"{path}: is not a readable Parquet file ({_clean(exc)}); "
                        "check that it is a Parquet file") from None
    return schema, num_rows


def _open_parquet(path: Path, suffix: str, head: bytes) -> _Table:
    schema, num_rows = parquet_schema(path)

    def read(names: list[str]) -> pa.Table:
        try:
            with pq.ParquetFile(str(path)) as pf:
                batches = list(pf.iter_batches(columns=names))
            table = pa.Table.from_batches(batches).select(names)  # no batches: ValueError
        except Exception as exc:
            raise DataError(f"{path}: cannot be read ({_clean(exc)}); the file may be damaged") from None
        if table.num_rows != num_rows:
            raise DataError(f"{path}: its footer says {num_rows} rows but its pages hold {table.num_rows}; "
                            "the file is damaged: write it again")
        return table

    return _Table(schema, num_rows, read, (schema.names[-1],) if schema.names else ())


def _open_npy(path: Path, suffix: str, head: bytes) -> _Table:
    if not head.startswith(_NPY_MAGIC):
        raise DataError(f"{path}: is not a NumPy .npy file (it lacks the .npy header); check the file type")
    try:
        with open(path, "rb") as f:  # our own handle: closed even when NumPy gives up half-way
            array = np.load(f, allow_pickle=False)
    except Exception as exc:  # a damaged header: ValueError, SyntaxError, TokenError, MemoryError, OverflowError...
        raise DataError(_npy_load_message(path, ".npy", exc)) from None
    _check_numeric(path, "the array", array)
    if array.ndim != 2 or array.shape[1] == 0:
        raise DataError(f"{path}: holds an array of shape {array.shape}; save a 2-D array of shape "
                        "(n_samples, n_columns) with the target in the last column")
    return _array_table([(f"c{j + 1}", array[:, j]) for j in range(array.shape[1])], array.shape[0])


def _open_npz(path: Path, suffix: str, head: bytes) -> _Table:
    if not head.startswith(_ZIP_MAGICS):
        raise DataError(f"{path}: is not a NumPy .npz file (not a zip archive); check the file type")
    try:
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as npz:  # f: closed even if it is no zip
            names = list(npz.files)
            wanted = ["X", "y"] if {"X", "y"} <= set(names) else names
            arrays = {name: npz[name] for name in wanted}
    except Exception as exc:  # a damaged zip or member: BadZipFile, zlib.error, EOFError, ValueError, ...
        raise DataError(_npy_load_message(path, ".npz", exc)) from None
    for name, array in arrays.items():
        if not isinstance(array, np.ndarray):  # a zip member that is not a .npy
            raise DataError(f"{path}: member {_show(name)} is not a NumPy array; save the file with numpy.savez")
    if "X" in arrays and "y" in arrays:
        X, y = arrays["X"], arrays["y"]
        for name, array in (("X", X), ("y", y)):
            _check_numeric(path, f"array {_show(name)}", array)
            if array.ndim not in (1, 2):
                raise DataError(f"{path}: array {_show(name)} has shape {array.shape}; save it as 1-D or 2-D")
        X, y = (a[:, None] if a.ndim == 1 else a for a in (X, y))  # (n, d), (n, m)
        if len(X) != len(y):
            raise DataError(f"{path}: array 'X' has {len(X)} rows but 'y' has {len(y)}; "
                            "save one row per sample in both")
        x_names, y_names = list(default_names("x", X.shape[1])), list(default_names("y", y.shape[1]))
        pairs = [*zip(x_names, X.T), *zip(y_names, y.T)]
        return _array_table(pairs, len(X), tuple(y_names), tuple(x_names))
    two_d = [name for name, array in arrays.items() if array.ndim == 2]
    if len(two_d) != 1 or arrays[two_d[0]].shape[1] == 0:
        held = ", ".join(map(_show, names[:_MAX_LISTED])) or "no arrays"
        raise DataError(f"{path}: needs arrays 'X' and 'y', or a single 2-D array, but holds {held}; "
                        "save it with numpy.savez(path, X=..., y=...)")
    array = arrays[two_d[0]]
    _check_numeric(path, f"array {_show(two_d[0])}", array)
    return _array_table([(f"c{j + 1}", array[:, j]) for j in range(array.shape[1])], array.shape[0])


def _npy_load_message(path: Path, kind: str, exc: Exception) -> str:
    if "allow_pickle" in str(exc):
        return (f"{path}: holds Python objects, which are never unpickled; "
                f"save numeric arrays (a float or integer dtype) instead")
    return f"{path}: cannot be read as {kind} ({_clean(exc)}); the file may be damaged"


def _check_numeric(path: Path, what: str, array: np.ndarray) -> None:
    if array.dtype.kind not in "biuf":
        raise DataError(f"{path}: {what} holds {array.dtype} values, not real numbers; "
                        "save an integer, float or bool array")


def _array_table(pairs, num_rows: int, default_target: tuple[str, ...] = (),
                 feature_pool: tuple[str, ...] | None = None) -> _Table:
    """A table over NumPy columns: (name, 1-D array) pairs in order."""
    table = pa.table({name: pa.array(np.ascontiguousarray(values)) for name, values in pairs})
    names = table.column_names
    return _Table(table.schema, num_rows, table.select, default_target or tuple(names[-1:]), feature_pool)


_OPENERS: dict[str, Callable[[Path, str, bytes], _Table]] = {
    ".csv": _open_text, ".tsv": _open_text, ".parquet": _open_parquet, ".pq": _open_parquet,
    ".npy": _open_npy, ".npz": _open_npz,
}


# ---- choosing columns ---------------------------------------------------------------------------

def _select(path: Path, table: _Table, target, features) -> tuple[tuple[str, ...], tuple[str, ...], str]:
    """The target and feature names, checked against the file; and a note for messages about a default target."""
    names = table.schema.names
    _check_unique(path, names, set(names))
    if table.num_rows == 0:
        raise DataError(f"{path}: has no data rows; add rows of values")
    targets = _names(path, target, "target", names)
    feats = _names(path, features, "feature", names)
    note = ""
    if targets is None:
        targets = table.default_target
        note = " (by default the last column)" if table.feature_pool is None else " (by default the 'y' columns)"
    if feats is None:
        pool = table.feature_pool if table.feature_pool is not None else names
        feats = tuple(n for n in pool if n not in targets and _usable_by_default(path, table, n))
        if not feats:
            raise DataError(f"{path}: no numeric feature columns besides the target {', '.join(map(_show, targets))}; "
                            "add numeric columns, or name them with --features")
    both = next((n for n in feats if n in targets), None)
    if both is not None:
        raise DataError(f"{path}: column {_show(both)} is both a feature and the target{note}; "
                        "list it in only one of --features and --target")
    return targets, feats, note


def _check_unique(path: Path, names: list[str], wanted) -> None:
    """Refuse a file in which one of the ``wanted`` column names names two columns."""
    seen = {}
    for i, name in enumerate(names):
        if name in seen and name in wanted:
            raise DataError(f"{path}: column name {_show(name)} appears twice (columns {seen[name] + 1} and {i + 1}); "
                            "rename one of them")
        seen.setdefault(name, i)


def _usable_by_default(path: Path, table: _Table, name: str) -> bool:
    """Whether a column joins the default features: numeric ones do, text ones are left out with a warning.

    A text column that holds numbers in some rows is a numeric column with a typo: that is
    an error naming the row, never a silently dropped feature.
    """
    if _is_numeric(table.schema.field(name).type):
        return True
    column = table.read([name]).column(name)
    textual = pa.types.is_string(column.type) or pa.types.is_large_string(column.type)
    if textual and _holds_some_number(column):
        raise DataError(f"{path}: column {_show(name)} {_first_non_number(column, 1)}; correct it, "
                        "or choose the features with --features")
    warnings.warn(f"{path}: left out column {_show(name)}, which is not numeric ({column.type}); "
                  "choose the features with --features to silence this", UserWarning, stacklevel=4)
    return False


def _holds_some_number(column: pa.ChunkedArray, sample: int = 1000) -> bool:
    """True when one of the first ``sample`` non-empty values of a text column reads as a number."""
    seen = 0
    for chunk in column.chunks:
        for value in chunk.drop_null().to_pylist():
            try:
                float(value)
                return True
            except ValueError:
                seen += 1
                if seen >= sample:
                    return False
    return False


def _names(path: Path, given, role: str, names: list[str]) -> tuple[str, ...] | None:
    """The column names a caller asked for, as a tuple; None if not given."""
    if given is None:
        return None
    if isinstance(given, str):
        chosen = (given,)
    elif isinstance(given, Sequence) and all(isinstance(name, str) for name in given):
        chosen = tuple(given)
    else:
        raise ValueError(f"{role} columns must be a name or a sequence of names, got {given!r}")
    if not chosen:
        raise DataError(f"{path}: no {role} column given; name at least one")
    for i, name in enumerate(chosen):
        if name not in names:
            close = difflib.get_close_matches(name, names, n=1)
            hint = f"did you mean {_show(close[0])}? " if close else ""
            listed = ", ".join(map(_show, names[:_MAX_LISTED]))
            if len(names) > _MAX_LISTED:
                listed += f", ... ({len(names) - _MAX_LISTED} more)"
            raise DataError(f"{path}: no column {_show(name)}; {hint}the columns are {listed}")
        if name in chosen[:i]:
            raise DataError(f"{path}: {role} column {_show(name)} is listed twice; list each column once")
    return chosen


def _is_numeric(kind: pa.DataType) -> bool:
    return (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)
            or pa.types.is_decimal(kind))


# ---- checking and converting values -----------------------------------------------------------

def _matrix(path: Path, table: pa.Table, names: tuple[str, ...], dtype: torch.dtype, fix: str) -> torch.Tensor:
    """The named columns as a (n_samples, len(names)) tensor of ``dtype``, every value checked."""
    values = np.column_stack([_column_values(path, name, table.column(name), fix=fix) for name in names])
    tensor = torch.from_numpy(values).to(dtype)  # (n, len(names)); float64 -> float64 is the identity
    if dtype != torch.float64 and not bool(torch.isfinite(tensor).all()):
        row, col = (int(i) for i in torch.nonzero(~torch.isfinite(tensor))[0])
        raise DataError(f"{path}: column {_show(names[col])} row {row + 1} holds {float(values[row, col])!r}, "
                        f"too large for {dtype}; read the file as torch.float64")
    return tensor


def float64_values(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A numeric or boolean column without nulls as float64 values: a read-only view of its
    buffer when it is one float64 array, else one copy (exact for floats, bools and integers
    up to 2**53).

    (``to_numpy`` gives the same values, but its first call imports pandas when pandas is
    installed: 0.35 s of every run that reads a file.)
    """
    if column.type != pa.float64():
        column = pc.cast(column, pa.float64(), safe=False)
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    views = [np.frombuffer(c.buffers()[1], dtype=np.float64, count=len(c), offset=8 * c.offset) for c in chunks]
    return views[0] if len(views) == 1 else np.concatenate(views) if views else np.empty(0)


def _column_values(path: Path, name: str, column: pa.ChunkedArray, first_row: int = 1,
                   fix: str = "or leave the column out") -> np.ndarray:
    """One column as float64 values; ``first_row`` is the file row of its first value (for batches)."""
    if pa.types.is_null(column.type):  # a CSV column with every cell empty
        raise DataError(f"{path}: column {_show(name)} has a missing value in row {first_row}; fill or remove that row")
    if not _is_numeric(column.type):
        raise DataError(f"{path}: column {_show(name)} {_first_non_number(column, first_row)}; correct it, {fix}")
    if column.null_count:
        row = first_row + pc.index(pc.is_null(column), True).as_py()
        raise DataError(f"{path}: column {_show(name)} has a missing value in row {row}; fill or remove that row")
    values = float64_values(column)
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        value = values[bad[0]]
        shown = "NaN" if np.isnan(value) else ("inf" if value > 0 else "-inf")
        raise DataError(f"{path}: column {_show(name)} holds {shown} in row {first_row + int(bad[0])}; "
                        "replace it with a number or remove that row")
    return values


def check_magnitudes(path: str | os.PathLike, data: Dataset) -> None:
    """Refuse, naming the file, column and row, a value whose square overflows float64.

    Least squares sums such squares (see ``solve.MAX_MAGNITUDE``); reading keeps every value,
    so the commands that fit call this before they start.
    """
    from .solve import MAX_MAGNITUDE

    for values, names in ((data.X, data.feature_names), (data.y, data.target_names)):
        big = values.abs() > MAX_MAGNITUDE  # (n, k)
        if bool(big.any()):
            row, col = (int(i) for i in torch.nonzero(big)[0])
            raise magnitude_error(path, names[col], row + 1, float(values[row, col]))


def magnitude_error(path, name: str, row: int, value: float) -> DataError:
    """The message for a value whose square overflows float64, read whole or streamed."""
    from .solve import MAX_MAGNITUDE

    return DataError(f"{path}: column {_show(name)} row {row} holds {value:.3g}, whose square overflows float64 "
                     f"(the limit is {MAX_MAGNITUDE:.0e}); rescale that column, e.g. divide it by a power of ten")


def _first_non_number(column: pa.ChunkedArray, first_row: int) -> str:
    """Where a non-numeric column first holds a value that is not a number, as message text."""
    textual = (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)
               or pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type))
    row = first_row
    for chunk in column.chunks:
        if textual:
            try:
                pc.cast(chunk, pa.float64())  # a whole chunk of number text (and nulls): nothing to report
                row += len(chunk)
                continue
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                pass
        for scalar in chunk:
            if scalar.is_valid:
                try:
                    value = scalar.as_py()
                except (OverflowError, ValueError, pa.ArrowException):  # e.g. a timestamp past the year 9999
                    return f"row {row} holds a {column.type} value, not a number"
                if not textual:
                    return f"row {row} holds {_show(str(value))} (a {column.type} value), not a number"
                try:
                    scalar.cast(pa.float64())
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                    return f"row {row} holds {_show(value)}, not a number"
            row += 1
    return f"holds {column.type} values, not numbers"


# ---- writing ------------------------------------------------------------------------------------

def _arrow_table(columns: Mapping[str, np.ndarray | Sequence[float]]) -> pa.Table:
    """Named 1-D columns of equal length as an Arrow table; floats as float64."""
    if not isinstance(columns, Mapping) or not columns:
        raise ValueError("columns must be a non-empty mapping of column name to values")
    arrays: dict[str, pa.Array] = {}
    for name, values in columns.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"column names must be non-empty strings, got {name!r}")
        if isinstance(values, torch.Tensor):
            values = values.detach().cpu()
            values = (values.double() if values.is_floating_point() else values).numpy()
        array = np.asarray(values)
        if array.ndim != 1:
            raise ValueError(f"column {name!r} must be 1-D, got shape {array.shape}")
        if array.dtype.kind not in "biuf":
            raise ValueError(f"column {name!r} must hold numbers, got dtype {array.dtype}")
        if array.dtype.kind == "f":
            array = array.astype(np.float64, copy=False)
        first = next(iter(arrays), None)
        if first is not None and len(array) != len(arrays[first]):
            raise ValueError(f"column {name!r} has {len(array)} values but {first!r} has {len(arrays[first])}")
        arrays[name] = pa.array(array)
    return pa.table(arrays)


# ---- message helpers ----------------------------------------------------------------------------

def _suffix_text(path: Path) -> str:
    return repr(path.suffix) if path.suffix else "extension-less"


def check_delimiter(path: Path, schema: pa.Schema, delimiter: str) -> None:
    """One column of text is never a data set: refuse it, saying which delimiter is likely, when
    its name holds one (a column of numbers is a one-column file)."""
    if len(schema.names) != 1:
        return
    name = schema.names[0]
    other = next((d for d in (",", "\t", ";", "|") if d != delimiter and d in name), None)
    if other is not None and not _is_numeric(schema.field(0).type):
        raise DataError(f"{path}: has one column, {_show(name)}; its values seem separated by {other!r}, "
                        f"not {delimiter!r}; save it with {delimiter!r} between values")


def _show(value, limit: int = 60) -> str:
    """A value for a message: quoted, escaped onto one line, shortened."""
    if len(value) > limit:
        value = value[: limit - 3] + ("..." if isinstance(value, str) else b"...")
    return repr(value)


def _clean(exc: Exception, limit: int = 200) -> str:
    """An exception's text on one line: whitespace collapsed, control characters escaped, shortened."""
    text = " ".join(str(exc).split())
    text = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)
    return text if len(text) <= limit else text[: limit - 3] + "..."
