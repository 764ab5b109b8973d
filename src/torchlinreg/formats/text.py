"""CSV and TSV: the whole file at once, or record batches of the chosen columns.

pyarrow parses the text; values that pyarrow's CSV reader calls null (but not the NaN
spellings: "nan" reads as NaN and is reported as NaN) are missing values. A file that cannot be
parsed gets a message naming the row, found by reading the file again on one thread.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pa_csv

from ..columns import Table, clean, first_non_number, is_numeric, show
from ..errors import DataError
from .blocks import MAX_BLOCK, grown, row_ends, straddles, too_long

DELIMITERS = {".csv": ",", ".tsv": "\t", "csv": ",", "tsv": "\t"}  # by suffix and by format name
# pyarrow's default null markers without the NaN spellings: "nan" then reads as NaN and is reported as NaN
NULL_VALUES = ["", "NA", "N/A", "n/a", "NULL", "null", "#N/A", "#N/A N/A", "#NA"]
SNIFF_BYTES = 1 << 16  # enough of the start of a file to tell text from binary
BLOCK_BYTES = 1 << 20  # pyarrow's default CSV read block (larger blocks only cost memory)
_BOOL_TEXT = ["1", "True", "TRUE", "true", "0", "False", "FALSE", "false"]  # pyarrow's CSV spellings of bools


# ---- opening: the header, and what stops a read before any row ----------------------------------

def check_text(path: Path, kind: str, head: bytes) -> None:
    """Refuse a file whose first bytes hold a NUL: binary data, not text."""
    nul = head.find(b"\x00")
    if nul >= 0:
        raise DataError(f"{path}: holds binary data (a NUL byte at offset {nul}), not {kind} text; "
                        f"check that it is a {kind} file, saved as UTF-8")


def open_text(path: Path, suffix: str, head: bytes) -> Table:
    """A CSV/TSV file read whole, as a :class:`~torchlinreg.columns.Table`."""
    kind, delimiter = suffix[1:].upper(), DELIMITERS[suffix]
    check_text(path, kind, head)
    convert = pa_csv.ConvertOptions(null_values=NULL_VALUES, strings_can_be_null=True)
    options = read_options(path, head)
    limit = max(options.block_size, min(MAX_BLOCK, path.stat().st_size + 1))  # a block of the whole file holds any row
    parse = pa_csv.ParseOptions(delimiter=delimiter)
    while True:
        try:
            table = pa_csv.read_csv(str(path), read_options=options, parse_options=parse, convert_options=convert)
            names = table.column_names  # decodes the header
            break
        except Exception as exc:  # noqa: BLE001 - _open_error re-raises what it does not know
            if straddles(exc):  # a row longer than the block: read again with a larger one
                options.block_size = grown(options.block_size, limit, path)
                continue
            if isinstance(exc, pa.ArrowInvalid) and not parse.newlines_in_values:  # a quoted newline
                parse = pa_csv.ParseOptions(delimiter=delimiter, newlines_in_values=True)  # (slower: tried second)
                continue
            raise _open_error(path, kind, exc, head,
                              lambda: _parse_error(path, kind, delimiter, convert, exc, options.block_size)) from None
    check_delimiter(path, table.schema, delimiter)
    return Table(table.schema, table.num_rows, table.select, (names[-1],))


def text_head(path: Path, fmt: str, limit: int = MAX_BLOCK) -> tuple[pa.Schema, pa.Table]:
    """A CSV/TSV file's header and the types pyarrow infers from its first block, and that block
    (a larger block when a row does not fit, up to ``limit`` bytes: see :mod:`.blocks`)."""
    delimiter = DELIMITERS[fmt]
    with open(path, "rb") as f:
        head = f.read(SNIFF_BYTES)
    options = read_options(path, head, limit=limit)
    parse = pa_csv.ParseOptions(delimiter=delimiter, newlines_in_values=True)  # one block: no cost
    while True:
        try:
            reader = pa_csv.open_csv(str(path), read_options=options, parse_options=parse,
                                     convert_options=pa_csv.ConvertOptions(null_values=NULL_VALUES,
                                                                           strings_can_be_null=True))
            first = next(iter(reader), None)
            reader.schema.names  # noqa: B018 (decodes the header: not UTF-8 raises here)
            break
        except Exception as exc:  # noqa: BLE001 - _open_error re-raises what it does not know
            if straddles(exc):
                options.block_size = grown(options.block_size, limit, path)
                continue
            raise _open_error(path, fmt.upper(), exc, head, lambda: locate(path, fmt, {}, 1, exc)) from None
    check_delimiter(path, reader.schema, delimiter)
    sample = pa.Table.from_batches([first]) if first is not None else reader.schema.empty_table()
    return reader.schema, sample


def _open_error(path: Path, kind: str, exc: Exception, head: bytes, invalid) -> DataError:
    """The message for an error opening a text file, whole or streamed; ``invalid()`` words pyarrow's parse errors."""
    if isinstance(exc, UnicodeDecodeError):
        return DataError(f"{path}: the header is not UTF-8 text; save the file as UTF-8")
    if isinstance(exc, pa.ArrowInvalid):
        return no_header_error(path, kind, exc, head) if "Empty CSV" in str(exc) else invalid()
    if isinstance(exc, (pa.ArrowException, OSError)):
        return DataError(f"{path}: cannot be read as {kind} ({clean(exc)}); check the file")
    raise exc


