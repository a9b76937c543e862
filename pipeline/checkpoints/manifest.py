"""The manifest: the list stage's checkpoint, `manifests/manifest-<UTC time>.csv`, one CSV per
listing, one row per object. Written by the list stage (streamed batch by batch to a scratch file,
published whole at the end), read by the embed stage (the latest one). `pandas.read_csv` reads it
as is. The `attributes` column holds each object's attributes as JSON text (empty: none); a
manifest of an older imgvec has no such column."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

import pandas as pd

from pipeline.checkpoints.run_markers import run_slug
from pipeline.core.objects import OBJECT_COLUMNS, ObjectInfo
from pipeline.errors import ConfigError
from pipeline.workdir import WorkDir

FOLDER = "manifests"

STATUS_COLUMNS = ["status", "needs_embedding", "reason"]
MANIFEST_COLUMNS = OBJECT_COLUMNS + STATUS_COLUMNS
# new: first seen (or back after a deletion); changed: bytes differ; unchanged; deleted: gone from a
# complete listing; skipped: not an image, filtered out, or over the size limit (see reason).
STATUSES = ("new", "changed", "unchanged", "deleted", "skipped")


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    """What the embed stage reads of a manifest row."""

    locator: str
    content_hash: str | None
    status: str
    size: int | None
    content_type: str | None

    @property
    def present(self) -> bool:
        """Listed as an image that exists (not deleted, not skipped)."""
        return self.status not in ("deleted", "skipped")


def manifest_path(listed_at: datetime, run_id: str | None = None) -> str:
    """Where a listing made at `listed_at` (UTC) is published: names sort by time (the run id, of
    a sharded run, follows the time: `latest_manifest` still finds the latest)."""
    run = f"-{run_slug(run_id)}" if run_id else ""
    return f"{FOLDER}/manifest-{listed_at:%Y%m%dT%H%M%S%fZ}{run}.csv"


def latest_manifest(work: WorkDir) -> str:
    manifests = [p for p in work.list(FOLDER) if p.endswith(".csv")]
    if not manifests:
        raise ConfigError(
            f"no manifest in {work.spec}",
            hint=f"run `imgvec list SOURCE --work-dir {work.spec}` first",
        )
    return manifests[-1]  # names carry a sortable UTC time


_ENTRY_COLUMNS = ["locator", "content_hash", "status", "size", "content_type"]


def iter_entries(work: WorkDir, relpath: str, chunk_rows: int = 10_000) -> Iterator[ManifestEntry]:
    """The manifest's rows, streamed (a manifest of millions of rows is never held whole)."""
    with work.open_text(relpath) as fh:
        chunks = pd.read_csv(
            fh,
            # (a manifest of an older imgvec may lack content_type)
            usecols=lambda column: column in _ENTRY_COLUMNS,
            dtype="string",
            keep_default_na=False,
            chunksize=chunk_rows,
        )
        for chunk in chunks:
            if "content_type" not in chunk:
                chunk["content_type"] = ""
            # (usecols keeps the file's column order: name the order wanted)
            for locator, content_hash, status, size, content_type in chunk[
                _ENTRY_COLUMNS
            ].itertuples(index=False):
                yield ManifestEntry(
                    locator,
                    content_hash or None,
                    status,
                    int(size) if size else None,
                    content_type or None,
                )


class ManifestWriter:
    def __init__(self, work_dir: WorkDir, relpath: str) -> None:
        self.work_dir = work_dir
        self.relpath = relpath
        self._file = work_dir.scratch_file(relpath)
        self._header = True
        self.rows = 0

    def write(self, rows: Iterable[tuple[ObjectInfo, str, str | None]]) -> None:
        records = [
            (*_values(obj), status, status in ("new", "changed"), reason)
            for obj, status, reason in rows
        ]
        if not records:
            return
        frame = pd.DataFrame.from_records(records, columns=MANIFEST_COLUMNS)
        frame["size"] = frame["size"].astype("Int64")
        frame.to_csv(self._file, header=self._header, index=False)
        self._header = False
        self.rows += len(records)

    def publish(self) -> str:
        if self._header:  # nothing listed: still a valid CSV with the columns
            pd.DataFrame(columns=MANIFEST_COLUMNS).to_csv(self._file, index=False)
        self._file.close()
        published = self.work_dir.publish(self._file.name, self.relpath)
        assert published is not None  # (only an exclusive publish can find its place taken)
        return published

    def discard(self) -> None:
        self._file.close()
        self.work_dir.discard(self._file.name)


def read_manifest(path) -> pd.DataFrame:
    """A manifest as a DataFrame, with names kept as text (never parsed as numbers or NaN)."""
    text = {
        c: "string"
        for c in (
            "locator",
            "scheme",
            "bucket",
            "key",
            "name",
            "generation",
            "etag",
            "md5",
            "crc32c",
            "content_hash",
            "content_type",
            "attributes",
            "status",
            "reason",
        )
    }
    frame = pd.read_csv(
        path,
        dtype=text | {"size": "Int64"},
        keep_default_na=False,
        na_values={"size": [""]},
        parse_dates=["updated_at"],
    )
    if "attributes" not in frame:  # (a manifest of an older imgvec)
        frame.insert(OBJECT_COLUMNS.index("attributes"), "attributes", "")
        frame["attributes"] = frame["attributes"].astype("string")
    return frame


def _values(obj: ObjectInfo) -> tuple:
    return tuple(_manifest_value(getattr(obj, column)) for column in OBJECT_COLUMNS)


def _manifest_value(value):
    if isinstance(value, dict):  # the attributes
        return json.dumps(value, ensure_ascii=False)
    return value.isoformat() if hasattr(value, "isoformat") else value
