"""Rewriting a Parquet file's footer: the row counts a damaged or hostile file may claim.

The footer is a Thrift struct (FileMetaData) in the compact protocol; this walks it, finds the
integers to change by their field path, and writes them back (a varint may change length: nothing
in the footer points into the footer, and its length is written again after it).
Field numbers from parquet.thrift: FileMetaData.num_rows = 3, .row_groups = 4; RowGroup.columns = 1,
.num_rows = 3; ColumnChunk.meta_data = 3; ColumnMetaData.num_values = 5.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

FILE_ROWS = (3,)
GROUP_ROWS = (4, "group", 3)
CHUNK_VALUES = (4, "group", 1, "column", 3, 5)


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return result, pos


def _zigzag(value: int) -> bytes:
    z, out = (value << 1) ^ (value >> 63), bytearray()
    while z >= 0x80:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def _walk(buf: bytes, pos: int, kind: int, path: tuple, found: list) -> int:
    """Skip one value of Thrift compact type ``kind``, noting (path, start, end) of every integer."""
    if kind in (1, 2):  # bool in the field header
        return pos
    if kind == 3:
        return pos + 1
    if kind in (4, 5, 6):  # i16, i32, i64: zigzag varints
        start = pos
        _, pos = _varint(buf, pos)
        found.append((path, start, pos))
        return pos
    if kind == 7:
        return pos + 8
    if kind == 8:
        n, pos = _varint(buf, pos)
        return pos + n
    if kind in (9, 10):  # list, set
        header, pos = buf[pos], pos + 1
        n, element = header >> 4, header & 0x0F
        if n == 15:
            n, pos = _varint(buf, pos)
        for i in range(n):
            pos = _walk(buf, pos, element, path + (i,), found)
        return pos
    if kind == 11:  # map
        n, pos = _varint(buf, pos)
        if n:
            kv, pos = buf[pos], pos + 1
            for i in range(n):
                pos = _walk(buf, pos, kv >> 4, path + (i,), found)
                pos = _walk(buf, pos, kv & 0x0F, path + (i,), found)
        return pos
    assert kind == 12, kind  # struct: fields until a 0 byte
    field = 0
    while True:
        header, pos = buf[pos], pos + 1
        if header == 0:
            return pos
        if header >> 4:
            field += header >> 4
        else:
            z, pos = _varint(buf, pos)
            field = (z >> 1) ^ -(z & 1)
        pos = _walk(buf, pos, header & 0x0F, path + (field,), found)


def _matches(path: tuple, pattern: tuple) -> tuple | None:
    """The list indices where ``pattern`` has a name, or None when ``path`` does not fit it."""
    if len(path) != len(pattern):
        return None
    indices = []
    for part, want in zip(path, pattern):
        if isinstance(want, str):
            indices.append(part)
        elif part != want:
            return None
    return tuple(indices)


def rewrite_footer(data: bytes, edits: dict[tuple, Callable[..., int]]) -> bytes:
    """``data`` (a whole Parquet file) with the footer's integers at each pattern set to ``edits[pattern](*indices)``."""
    length = struct.unpack("<I", data[-8:-4])[0]
    start = len(data) - 8 - length
    footer, found = data[start:-8], []
    _walk(footer, 0, 12, (), found)
    changes = []
    for path, a, b in found:
        for pattern, value in edits.items():
            indices = _matches(path, pattern)
            if indices is not None:
                changes.append((a, b, _zigzag(value(*indices))))
    new = bytearray(footer)
    for a, b, value in sorted(changes, reverse=True):
        new[a:b] = value
    return data[:start] + bytes(new) + struct.pack("<I", len(new)) + b"PAR1"
