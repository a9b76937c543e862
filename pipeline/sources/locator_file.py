"""A file of locators: one per line, or a CSV with a `locator` column. Each locator (of any
installed source's scheme, or a local path) is looked up on its own by the source of its scheme;
such a list covers no prefix, so nothing is ever marked deleted from it."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from pathlib import Path

from pipeline import plugins
from pipeline.core.objects import ObjectInfo
from pipeline.errors import PermanentError
from pipeline.sources.base import Source, SourceOptions
from pipeline.sources.local import scheme_of


class LocatorFileSource(Source):
    scheme = "list"
    complete_listing = False
    # Two folders or buckets can each hold an x.jpg.
    names_may_clash = True

    def __init__(self, spec: str | None, options: SourceOptions) -> None:
        super().__init__(spec, options)
        self.path = Path(spec).expanduser() if spec else None
        #: scheme -> the source that looks up its locators (one each: they share a client)
        self._sources: dict[str, Source] = {}

    @classmethod
    def accepts(cls, spec: str) -> bool:
        return Path(spec).expanduser().is_file()

    def root(self) -> str:
        return "list:" + os.path.abspath(self._listed_file())

    def _listed_file(self) -> Path:
        assert self.path is not None  # (a source made only to read lists nothing)
        return self.path

    def locators(self) -> Iterator[str]:
        with open(self._listed_file(), newline="", encoding="utf-8") as fh:
            header = next(csv.reader([fh.readline()]), [])
            fh.seek(0)
            if "locator" in header:
                rows = (row.get("locator") or "" for row in csv.DictReader(fh))
            else:
                rows = (line for line in fh if not line.startswith("#"))
            yield from (row.strip() for row in rows if row.strip())

    def list(self) -> Iterator[ObjectInfo]:
        for locator in self.locators():
            try:
                yield self.stat(locator)
            except PermanentError as err:
                raise PermanentError(f"{self.spec}: {err}", hint=err.hint) from None

    def stat(self, locator: str) -> ObjectInfo:
        return self._source(locator).stat(locator)

    def read(self, locator: str, *, max_bytes: int, size: int | None = None) -> bytes:
        return self._source(locator).read(locator, max_bytes=max_bytes, size=size)

    def _source(self, locator: str) -> Source:
        scheme = scheme_of(locator)
        if scheme not in self._sources:
            self._sources[scheme] = plugins.source_class(scheme)(None, self.options)
        return self._sources[scheme]
