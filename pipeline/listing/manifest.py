"""The list stage's checkpoint: one CSV per run, one row per object, streamed batch by batch to a
scratch file and published whole at the end. `pandas.read_csv` reads it as is."""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from pipeline.sources.base import OBJECT_COLUMNS, ObjectInfo
from pipeline.workdir import WorkDir

STATUS_COLUMNS = ["status", "needs_embedding", "reason"]
MANIFEST_COLUMNS = OBJECT_COLUMNS + STATUS_COLUMNS
# new: first seen (or back after a deletion); changed: bytes differ; unchanged; deleted: gone from a
# complete listing; skipped: not an image, filtered out, or over the size limit (see reason).
STATUSES = ("new", "changed", "unchanged", "deleted", "skipped")


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
        return self.work_dir.publish(self._file.name, self.relpath)

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
            "status",
            "reason",
        )
    }
    return pd.read_csv(
        path,
        dtype=text | {"size": "Int64"},
        keep_default_na=False,
        na_values={"size": [""]},
        parse_dates=["updated_at"],
    )


def _values(obj: ObjectInfo) -> tuple:
    return tuple(
        value.isoformat() if hasattr(value, "isoformat") else value
        for value in (getattr(obj, column) for column in OBJECT_COLUMNS)
    )
