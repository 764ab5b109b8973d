"""Streaming input: CSV, TSV and Parquet files, or a folder of them, read chunk by chunk.

Memory stays bounded by the chunk size and the read size, not the file size: Parquet is
read page by page in record batches of at most ``read_bytes`` of values (as large as the
largest row group when it fits; ``pyarrow.parquet.ParquetFile`` with ``pre_buffer=False``
and a buffered stream, which unlike a ``pyarrow.dataset`` scan does not read several row
groups ahead), CSV block by block (``pyarrow.csv.open_csv``), and only the selected columns
are decoded; a background thread reads one batch ahead (:func:`_read_ahead`). Columns are
chosen, and every value is checked, as :func:`torchlinreg.files.read_dataset` does; an error
found in a late chunk names the file and its data row (1-based, the header not counted).

- :func:`open_source` resolves a file or folder once: its files, format and columns.
- :meth:`StreamSource.chunks` gives float64 ``(X, y, w)`` chunks in file order.
- :func:`accumulate` and :func:`solve_source` give the exact least-squares optimum in one
  pass plus refinement passes (``torchlinreg.solve``).
- :class:`ShuffledBatches` streams shuffled mini-batches to a ``DataLoader`` for training.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import torch

from . import files
from .config import check_seed
from .errors import DataError
from .memory import STREAM_FORMATS, STREAM_READ_BYTES
from .solve import MAX_PASSES, RANK_RTOL, LstsqSolution, QRAccumulator
from .solve import needs_refinement
from .solve import refine as refine_solution

FORMATS = STREAM_FORMATS  # suffix: format
CHUNK_ROWS = 65_536  # rows per chunk: 5 MiB of float64 at 10 columns; amortises reading and checking a chunk
READ_AHEAD = 1  # record batches read by a background thread while the caller works on one
BUFFER_ROWS = 262_144  # rows in the shuffle buffer: rows mix with the ~4 chunks around them
_PARQUET_BUFFER = 1 << 20  # bytes read at a time from a Parquet column chunk, instead of whole row groups
_CSV_BLOCK = 1 << 20  # bytes of text parsed at a time (pyarrow's default; larger blocks only cost memory)
_DELIMITERS = {"csv": ",", "tsv": "\t"}
_FLOAT64 = pa.float64()
_BOOL_TEXT = ["1", "True", "TRUE", "true", "0", "False", "FALSE", "false"]  # pyarrow's CSV spellings of bools
_ROLE_FIX = {"feature": "or leave the column out", "target": "or choose another target",
             "weight": "or choose another weight column"}


@dataclass(frozen=True)
class StreamSource:
    """A file, or a folder of files of one format with the same columns, ready to stream.

    Attributes
    ----------
    paths : the files, in reading order (a folder's sorted by name)
    format : ``"csv"``, ``"tsv"`` or ``"parquet"``
    feature_names, target_names : the columns making ``X`` and ``y``
    weight_name : the sample-weight column, or None
    n_rows : data rows in all files; known from the metadata for Parquet, None for CSV/TSV
        until a complete pass of :meth:`chunks` has counted them
    read_bytes : values per Parquet record batch read at once, at most (a whole row group when
        it fits, never less than a chunk); see :func:`torchlinreg.memory.stream_read_bytes`
    """

    paths: tuple[Path, ...]
    format: str
    feature_names: tuple[str, ...]
    target_names: tuple[str, ...]
    weight_name: str | None = None
    n_rows: int | None = field(default=None, compare=False)
    read_bytes: int = field(default=STREAM_READ_BYTES, compare=False, repr=False)
    _bool_columns: tuple[str, ...] = field(default=(), repr=False)  # CSV columns of true/false text

    @property
    def columns(self) -> tuple[str, ...]:
        """The columns read: features, targets, then the weight column."""
        return self.feature_names + self.target_names + ((self.weight_name,) if self.weight_name else ())

    def chunks(self, chunk_rows: int = CHUNK_ROWS) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
        """The rows in file order, as chunks of ``chunk_rows`` rows (the last may be shorter).

        Yields
        ------
        X : ndarray of shape (k, n_features), float64
        y : ndarray of shape (k, n_targets), float64
        w : ndarray of shape (k,), float64, or None without a weight column

        Raises
        ------
        DataError
            A value is missing, NaN, infinite or not a number, a weight is negative, or a row
            cannot be parsed; the message names the file, the column and the row. Chunks
            before that one have already been yielded, so callers that write output should
            finish a pass (for example :func:`accumulate`) before writing anything.
        """
        _check_positive("chunk_rows", chunk_rows)
        return self._chunks(chunk_rows, 0, 1)

    def _chunks(self, chunk_rows: int, part: int, n_parts: int):
        """Chunks number ``part``, ``part + n_parts``, ...; the others are read but not converted or checked."""
        for pieces in self._groups(chunk_rows, part, n_parts):
            yield self._convert(pieces)

    def _groups(self, chunk_rows: int, part: int, n_parts: int):
        """The pieces of chunks number ``part``, ``part + n_parts``, ... (see :func:`_group`), unconverted."""
        seen = 0
        batches = _read_ahead(self._pieces(chunk_rows), READ_AHEAD)
        for index, pieces in enumerate(_group(batches, chunk_rows)):
            seen += sum(len(batch) for _, _, batch in pieces)
            if index % n_parts == part:
                yield pieces
        if seen == 0:
            raise DataError(f"{_where(self)}: has no data rows; add rows of values")
        if self.n_rows is None and n_parts == 1:
            object.__setattr__(self, "n_rows", seen)  # a cache, not part of equality: counted once, never changes

    def _pieces(self, chunk_rows: int) -> Iterator[tuple[Path, int, pa.RecordBatch]]:
        """Every file's record batches of the selected columns, with the file row of their first row."""
        for path in self.paths:
            row = 1
            if self.format == "parquet":
                batches = _parquet_batches(path, self.columns, chunk_rows, self.read_bytes)
            else:
                batches = _text_batches(path, self.format, self._fixes(), self._bool_columns)
            for batch in batches:
                if len(batch):
                    yield path, row, batch
                    row += len(batch)

    def _fixes(self) -> dict[str, str]:
        """Each column read, in order, and the end of the message about a bad value in it."""
        d, m = len(self.feature_names), len(self.target_names)
        return {name: _ROLE_FIX["feature" if j < d else "target" if j < d + m else "weight"]
                for j, name in enumerate(self.columns)}

    def _values(self, path: Path, first_row: int, column: pa.Array, j: int, finite: bool = True) -> np.ndarray:
        """Column ``j`` of one piece as float64 values, checked (``finite=False``: NaN and inf are let through)."""
        values = files.float64_values(column) if column.type == _FLOAT64 and not column.null_count else None
        # a NaN or inf makes the sum non-finite (as can a sum that overflows: then each value is looked at)
        if values is None or finite and not np.isfinite(values.sum()) and not np.isfinite(values).all():
            # the checks and messages of read_dataset
            name = self.columns[j]
            values = files._column_values(path, name, pa.chunked_array([column]), first_row, self._fixes()[name])
        if self.weight_name and j == len(self.columns) - 1:
            negative = np.flatnonzero(values < 0)
            if negative.size:
                raise DataError(f"{path}: weight column {self.weight_name!r} row {first_row + int(negative[0])} is "
                                "negative; weights must be >= 0")
        return values

    def _convert(self, pieces) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """One chunk's pieces as checked float64 arrays ``X`` (k, d) and ``y`` (k, m), F-ordered, and ``w``."""
        columns, w = self._columns(pieces, finite=True)
        d = len(self.feature_names)
        X, y = (np.empty((len(columns[0]), n), order="F") for n in (d, len(self.target_names)))
        for j, values in enumerate(columns):
            (X[:, j] if j < d else y[:, j - d])[:] = values
        return X, y, w

    def _check_magnitudes(self, pieces) -> None:
        """Refuse, naming the file, column and row, a feature or target whose square overflows float64."""
        from .solve import MAX_MAGNITUDE

        d = len(self.feature_names)
        for path, first_row, batch in pieces:  # as files.check_magnitudes: the first row, features before targets
            for columns in (range(d), range(d, d + len(self.target_names))):
                found = []  # (row, column, value) of each column's first value out of range
                for j in columns:
                    values = self._values(path, first_row, batch.column(j), j)
                    big = np.flatnonzero(np.abs(values) > MAX_MAGNITUDE)
                    if big.size:
                        found.append((int(big[0]), j, float(values[big[0]])))
                if found:
                    row, j, value = min(found)
                    raise files.magnitude_error(path, self.columns[j], first_row + row, value)

    def _columns(self, pieces, finite: bool = False) -> tuple[list[np.ndarray], np.ndarray | None]:
        """One chunk's feature and target columns, and its weights: views of the read batches where
        a column is float64 without nulls in one piece (no copy). NaN and inf are looked for only
        with ``finite`` (the weights always: one column)."""
        columns = []
        for j in range(len(self.columns)):
            check = finite or self.weight_name is not None and j == len(self.columns) - 1
            parts = [self._values(path, first_row, batch.column(j), j, finite=check)
                     for path, first_row, batch in pieces]
            columns.append(parts[0] if len(parts) == 1 else np.concatenate(parts))
        return (columns[:-1], columns[-1]) if self.weight_name else (columns, None)

    def __repr__(self) -> str:
        where = str(self.paths[0]) if len(self.paths) == 1 else f"{self.paths[0].parent} ({len(self.paths)} files)"
        weights = f", weights={self.weight_name!r}" if self.weight_name else ""
        return (f"StreamSource({where}, format={self.format!r}, features={list(self.feature_names)}, "
                f"targets={list(self.target_names)}{weights}, n_rows={self.n_rows})")


# ---- opening: files, format, columns ----------------------------------------------------------

def open_source(
    path: str | os.PathLike,
    *,
    target: Sequence[str] | str | None = None,
    features: Sequence[str] | None = None,
    weights: str | None = None,
    read_bytes: int = STREAM_READ_BYTES,
) -> StreamSource:
    """Resolve a CSV, TSV or Parquet file, or a folder of them, for streaming.

    Parameters
    ----------
    path : a file (``.csv``, ``.tsv``, ``.parquet``, ``.pq``) or a folder; a folder's files
        with those extensions (names starting with ``.`` or ``_`` aside) are read in name
        order and must share one format and the same columns.
    target, features, weights : as in :func:`torchlinreg.files.read_dataset`: by default the
        target is the last column and the features every other numeric column (a text column
        is left out with a warning; a text column holding some numbers is an error naming the row).
    read_bytes : values per Parquet record batch read at once, at most (see
        :func:`torchlinreg.memory.stream_read_bytes` for one within a memory budget)

    Returns
    -------
    StreamSource; only the files' metadata (Parquet) or first block of text (CSV) is read.
    For CSV the column types are taken from the first block; a later value that is not a
    number is reported by :meth:`StreamSource.chunks` with its row.

    Raises
    ------
    DataError
        The path is missing or unreadable, a folder holds no data files or files that differ
        in format or columns, or a named column is missing or unusable.
    """
    _check_positive("read_bytes", read_bytes)
    path = Path(path)
    paths = _data_files(path)
    fmt = FORMATS[paths[0].suffix.lower()]
    schema, sample, sample_path, n_rows = _open_all(path, paths, fmt)
    table = files._Table(schema, len(sample), lambda names: sample.select(names),
                         (schema.names[-1],) if schema.names else ())
    weight_col = files._names(path, weights, "weight", schema.names) if weights is not None else ()
    if weight_col and target is None and table.default_target == weight_col:
        raise DataError(f"{path}: the weight column {weights!r} is the last column, the default target; "
                        "name the target with --target")
    if weight_col and features is None:  # default features: every other numeric column but the weights
        chosen_targets = files._names(path, target, "target", schema.names) or table.default_target
        features = [n for n in schema.names if n not in chosen_targets + weight_col
                    and files._is_numeric(schema.field(n).type)]
    targets, feats, _ = files._select(path, table, target, features)
    if weight_col and weight_col[0] in feats + targets:
        raise DataError(f"{path}: column {weights!r} is the weight column and also a feature or target; "
                        "list it in only one place")
    roles = [("feature", n) for n in feats] + [("target", n) for n in targets] + [("weight", n) for n in weight_col]
    for role, name in roles:  # a text column named explicitly fails here, on its first bad row
        kind = schema.field(name).type
        if not (files._is_numeric(kind) or pa.types.is_null(kind)):
            files._column_values(sample_path, name, sample.column(name), fix=_ROLE_FIX[role])
    bools = tuple(n for _, n in roles if fmt != "parquet" and pa.types.is_boolean(schema.field(n).type))
    return StreamSource(tuple(paths), fmt, feats, targets, weight_col[0] if weight_col else None,
                        n_rows if fmt == "parquet" else None, read_bytes=read_bytes, _bool_columns=bools)


def _data_files(path: Path) -> list[Path]:
    """The file itself, or a folder's data files in name order; each checked to be readable and non-empty."""
    if path.is_dir():
        paths = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in FORMATS
                       and not p.name.startswith((".", "_")))
        if not paths:
            raise DataError(f"{path}: holds no {', '.join(FORMATS)} files; pass a folder of data files or one file")
    else:
        paths = [path]
    for p in paths:
        if p.suffix.lower() not in FORMATS and p.is_file():
            raise DataError(f"{p}: cannot stream {files._suffix_text(p)} files; use one of {', '.join(FORMATS)} "
                            "(save the data as Parquet, or read it whole with read_dataset)")
        suffix, head = files._check_file(p)
        fmt = FORMATS[suffix]
        if fmt != FORMATS[paths[0].suffix.lower()]:
            raise DataError(f"{p}: is {fmt.upper()} but {paths[0].name} is {FORMATS[paths[0].suffix.lower()].upper()}; "
                            f"keep files of one format in {path}")
        nul = head.find(b"\x00")
        if fmt != "parquet" and nul >= 0:
            raise DataError(f"{p}: holds binary data (a NUL byte at offset {nul}), not {fmt.upper()} text; "
                            f"check that it is a {fmt.upper()} file, saved as UTF-8")
    return paths


