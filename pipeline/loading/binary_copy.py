"""PostgreSQL's binary COPY format for a whole batch of rows at once, laid out with NumPy.

asyncpg's `copy_records_to_table` encodes row by row and calls pgvector's codec for every vector:
a few µs of Python per 512-d row. On a small machine that client time is taken from the server,
whose COPY is the real limit. Laid out as one NumPy structured array (packed, big-endian: the wire
format itself), 8,192 rows of 512-d vectors are encoded in a few milliseconds and sent as one
buffer with `copy_to_table(..., format="binary")`.

Row layout (https://www.postgresql.org/docs/current/sql-copy.html#id-1.9.3.55.9.4): an int16
field count, then per field an int32 byte length (-1 for NULL) and the value in the type's binary
send format — int4/int8 big-endian; pgvector's `vector` is int16 dim, int16 unused, float4[dim].
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

HEADER = (
    b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
)  # signature, flags, no extension
TRAILER = (-1).to_bytes(2, "big", signed=True)

_FIXED = {"int4": ">i4", "int8": ">i8"}


def binary_copy(columns: Sequence[tuple[str, Any]], rows: int) -> memoryview:
    """The COPY data for `rows` rows. `columns`, in the table's column order, are (type, values):
    "int4" / "int8" — one value for all rows or one per row; "vector" — a 2-D float array;
    "text" — a str or None per row (at most one text column). Row order is not kept: rows are
    laid out by the byte length of their text, one structured array per length.

    A memoryview, not bytes: asyncpg's `copy_to_table(source=...)` takes bytes for a file name."""
    texts = [i for i, (kind, _) in enumerate(columns) if kind == "text"]
    if len(texts) > 1:
        raise ValueError("binary_copy lays out at most one text column")
    if texts:
        encoded = [None if s is None else s.encode() for s in columns[texts[0]][1]]
        lengths = np.fromiter((-1 if b is None else len(b) for b in encoded), np.int64, rows)
    else:
        encoded, lengths = [], np.zeros(rows, np.int64)
    groups = [
        (picked, int(length), _row_type(columns, int(length)))
        for length in np.unique(lengths)
        for picked in [np.flatnonzero(lengths == length)]
    ]
    # One buffer, each group's structured array a view into it: the rows are written once, in place.
    buffer = bytearray(
        len(HEADER) + sum(len(picked) * row.itemsize for picked, _, row in groups) + len(TRAILER)
    )
    buffer[: len(HEADER)], buffer[-len(TRAILER) :] = HEADER, TRAILER
    offset = len(HEADER)
    for picked, length, row in groups:
        _fill(np.frombuffer(buffer, row, len(picked), offset), columns, picked, length, encoded)
        offset += len(picked) * row.itemsize
    return memoryview(buffer)


def _row_type(columns, text_length: int) -> np.dtype:
    """The wire layout of a row whose text is `text_length` bytes (-1: NULL)."""
    fields: list[tuple] = [("count", ">i2")]
    for i, (kind, values) in enumerate(columns):
        fields.append((f"len{i}", ">i4"))
        if kind in _FIXED:
            fields.append((f"val{i}", _FIXED[kind]))
        elif kind == "vector":
            fields += [
                (f"dim{i}", ">i2"),
                (f"unused{i}", ">i2"),
                (f"val{i}", ">f4", (values.shape[1],)),
            ]
        elif kind == "text":
            if text_length > 0:  # NULL and '' carry no bytes
                fields.append((f"val{i}", f"S{text_length}"))
        else:
            raise ValueError(f"binary_copy does not lay out {kind!r} columns")
    return np.dtype(fields)  # packed: no alignment padding, as on the wire


def _fill(out: np.ndarray, columns, picked: np.ndarray, text_length: int, encoded: list) -> None:
    # `picked` is sorted: as long as the column, it is every row in order, and needs no copy.
    def rows(values):
        return values if len(picked) == len(values) else values[picked]

    out["count"] = len(columns)
    for i, (kind, values) in enumerate(columns):
        if kind in _FIXED:
            out[f"len{i}"] = np.dtype(_FIXED[kind]).itemsize
            out[f"val{i}"] = values if np.isscalar(values) else rows(np.asarray(values))
        elif kind == "vector":
            out[f"len{i}"] = 4 + 4 * values.shape[1]
            out[f"dim{i}"], out[f"unused{i}"] = values.shape[1], 0
            out[f"val{i}"] = rows(values)
        else:
            out[f"len{i}"] = text_length
            if text_length > 0:
                out[f"val{i}"] = [encoded[r] for r in picked]
