"""A dataset's files read with pyarrow (the `parquet` extra), for the parquet:// source: their
schema, their batches streamed, their image column, and rows fetched by number holding one row
group (Parquet) or one record batch (an Arrow IPC stream, `save_to_disk`'s) at a time."""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError, PermanentError

#: rows per batch while listing: bounds the memory a listing holds (images included)
LIST_BATCH_ROWS = 256


def load_pyarrow():
    try:
        import pyarrow  # (imports pyarrow.ipc and pyarrow.types with it)
        import pyarrow.parquet
    except ImportError:
        raise ConfigError(
            "reading parquet:// needs pyarrow, not installed: pip install 'imgvec[parquet]'"
        ) from None
    return pyarrow


def is_stream(file: Path) -> bool:
    """Whether the file is an Arrow IPC stream (`save_to_disk`'s), not Parquet."""
    return file.suffix == ".arrow"


def read_schema(file: Path):
    pa = load_pyarrow()
    if is_stream(file):
        with pa.ipc.open_stream(pa.memory_map(str(file))) as reader:
            return reader.schema
    return pa.parquet.read_schema(file)


def iter_batches(file: Path, columns: list[str]):
    """The file's record batches with only those columns, streamed."""
    pa = load_pyarrow()
    if not is_stream(file):
        yield from pa.parquet.ParquetFile(file).iter_batches(
            batch_size=LIST_BATCH_ROWS, columns=columns
        )
        return
    with pa.ipc.open_stream(pa.memory_map(str(file))) as reader:
        for batch in reader:
            yield batch.select(columns)


def find_image_column(schema, requested: str | None, file: Path) -> str:
    if requested is not None:
        if requested not in schema.names or not holds_image(schema.field(requested).type):
            raise PermanentError(f"{file}: no image column {requested!r} (binary, or bytes+path)")
        return requested
    candidates = [f.name for f in schema if holds_image(f.type)]
    if len(candidates) != 1:
        raise PermanentError(
            f"{file}: {len(candidates)} image columns ({', '.join(candidates) or 'none'})",
            hint="name one with ?image=COLUMN" if candidates else "images are binary columns",
        )
    return candidates[0]


def holds_image(kind) -> bool:
    """A binary column, or a struct with a binary `bytes` field (an `Image()` feature)."""
    pa = load_pyarrow()
    if pa.types.is_struct(kind):
        index = kind.get_field_index("bytes")
        return index >= 0 and is_binary(kind.field(index).type)
    return is_binary(kind)


def is_binary(kind) -> bool:
    types = load_pyarrow().types
    return bool(
        types.is_binary(kind)
        or types.is_large_binary(kind)
        or types.is_binary_view(kind)
        or types.is_fixed_size_binary(kind)
    )


def is_scalar(kind) -> bool:
    """A column whose values are JSON scalars (binary ones are images, not attributes)."""
    pa = load_pyarrow()
    if pa.types.is_dictionary(kind):  # (a categorical column: its values are)
        kind = kind.value_type
    return not (pa.types.is_nested(kind) or is_binary(kind))


class Rows:
    """Rows of one file's image column by number, holding one row group (Parquet) or one record
    batch (an Arrow stream, read forward only) at a time: never the whole file."""

    def __init__(self, path: Path, requested: str | None) -> None:
        self.path, self.requested = path, requested
        self.column = find_image_column(read_schema(path), requested, path)
        self._batches: Iterator | None = None
        self._start = 0  # the first row of the cached batch
        self._batch: Any = None
        self._stream = is_stream(path)
        if not self._stream:
            self._parquet = load_pyarrow().parquet.ParquetFile(path)
            metadata = self._parquet.metadata
            sizes = (metadata.row_group(i).num_rows for i in range(metadata.num_row_groups))
            self._group_starts = list(itertools.accumulate(sizes, initial=0))

    def value(self, row: int) -> Any:
        if row < 0:
            raise FileNotFoundError(f"{self.path}: no row {row}")
        if self._stream:
            return self._stream_value(row)
        group = bisect.bisect_right(self._group_starts, row) - 1
        if group >= len(self._group_starts) - 1:
            raise FileNotFoundError(f"{self.path}: no row {row}")
        if self._batch is None or self._start != self._group_starts[group]:
            self._start = self._group_starts[group]
            self._batch = self._parquet.read_row_group(group, columns=[self.column]).column(0)
        return self._batch[row - self._start].as_py()

    def _stream_value(self, row: int) -> Any:
        if self._batches is None or row < self._start:  # (behind us: read the stream again)
            self._batches, self._start, self._batch = (
                iter_batches(self.path, [self.column]),
                0,
                None,
            )
        while self._batch is None or row >= self._start + self._batch.num_rows:
            if self._batch is not None:
                self._start += self._batch.num_rows
            self._batch = next(self._batches, None)
            if self._batch is None:
                self._batches = None
                raise FileNotFoundError(f"{self.path}: no row {row}")
        return self._batch.column(0)[row - self._start].as_py()
