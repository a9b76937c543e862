"""A file of locators: one per line, or a CSV with a `locator` column. Each locator (gs://, s3://
or a local path) is looked up on its own by the source of its kind; such a list covers no prefix,
so nothing is ever marked deleted from it."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

from pipeline.core.objects import ObjectInfo
from pipeline.errors import PermanentError
from pipeline.sources.gcs import GcsSource
from pipeline.sources.local import stat_file
from pipeline.sources.s3 import S3Source


class LocatorFileSource:
    scheme = "list"
    complete_listing = False

    def __init__(
        self, spec: str | Path, *, timeout: float = 60.0, endpoint_url: str | None = None
    ) -> None:
        self.spec = str(spec)
        self.path = Path(spec)
        self.timeout = timeout
        self.endpoint_url = endpoint_url
        self._buckets: dict[str, GcsSource | S3Source] = {}

    def scope(self) -> tuple[str, str | None, str]:
        return ("list", None, self.spec)

    def locators(self) -> Iterator[str]:
        with open(self.path, newline="", encoding="utf-8") as fh:
            header = next(csv.reader([fh.readline()]), [])
            fh.seek(0)
            if "locator" in header:
                rows = (row.get("locator") or "" for row in csv.DictReader(fh))
            else:
                rows = (line for line in fh if not line.startswith("#"))
            yield from (row.strip() for row in rows if row.strip())

    def iter_objects(self) -> Iterator[ObjectInfo]:
        for locator in self.locators():
            parts = urlsplit(locator)
            if parts.scheme in ("gs", "s3"):
                yield self._bucket(parts.scheme, parts.netloc).stat(parts.path.lstrip("/"))
            else:
                path = Path(locator.removeprefix("file://")).expanduser()
                if not path.is_file():
                    raise PermanentError(f"{self.spec}: {locator!r} is not a file")
                yield stat_file(path)

    def _bucket(self, scheme: str, bucket: str) -> GcsSource | S3Source:
        key = f"{scheme}://{bucket}/"
        if key not in self._buckets:
            self._buckets[key] = (
                GcsSource(key, timeout=self.timeout)
                if scheme == "gs"
                else S3Source(key, endpoint_url=self.endpoint_url)
            )
        return self._buckets[key]
