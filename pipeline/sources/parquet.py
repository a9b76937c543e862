"""Images stored inside a dataset, one object per row, read through pyarrow (the `parquet` extra;
no `datasets` import, no hub):

    parquet:///abs/data.parquet              a Parquet file
    parquet:///abs/folder/                   every `*.parquet` below it, sorted, and every
                                             `save_to_disk` folder below it (a `state.json`
                                             naming `data-*.arrow` files, Arrow IPC streams)
    parquet:///abs/folder/?image=img&key=id  options: the image column, the key column

The image column is a binary column, or a struct with a `bytes` field (how `datasets` stores an
`Image()` feature): the only such column, else the one `?image=COL` names. Every other scalar
column becomes an attribute of the object (`ObjectInfo.attributes`); nested and list columns (and
other binary ones) are left out, as attributes are JSON scalars. A row without image bytes (an
`Image()` holding only a path) is not listed: there is nothing to embed.

A locator names the file and the row, stable across runs: `parquet:///abs/data.parquet#row=17`,
or with `?key=COL` that column's value in the row: `parquet:///abs/d.parquet?key=id#key=cat%2F12`.
A row's name is `<file stem>/<key or row>` (below a listed folder, the file's path in it).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterator
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

from pipeline.core.objects import ObjectInfo, md5_hash, sniff_content_type
from pipeline.errors import PermanentError, UsageError
from pipeline.sources.arrow_files import (
    Rows,
    find_image_column,
    is_scalar,
    iter_batches,
    load_pyarrow,
    read_schema,
)
from pipeline.sources.base import Source, SourceOptions

SCHEME = "parquet"
OPTIONS = ("image", "key")


class ParquetSource(Source):
    scheme = SCHEME
    # Every row of the listed files is listed: a row gone from them is deleted.
    complete_listing = True

    def __init__(self, spec: str | None, options: SourceOptions) -> None:
        super().__init__(spec, options)
        #: the file last read from, kept open: the embed stage reads rows in order
        self._rows: Rows | None = None
        #: (file, key column) -> key -> row number, for locators that name a row by its key
        self._key_index: tuple[tuple[str, str], dict[str, int]] | None = None
        if spec is None:
            return
        self.path, self.image_column, self.key_column = _parse(spec)
        if not self.path.exists():
            raise PermanentError(f"cannot list {spec}: no such file or folder")
        self.files = _data_files(self.path)
        if not self.files:
            raise PermanentError(f"cannot list {spec}: no *.parquet or save_to_disk data in it")
        load_pyarrow()  # (a missing extra fails before any run starts)

    def root(self) -> str:
        return f"{SCHEME}://{quote(str(self.path))}" + ("/" if self.path.is_dir() else "")

    def list(self) -> Iterator[ObjectInfo]:
        for file in self.files:
            yield from self._list_file(file)

    def read(self, locator: str, *, max_bytes: int, size: int | None = None) -> bytes:
        file, image_column, key_column, row_ref = _parse_locator(locator)
        if self._rows is None or (self._rows.path, self._rows.requested) != (file, image_column):
            self._rows = Rows(file, image_column)
        if row_ref[0] == "key":
            assert key_column is not None  # (_parse_locator checks a key names its column)
            row = self._row_of_key(file, key_column, row_ref[1])
        else:
            row = int(row_ref[1])
        data = _image_bytes(self._rows.value(row))
        if data is None:
            raise FileNotFoundError(locator)
        return data[: max_bytes + 1]

    def _row_of_key(self, file: Path, key_column: str, key: str) -> int:
        # Built once per file from its key column alone (not the images), then kept.
        if self._key_index is None or self._key_index[0] != (str(file), key_column):
            keys = (str(k) for batch in iter_batches(file, [key_column]) for k in batch.column(0))
            self._key_index = ((str(file), key_column), {k: i for i, k in enumerate(keys)})
        if key not in self._key_index[1]:
            raise FileNotFoundError(f"{file}: no row with {key_column}={key}")
        return self._key_index[1][key]

    def _list_file(self, file: Path) -> Iterator[ObjectInfo]:
        schema = read_schema(file)
        image = find_image_column(schema, self.image_column, file)
        attributes = [f.name for f in schema if f.name != image and is_scalar(f.type)]
        if self.key_column is not None and self.key_column not in schema.names:
            raise PermanentError(f"{file}: no key column {self.key_column!r}")
        columns = list(dict.fromkeys([image, *attributes, *filter(None, [self.key_column])]))
        query = urlencode(
            {n: v for n, v in [("image", self.image_column), ("key", self.key_column)] if v}
        )
        base = f"{SCHEME}://{quote(str(file))}" + (f"?{query}" if query else "")
        name_prefix = _name_prefix(file, self.path)
        updated_at = datetime.fromtimestamp(file.stat().st_mtime, UTC)
        rows = (row for batch in iter_batches(file, columns) for row in batch.to_pylist())
        keys_seen: set[str] = set()  # (a key names one row: a repeated one would name two)
        for number, row in enumerate(rows):
            data = _image_bytes(row[image])
            if data is None:
                continue
            ref, label = f"row={number}", str(number)
            if self.key_column is not None:
                key = str(row[self.key_column])
                if key in keys_seen:
                    raise PermanentError(f"{file}: {self.key_column}={key} names several rows")
                keys_seen.add(key)
                ref, label = f"key={quote(key, safe='')}", key
            name = f"{name_prefix}/{label}"
            wanted = self.options.wanted is None or self.options.wanted(name, len(data))
            digest = hashlib.md5(data, usedforsecurity=False).hexdigest() if wanted else None
            yield ObjectInfo(
                locator=f"{base}#{ref}",
                scheme=SCHEME,
                bucket=None,
                key=f"{file}#{ref}",
                name=name,
                size=len(data),
                content_hash=md5_hash(digest) if digest else None,
                content_type=sniff_content_type(data),
                updated_at=updated_at,
                attributes={column: _json_scalar(row[column]) for column in attributes},
            )


def _parse(spec: str) -> tuple[Path, str | None, str | None]:
    """(absolute path, image column, key column) of a parquet:// spec."""
    parts = urlsplit(spec)
    query = parse_qs(parts.query)
    unknown = set(query) - set(OPTIONS)
    if unknown or any(len(values) > 1 for values in query.values()):
        raise UsageError(
            f"{spec!r}: unknown or repeated option {', '.join(sorted(unknown or query))}",
            hint="the options are ?image=COLUMN&key=COLUMN",
        )
    path = Path(os.path.normpath(Path(unquote(parts.netloc + parts.path)).expanduser().absolute()))
    image_column, key_column = (query[option][0] if option in query else None for option in OPTIONS)
    return path, image_column, key_column