def _open_all(where: Path, paths: list[Path], fmt: str) -> tuple[pa.Schema, pa.Table, Path, int]:
    """The columns and their types, the first rows found and their file, and the row count (Parquet: all files).

    The names are every file's (checked equal); the types and the sample come from the first
    file holding rows, as read_dataset would see them.
    """
    names, sample, sample_path, n_rows = None, None, paths[0], 0
    for path in paths:
        if fmt == "parquet":
            schema, file_rows = files.parquet_schema(path)
            n_rows += file_rows
            file_sample = _parquet_sample(path, schema) if sample is None and file_rows else None
        else:
            schema, file_sample = _text_head(path, fmt)
        if names is None:
            names = schema.names
            first_schema = schema
        elif schema.names != names:
            raise DataError(f"{path}: {_differs(schema.names, names, paths[0].name)}; "
                            f"give every file in {where} the same columns")
        if sample is None and file_sample is not None and len(file_sample):
            sample, sample_path = file_sample, path
    if sample is None:
        sample = first_schema.empty_table()
    return sample.schema, sample, sample_path, n_rows


def _differs(names: list[str], first: list[str], first_name: str) -> str:
    """How a file's column names differ from the first file's, as message text."""
    missing = [n for n in first if n not in names]
    extra = [n for n in names if n not in first]
    if missing:
        return f"lacks column {missing[0]!r}, which {first_name} has"
    if extra:
        return f"has column {extra[0]!r}, which {first_name} lacks"
    return f"has the columns of {first_name} in another order"