def read_options(path: Path, head: bytes, limit: int = MAX_BLOCK, **options) -> pa_csv.ReadOptions:
    """pyarrow's read options with a block that holds the whole header line: pyarrow finds the
    columns in the first block, so a header longer than a block (1 MiB, some 50,000 columns)
    would otherwise read as no header at all. A header longer than ``limit`` bytes is refused."""
    return pa_csv.ReadOptions(block_size=_block_size(path, head, limit), **options)


def _block_size(path: Path, head: bytes, limit: int = MAX_BLOCK) -> int:
    """pyarrow's read block: its default, or larger when the header line is longer (a wide file)."""
    end = re.search(rb"[\r\n]", head)
    if end is not None or len(head) < SNIFF_BYTES:
        return BLOCK_BYTES
    length = len(head)
    with open(path, "rb") as f:  # scan on for the end of the header, a block at a time
        f.seek(length)
        while piece := f.read(BLOCK_BYTES):
            end = re.search(rb"[\r\n]", piece)
            if end is not None:
                length += end.start()
                break
            length += len(piece)
            if length > limit:  # stop reading: the header alone is over the limit
                break
    if length >= limit:
        raise too_long(path, limit)
    return max(BLOCK_BYTES, min(limit, length + SNIFF_BYTES))


def check_delimiter(path: Path, schema: pa.Schema, delimiter: str) -> None:
    """One column of text is never a data set: refuse it, saying which delimiter is likely, when
    its name holds one (a column of numbers is a one-column file)."""
    if len(schema.names) != 1:
        return
    name = schema.names[0]
    other = next((d for d in (",", "\t", ";", "|") if d != delimiter and d in name), None)
    if other is not None and not is_numeric(schema.field(0).type):
        raise DataError(f"{path}: has one column, {show(name)}; its values seem separated by {other!r}, "
                        f"not {delimiter!r}; save it with {delimiter!r} between values")


def no_header_error(path: Path, kind: str, exc: Exception, head: bytes) -> DataError:
    """The message for pyarrow's "Empty CSV" (no complete first line), read whole or streamed:
    blank lines only, or a header whose quote is never closed, or pyarrow's own words."""
    if not head.removeprefix(b"\xef\xbb\xbf").strip() and len(head) < SNIFF_BYTES:
        return DataError(f"{path}: holds only blank lines, no header; write a header and data rows into it")
    header = head.removeprefix(b"\xef\xbb\xbf").lstrip(b"\r\n").splitlines()[0]
    if header.count(b'"') % 2:
        return DataError(f"{path}: the header has a quote (\") that is never closed, so the whole file reads "
                         f"as one value; close the quote or remove it")
    return DataError(f"{path}: cannot be read as {kind} ({clean(exc)}); check the file")


# ---- rows of the wrong width --------------------------------------------------------------------

def _parse_error(path: Path, kind: str, delimiter: str, convert, exc: Exception, block_size: int) -> DataError:
    """A whole read's parse error in one line; a row with the wrong number of fields gets its row number."""
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
        return DataError(f"{path}: cannot be read as {kind} ({clean(exc)}); check the file")
    return wrong_width_error(path, invalid[0], delimiter)


def wrong_width_error(path: Path, row, delimiter: str) -> DataError:
    """The message for pyarrow's invalid row ``row`` (read as Latin-1), read whole or streamed."""
    where = f"row {row.number - 1}" if row.number else "a row"  # pyarrow counts the header as row 1
    return DataError(f"{path}: {where} has {row.actual_columns} field(s) but the header has "
                     f"{row.expected_columns} (the row reads {show(_utf8(row.text))}); "
                     f"give every row one value per column, separated by {delimiter!r}")


def _utf8(latin1: str) -> str:
    """Text read as Latin-1, decoded as the UTF-8 it was meant to be (bytes that are not UTF-8 escaped)."""
    return latin1.encode("latin1").decode("utf-8", "backslashreplace")