def _parse_locator(locator: str) -> tuple[Path, str | None, str | None, tuple[str, str]]:
    """(file, image column, key column, ("row", N) or ("key", VALUE)) of a locator."""
    without_fragment, _, fragment = locator.partition("#")
    file, image_column, key_column = _parse(without_fragment)
    kind, _, value = fragment.partition("=")
    if kind not in ("row", "key") or (kind == "key") != (key_column is not None):
        raise PermanentError(f"{locator!r} names no row (#row=N, or ?key=COLUMN#key=VALUE)")
    return file, image_column, key_column, (kind, unquote(value))


def _data_files(path: Path) -> list[Path]:
    """The files of a dataset: the one given, or below a folder every `*.parquet` and the Arrow
    files of every `save_to_disk` folder (the ones its `state.json` names), sorted by path."""
    if path.is_file():
        return [path]
    found = []
    for folder, _, names in os.walk(path):
        here = Path(folder)
        found += [here / n for n in names if n.endswith(".parquet")]
        if "state.json" in names:
            state = json.loads((here / "state.json").read_text())
            found += [here / f["filename"] for f in state.get("_data_files", [])]
    return sorted(found, key=lambda file: file.parts)


def _name_prefix(file: Path, listed: Path) -> str:
    """A file's part of its rows' names: its stem, or below a listed folder its path in it
    without the suffix (two folders may each hold a train.parquet)."""
    if file == listed:
        return file.stem
    return str(file.relative_to(listed).with_suffix(""))


def _image_bytes(value: Any) -> bytes | None:
    return value.get("bytes") if isinstance(value, dict) else value


def _json_scalar(value: Any) -> Any:
    """A column value as JSON can hold it: dates as ISO text, decimals as text, NaN as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)