def _parquet_sample(path: Path, schema: pa.Schema) -> pa.Table:
    """The first rows of a Parquet file, for deciding which columns are text (as read_dataset does)."""
    batch = next(_parquet_batches(path, schema.names, CHUNK_ROWS, read_bytes=0), None)  # one chunk's rows
    return pa.Table.from_batches([batch]) if batch is not None else schema.empty_table()


def _csv_read_options(path: Path, **options) -> pa_csv.ReadOptions:
    """pyarrow's read options with a block that holds the whole header line (files._block_size):
    a header longer than a block (a wide file) would otherwise read as no header at all."""
    with open(path, "rb") as f:
        head = f.read(files._SNIFF_BYTES)
    return pa_csv.ReadOptions(block_size=max(_CSV_BLOCK, files._block_size(path, head)), **options)


def _text_head(path: Path, fmt: str) -> tuple[pa.Schema, pa.Table]:
    """A CSV/TSV file's header and the types pyarrow infers from its first block, and that block."""
    delimiter = _DELIMITERS[fmt]
    try:
        reader = pa_csv.open_csv(str(path), read_options=_csv_read_options(path),
                                 parse_options=pa_csv.ParseOptions(delimiter=delimiter),
                                 convert_options=pa_csv.ConvertOptions(null_values=files._NULL_VALUES,
                                                                       strings_can_be_null=True))
        first = next(iter(reader), None)
        reader.schema.names  # noqa: B018 (decodes the header: not UTF-8 raises here)
    except UnicodeDecodeError:
        raise DataError(f"{path}: the header is not UTF-8 text; save the file as UTF-8") from None
    except pa.ArrowInvalid as exc:
        if "Empty CSV" in str(exc):
            with open(path, "rb") as f:
                raise files.no_header_error(path, fmt.upper(), exc, f.read(files._SNIFF_BYTES)) from None
        raise _locate(path, fmt, {}, 1, exc) from None
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{path}: cannot be read as {fmt.upper()} ({files._clean(exc)}); check the file") from None
    files.check_delimiter(path, reader.schema, delimiter)
    sample = pa.Table.from_batches([first]) if first is not None else reader.schema.empty_table()
    return reader.schema, sample