def _wrong_width(path: Path, delimiter: str) -> DataError | None:
    """The first row with another number of fields than the header, as a whole read words it, or None.

    Read on one thread (only then does pyarrow know the row number) and as Latin-1, which any bytes
    are: pyarrow cannot hand a row that is not UTF-8 to the handler (it prints a traceback).
    """
    invalid = []

    def note(bad):
        invalid.append(bad)
        return "error"

    with open(path, "rb") as f:
        options = read_options(path, f.read(SNIFF_BYTES), use_threads=False, encoding="latin1")
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
    return wrong_width_error(path, invalid[0], delimiter)


# ---- record batches -----------------------------------------------------------------------------

def text_batches(path: Path, fmt: str, fixes: dict[str, str], bools: Sequence[str],
                 limit: int = MAX_BLOCK, strings: Collection[str] = ()) -> Iterator[pa.RecordBatch]:
    """The columns named in ``fixes`` (column: how a message about it ends), piece by piece, as float64
    (``bools``: as bool; ``strings``: as text, a formula's categories). Types are given, not inferred: inference sees only the first block, and a column
    of integers there may hold decimals later. A value that is not a number stops the read; :func:`locate`
    then finds its row.

    The file is cut into pieces of about ``PIECE_BYTES`` at row ends (a newline outside quotes) and the
    pieces are parsed on ``PARSERS`` threads at once (pyarrow parses without Python's lock), in order;
    pyarrow's own streaming reader parses one block at a time, and parsing is what a pass over a CSV
    file waits on. A row longer than a piece or a block makes it larger, up to ``limit`` bytes
    (:mod:`.blocks`); a longer row is refused by number.
    """
    types = {name: pa.bool_() if name in bools else pa.string() if name in strings else pa.float64()
             for name in fixes}
    convert = pa_csv.ConvertOptions(column_types=types, include_columns=list(fixes),
                                    null_values=NULL_VALUES, strings_can_be_null=True)
    parse = pa_csv.ParseOptions(delimiter=DELIMITERS[fmt])
    row = [1]  # the first data row of the piece being parsed, for messages
    try:
        with open(path, "rb") as f:
            head = f.read(SNIFF_BYTES)
            if not _splittable(head):  # pyarrow's streaming reader, which knows every line ending
                yield from _streamed(path, head, parse, convert, row, limit)
                return
            header = _header(f, read_options(path, head, limit=limit))
            names = pa_csv.read_csv(pa.py_buffer(header), read_options=pa_csv.ReadOptions(
                block_size=max(BLOCK_BYTES, len(header) + 1)), parse_options=parse).schema.names

            def parsed(p: memoryview) -> pa.Table:  # a piece in one block, however long its rows
                options = pa_csv.ReadOptions(column_names=names, use_threads=False,
                                             block_size=max(PIECE_BYTES * 2, len(p) + 1))
                return pa_csv.read_csv(pa.py_buffer(p), read_options=options, parse_options=parse,
                                       convert_options=convert)

            for piece in _parsed(_pieces(f, limit, path), parsed):
                yield from piece.to_batches()
                row[0] += piece.num_rows
    except DataError:
        raise
    except pa.ArrowInvalid as exc:
        raise locate(path, fmt, fixes, row[0], exc, bools) from None
    except (pa.ArrowException, OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot be read as {fmt.upper()} from row {row[0]} on ({clean(exc)}); "
                        "check the file") from None


PIECE_BYTES = 1 << 22  # text parsed at a time by one thread: large enough to amortise a call, small to overlap
PARSERS = 2  # threads parsing pieces at once (more would contend with the pass that consumes them)


def _splittable(head: bytes) -> bool:
    """Whether rows can be found by their newlines: the header line first (no empty lines before it),
    rows ended by ``\\n`` or ``\\r\\n`` only (pyarrow also takes a lone ``\\r``)."""
    return head[:1] not in (b"\n", b"\r", b"") and b"\n" in head and head.count(b"\r") == head.count(b"\r\n")


def _streamed(path: Path, head: bytes, parse, convert, row: list, limit: int) -> Iterator[pa.RecordBatch]:
    """Record batches from pyarrow's streaming reader, one block at a time; ``row[0]`` follows them.
    A row longer than the block: read again from the start with a block twice as large, the rows
    already given skipped."""
    options = read_options(path, head, limit=limit)
    parse = pa_csv.ParseOptions(delimiter=parse.delimiter, newlines_in_values=True)  # a quoted field's newlines
    done = 0  # rows given
    while True:
        seen = 0
        try:
            for batch in pa_csv.open_csv(str(path), read_options=options, parse_options=parse,
                                         convert_options=convert):
                skip = min(max(done - seen, 0), len(batch))  # rows an earlier attempt gave
                seen += len(batch)
                if skip < len(batch):
                    batch = batch.slice(skip)
                    yield batch
                    done += len(batch)
                    row[0] += len(batch)
            return
        except pa.ArrowInvalid as exc:
            if not straddles(exc):
                raise
            options.block_size = grown(options.block_size, limit, path)


def _header(f, options: pa_csv.ReadOptions) -> bytes:
    """The header line (its end included), from the start of ``f``; ``f`` is left just after it."""
    f.seek(0)
    head = f.read(max(options.block_size, SNIFF_BYTES))
    ends = row_ends(head)
    end = int(ends[0]) if len(ends) else -1
    if end < 0:  # no row after the header: the whole file is the header
        return head + f.read()
    f.seek(end + 1)
    return head[:end + 1]


def _row_end(text: bytes) -> int:
    """The offset of the last newline of ``text`` that ends a row (outside double quotes), or -1."""
    end = text.rfind(b"\n")
    if b'"' not in text:
        return end
    ends = row_ends(text) if end >= 0 else ()
    return int(ends[-1]) if len(ends) else -1


def _pieces(f, limit: int = MAX_BLOCK, path: Path | None = None) -> Iterator[memoryview]:
    """The rest of ``f`` in pieces of about ``PIECE_BYTES`` that end at a row's end (the last may not):
    views of what was read, no copy; a piece's unfinished last row is read again with the next.
    A row longer than ``limit`` bytes is refused (:func:`.blocks.too_long`)."""
    size = PIECE_BYTES
    while text := f.read(size):
        end = _row_end(text) if len(text) == size else len(text) - 1  # the file's end ends the last row
        if end < 0:  # no row ends in it: a row longer than a piece, read it with more
            if size > limit:
                raise too_long(path, limit)
            f.seek(-len(text), 1)
            size *= 2
            continue
        if end + 1 < len(text):
            f.seek(end + 1 - len(text), 1)  # the unfinished row starts the next piece
        yield memoryview(text)[:end + 1]
        size = PIECE_BYTES


def _parsed(pieces: Iterator[memoryview], parse) -> Iterator[pa.Table]:
    """``parse(piece)`` of every piece, in order, ``PARSERS`` pieces parsed at a time."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(PARSERS, thread_name_prefix="torchlinreg-csv") as pool:
        pending = []
        for piece in pieces:
            pending.append(pool.submit(parse, piece))
            if len(pending) > PARSERS:
                yield pending.pop(0).result()
        for future in pending:
            yield future.result()


def locate(path: Path, fmt: str, fixes: dict[str, str], row: int, exc: Exception,
           bools: Sequence[str] = ()) -> DataError:
    """The row that stopped a read (a row of the wrong width, or a value that is not a number), found by reading again.

    Reads the file once more, streaming: a row of the wrong width is reported by pyarrow's
    invalid-row handler on one thread (only then does it know the row number), a value
    that is not a number by reading the columns as text. ``row`` is where the failed block began.
    """
    kind, delimiter = fmt.upper(), DELIMITERS[fmt]
    fallback = DataError(f"{path}: cannot be read as {kind} from row {row} on ({clean(exc)}); check the file")
    # As bytes: a value that is not UTF-8 is then a value like any other, found by its row.
    convert = pa_csv.ConvertOptions(column_types={name: pa.binary() for name in fixes},
                                    include_columns=list(fixes), null_values=NULL_VALUES,
                                    strings_can_be_null=True)
    first_row = 1
    with open(path, "rb") as f:
        options = read_options(path, f.read(SNIFF_BYTES), use_threads=False)
    try:  # a value that is not a number, in the blocks before the one that failed
        reader = pa_csv.open_csv(str(path), read_options=options,
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
                shown = show(value.decode("utf-8", "backslashreplace"))
                return None, (f"{path}: column {show(name)} row {first_row + i} holds {shown}, "
                              f"which is not UTF-8 text, let alone a number; correct it, {fix}")
    return None, f"{path}: column {show(name)} is not UTF-8 text; save the file as UTF-8"


def _non_number(path: Path, name: str, text: pa.Array, first_row: int, fix: str, boolean: bool = False) -> str | None:
    """The message for the first value of a text column that does not convert, or None."""
    import pyarrow.compute as pc

    if boolean:  # a column of true/false text in its first block (a whole read reads it as 0/1)
        bad = pc.and_kleene(pc.is_valid(text), pc.invert(pc.is_in(text, value_set=pa.array(_BOOL_TEXT))))
        if not pc.any(bad).as_py():
            return None
        i = pc.index(bad, True).as_py()
        return (f"{path}: column {name!r} row {first_row + i} holds {show(text[i].as_py())}, "
                f"not true or false like the rows before; correct it, {fix}")
    try:
        text.cast(pa.float64())
        return None
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    where = first_non_number(pa.chunked_array([text]), first_row)
    if not where.startswith("row"):  # no single value to blame
        return None
    return f"{path}: column {name!r} {where}; correct it, {fix}"