# ---- reading batches ----------------------------------------------------------------------------

def _parquet_batches(path: Path, columns: Sequence[str], chunk_rows: int, read_bytes: int) -> Iterator[pa.RecordBatch]:
    # Record batches as large as the largest row group when it holds at most read_bytes of
    # values (fewer, larger batches decode with less overhead: 10% less CPU than chunk-sized ones),
    # else of as many rows as fit, and never fewer than a chunk. pre_buffer=False with a
    # buffered stream reads pages as needed: a row group of any size never has to sit in
    # memory whole, compressed or decoded (measured: a 264 MB row group read at +80 MB).
    # (pyarrow's dataset scanner, tried too, holds two whole row groups and took as much CPU here.)
    row = 1
    try:
        with pq.ParquetFile(str(path), pre_buffer=False, buffer_size=_PARQUET_BUFFER) as pf:
            meta = pf.metadata
            largest = max((meta.row_group(i).num_rows for i in range(meta.num_row_groups)), default=0)
            batch_rows = max(chunk_rows, min(largest, read_bytes // (8 * len(columns))))
            for batch in pf.iter_batches(batch_size=batch_rows, columns=list(columns)):
                yield batch
                row += len(batch)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{path}: cannot be read from row {row} on ({files._clean(exc)}); "
                        "the file may be damaged") from None


def _text_batches(path: Path, fmt: str, fixes: dict[str, str], bools: Sequence[str]) -> Iterator[pa.RecordBatch]:
    # Types are given, not inferred: inference sees only the first block, and a column of
    # integers there may hold decimals later. A value that is not a number stops the read;
    # _locate then finds its row.
    types = {name: pa.bool_() if name in bools else pa.float64() for name in fixes}
    convert = pa_csv.ConvertOptions(column_types=types, include_columns=list(fixes),
                                    null_values=files._NULL_VALUES, strings_can_be_null=True)
    row = 1
    try:
        reader = pa_csv.open_csv(str(path), read_options=_csv_read_options(path),
                                 parse_options=pa_csv.ParseOptions(delimiter=_DELIMITERS[fmt]),
                                 convert_options=convert)
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                return
            yield batch
            row += len(batch)
    except pa.ArrowInvalid as exc:
        raise _locate(path, fmt, fixes, row, exc, bools) from None
    except (pa.ArrowException, OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot be read as {fmt.upper()} from row {row} on ({files._clean(exc)}); "
                        "check the file") from None


def _locate(path: Path, fmt: str, fixes: dict[str, str], row: int, exc: Exception,
            bools: Sequence[str] = ()) -> DataError:
    """The row that stopped a read (a row of the wrong width, or a value that is not a number), found by reading again.

    Reads the file once more, streaming: a row of the wrong width is reported by pyarrow's
    invalid-row handler on one thread (only then does it know the row number), a value
    that is not a number by reading the columns as text. ``row`` is where the failed block began.
    """
    kind, delimiter = fmt.upper(), _DELIMITERS[fmt]
    fallback = DataError(f"{path}: cannot be read as {kind} from row {row} on ({files._clean(exc)}); check the file")
    # As bytes: a value that is not UTF-8 is then a value like any other, found by its row.
    convert = pa_csv.ConvertOptions(column_types={name: pa.binary() for name in fixes},
                                    include_columns=list(fixes), null_values=files._NULL_VALUES,
                                    strings_can_be_null=True)
    first_row = 1
    try:  # a value that is not a number, in the blocks before the one that failed
        reader = pa_csv.open_csv(str(path), read_options=_csv_read_options(path, use_threads=False),
                                 parse_options=pa_csv.ParseOptions(delimiter=delimiter), convert_options=convert)
        for batch in reader:
            for name, fix in fixes.items():
                text, message = _as_text(path, name, batch.column(name), first_row, fix)
                message = message or _non_number(path, name, text, first_row, fix, name in bools)
                if message:
                    return DataError(message)
            first_row += len(batch)
    except (pa.ArrowException, OSError, UnicodeDecodeError):
        pass
    width = _wrong_width(path, delimiter)
    return width if width is not None else fallback


def _wrong_width(path: Path, delimiter: str) -> DataError | None:
    """The first row with another number of fields than the header, as read_dataset words it, or None.

    Read on one thread (only then does pyarrow know the row number) and as Latin-1, which any bytes
    are: pyarrow cannot hand a row that is not UTF-8 to the handler (it prints a traceback).
    """
    invalid = []

    def note(bad):
        invalid.append(bad)
        return "error"

    options = _csv_read_options(path, use_threads=False, encoding="latin1")
    try:  # one column as text: nothing to convert that could stop the read before the row
        first = pa_csv.open_csv(str(path), read_options=options, parse_options=pa_csv.ParseOptions(
            delimiter=delimiter, invalid_row_handler=lambda bad: "skip")).schema.names[0]
        reader = pa_csv.open_csv(str(path), read_options=options,
                                 parse_options=pa_csv.ParseOptions(delimiter=delimiter, invalid_row_handler=note),
                                 convert_options=pa_csv.ConvertOptions(include_columns=[first],
                                                                       column_types={first: pa.string()}))
        for _ in reader:
            pass
    except (pa.ArrowException, OSError):
        pass
    if not invalid:
        return None
    return files.wrong_width_error(path, invalid[0], delimiter)


def _as_text(path: Path, name: str, raw: pa.Array, first_row: int, fix: str) -> tuple[pa.Array | None, str | None]:
    """A column read as bytes, as text; or None and the message for its first value that is not UTF-8."""
    try:
        return raw.cast(pa.string()), None  # pyarrow checks the UTF-8; only a failure is looked at value by value
    except pa.ArrowInvalid:
        pass
    for i, value in enumerate(raw.to_pylist()):
        if value is not None:
            try:
                value.decode("utf-8")
            except UnicodeDecodeError:
                shown = files._show(value.decode("utf-8", "backslashreplace"))
                return None, (f"{path}: column {files._show(name)} row {first_row + i} holds {shown}, "
                              f"which is not UTF-8 text, let alone a number; correct it, {fix}")
    return None, f"{path}: column {files._show(name)} is not UTF-8 text; save the file as UTF-8"


def _non_number(path: Path, name: str, text: pa.Array, first_row: int, fix: str, boolean: bool = False) -> str | None:
    """The message for the first value of a text column that does not convert, or None."""
    if boolean:  # a column of true/false text in its first block (read_dataset reads it as 0/1)
        bad = pc.and_kleene(pc.is_valid(text), pc.invert(pc.is_in(text, value_set=pa.array(_BOOL_TEXT))))
        if not pc.any(bad).as_py():
            return None
        i = pc.index(bad, True).as_py()
        return (f"{path}: column {name!r} row {first_row + i} holds {files._show(text[i].as_py())}, "
                f"not true or false like the rows before; correct it, {fix}")
    try:
        text.cast(pa.float64())
        return None
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    where = files._first_non_number(pa.chunked_array([text]), first_row)
    if not where.startswith("row"):  # no single value to blame
        return None
    return f"{path}: column {name!r} {where}; correct it, {fix}"


def _read_ahead(items: Iterator, depth: int) -> Iterator:
    """``items``, produced by a background thread up to ``depth`` ahead of the consumer.

    pyarrow decodes without holding Python's lock, so the next items are read while the
    caller works on this one. The thread starts item ``n + depth + 1`` only once the caller
    has asked for item ``n + 1``: at most ``depth + 1`` items are made and not yet passed.
    A caller that keeps part of an earlier item holds it too (``_group`` keeps the last rows
    of a record batch for the chunk they start, and so the whole batch until then). An
    exception from ``items`` is raised here, in order; closing this generator early stops
    the thread.
    """
    if depth <= 0:
        yield from items
        return
    slots = queue.Queue()
    free = threading.Semaphore(depth + 1)  # one per item alive: the caller's and those made ahead of it
    stop = threading.Event()
    done = object()

    def acquire() -> bool:  # False once the consumer has stopped
        while not stop.is_set():
            if free.acquire(timeout=0.1):
                return True
        return False

    def produce():
        try:
            while acquire():
                try:
                    item = next(items)
                except StopIteration:
                    slots.put((done, None))
                    return
                slots.put((item, None))
        except BaseException as exc:  # handed to the consumer, raised there
            slots.put((done, exc))

    items = iter(items)
    thread = threading.Thread(target=produce, name="torchlinreg-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            item, exc = slots.get()
            if item is done:
                if exc is not None:
                    raise exc
                return
            yield item
            item = None  # the caller has asked for the next one: one more may be made
            free.release()
    finally:
        stop.set()
        thread.join()
        close = getattr(items, "close", None)
        if close is not None:
            close()


def _group(pieces: Iterator[tuple[Path, int, pa.RecordBatch]], chunk_rows: int):
    """Regroup (path, first_row, batch) pieces into lists holding exactly ``chunk_rows`` rows (the last fewer)."""
    group, size = [], 0
    for path, row, batch in pieces:
        offset = 0
        while offset < len(batch):
            take = min(chunk_rows - size, len(batch) - offset)
            group.append((path, row + offset, batch.slice(offset, take)))  # a zero-copy view
            size, offset = size + take, offset + take
            if size == chunk_rows:
                yield group
                group, size = [], 0
    if group:
        yield group


# ---- exact solution ---------------------------------------------------------------------------

def accumulate(source: StreamSource | str | os.PathLike, *, chunk_rows: int = CHUNK_ROWS,
               fit_intercept: bool = True) -> QRAccumulator:
    """One pass over a source into a :class:`~torchlinreg.solve.QRAccumulator`.

    ``source`` is a :class:`StreamSource` or a path opened with the default columns.
    Memory: about three record batches of ``source.read_bytes`` at most (see :func:`_read_ahead`),
    one chunk's QR workspace, and the small R factor.
    """
    source = _as_source(source)
    acc = QRAccumulator(len(source.feature_names), len(source.target_names), fit_intercept=fit_intercept)
    _check_positive("chunk_rows", chunk_rows)
    fold(source, acc, chunk_rows)
    if acc.weighted and acc.sum_weights == 0:
        raise DataError(f"{_where(source)}: weight column {source.weight_name!r} is all zero; "
                        "give some rows a positive weight")
    return acc


def fold(source: StreamSource, acc: QRAccumulator, chunk_rows: int, part: int = 0, n_parts: int = 1) -> None:
    """Chunks number ``part``, ``part + n_parts``, ... of ``source`` into ``acc``, column by column.

    NaN and inf are found from each block's Gram matrix, not by scanning the values; only then
    is the chunk converted again with the checks, whose message names the file, column and row.
    """
    with _sharing_cores():
        for pieces in source._groups(chunk_rows, part, n_parts):
            columns, w = source._columns(pieces)
            try:
                acc.update_columns(columns, w)  # blocked inside: one Gram pass per block
            except DataError:
                source._convert(pieces)  # raises naming the file, column and row of a NaN or inf
                source._check_magnitudes(pieces)  # ... or of a value whose square overflows
                raise
            del pieces, columns, w  # not held while the next chunk is read


@contextmanager
def _sharing_cores():
    """PyTorch on one thread fewer while the read-ahead thread decodes the next record batch.

    pyarrow's decoding and PyTorch's threads otherwise contend for the same cores (PyTorch's
    spin while they wait), and the pass runs slower than on fewer threads. Restored after.
    """
    threads = torch.get_num_threads()
    if READ_AHEAD <= 0 or threads <= 1:
        yield
        return
    torch.set_num_threads(threads - 1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def solve_source(
    source: StreamSource | str | os.PathLike,
    *,
    chunk_rows: int = CHUNK_ROWS,
    refine: bool | None = None,
    fit_intercept: bool = True,
    rtol: float = RANK_RTOL,
    max_passes: int = MAX_PASSES,
) -> LstsqSolution:
    """The exact least-squares solution of a streamed source: one pass, then refinement passes.

    Equal to :func:`torchlinreg.solve.lstsq` on the whole data read at once (same QR, the rows
    grouped differently; refinement brings both to float64 accuracy). Each refinement pass
    re-reads the source; ``refine=None`` (default) refines only an ill-conditioned design
    (``solve.needs_refinement``), ``refine=False`` makes one pass only.

    Raises
    ------
    DataError
        From :meth:`StreamSource.chunks`, before any solution exists.
    """
    source = _as_source(source)
    acc = accumulate(source, chunk_rows=chunk_rows, fit_intercept=fit_intercept)
    solution = acc.solve(feature_names=source.feature_names, target_names=source.target_names, rtol=rtol)
    if refine is None:
        refine = needs_refinement(solution)
    if not refine:
        return solution
    return refine_solution(solution, lambda: source.chunks(chunk_rows), max_passes=max_passes)


def _as_source(source) -> StreamSource:
    return source if isinstance(source, StreamSource) else open_source(source)


def _where(source: StreamSource) -> Path:
    return source.paths[0] if len(source.paths) == 1 else source.paths[0].parent


def _check_positive(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


# ---- mini-batches for training ------------------------------------------------------------------

class ShuffledBatches(torch.utils.data.IterableDataset):
    """Shuffled mini-batches streamed from a source; use with ``DataLoader(dataset, batch_size=None)``.

    Chunks are read in file order into a buffer of about ``buffer_rows`` rows; when full, the
    buffer is permuted, the whole batches it can spare are emitted as slices, and half of it
    stays to mix with the next chunks. Each epoch yields every row (of this part) exactly
    once, in batches of ``batch_size`` rows, the last one possibly smaller. The order depends
    only on ``seed + epoch`` (call :meth:`set_epoch` before each epoch, as with
    ``DistributedSampler``) and on the part.

    Parts: with ``DataLoader`` workers and/or ranks (``rank``, ``world_size``; by default
    those of an initialised ``torch.distributed``), chunk ``i`` of the source belongs to part
    ``i % n_parts``, so the parts hold disjoint rows and together all of them. Every part
    reads the whole source but converts and checks only its own chunks; parts may differ by
    a chunk of rows (use ``torch.distributed.algorithms.Join`` for uneven inputs under DDP).

    Yields
    ------
    ``(X, y)`` or, with a weight column, ``(X, y, w)``: tensors of shape (b, n_features),
    (b, n_targets), (b,) in ``dtype``.
    """

    def __init__(self, source: StreamSource, batch_size: int, *, buffer_rows: int = BUFFER_ROWS, seed: int = 0,
                 chunk_rows: int = CHUNK_ROWS, dtype: torch.dtype = torch.float32,
                 rank: int | None = None, world_size: int | None = None):
        super().__init__()
        for name, value in (("batch_size", batch_size), ("buffer_rows", buffer_rows), ("chunk_rows", chunk_rows)):
            _check_positive(name, value)
        check_seed("seed", seed)
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating-point torch dtype such as torch.float32, got {dtype!r}")
        if (rank is None) != (world_size is None):
            raise ValueError("give both rank and world_size, or neither")
        if world_size is not None:
            _check_positive("world_size", world_size)
            if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < world_size:
                raise ValueError(f"rank must be an integer from 0 to world_size - 1 = {world_size - 1}, got {rank!r}")
        self.source = source
        self.batch_size = batch_size
        self.buffer_rows = buffer_rows
        self.seed = seed
        self.chunk_rows = chunk_rows
        self.dtype = dtype
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch, which with ``seed`` decides the order (call it before iterating each epoch)."""
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"epoch must be an integer >= 0, got {epoch!r}")
        self.epoch = epoch

    def __repr__(self) -> str:
        return (f"ShuffledBatches({self.source!r}, batch_size={self.batch_size}, buffer_rows={self.buffer_rows}, "
                f"seed={self.seed}, epoch={self.epoch})")

    def _part(self) -> tuple[int, int]:
        """This iterator's part and the number of parts: ranks times DataLoader workers."""
        rank, world = self.rank, self.world_size
        if rank is None:
            dist = torch.distributed
            ready = dist.is_available() and dist.is_initialized()
            rank, world = (dist.get_rank(), dist.get_world_size()) if ready else (0, 1)
        info = torch.utils.data.get_worker_info()
        workers, worker = (info.num_workers, info.id) if info is not None else (1, 0)
        return rank * workers + worker, world * workers

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        part, n_parts = self._part()
        rng = np.random.default_rng([self.seed + self.epoch, part])
        pending, size = [], 0  # chunks (and the buffer's kept rows) not yet shuffled
        keep = self.buffer_rows // 2
        full = max(self.buffer_rows, keep + self.batch_size)  # so that every shuffle has a whole batch to give
        for chunk in self.source._chunks(self.chunk_rows, part, n_parts):
            pending.append(chunk)
            size += len(chunk[0])
            if size >= full:
                pool = _shuffled(pending, rng)
                n_out = (size - keep) // self.batch_size * self.batch_size
                yield from self._batches(pool, n_out)
                pending, size = [tuple(a[n_out:] if a is not None else None for a in pool)], size - n_out
        if size:
            yield from self._batches(_shuffled(pending, rng), size)

    def _batches(self, pool, n_rows: int) -> Iterator[tuple[torch.Tensor, ...]]:
        """The first ``n_rows`` rows of the shuffled pool as tensors, split into batches (views, no per-row work)."""
        parts = [torch.from_numpy(a[:n_rows]).to(self.dtype).split(self.batch_size) for a in pool if a is not None]
        yield from zip(*parts)


def _shuffled(pending: list[tuple], rng: np.random.Generator) -> tuple:
    """The pending chunks concatenated, their rows in one random order."""
    order = rng.permutation(sum(len(chunk[0]) for chunk in pending))
    return tuple(None if chunk_parts[0] is None else np.concatenate(chunk_parts)[order]
                 for chunk_parts in zip(*pending))
