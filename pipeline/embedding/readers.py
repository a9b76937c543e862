"""Fetching an object's bytes by locator for the embed stage, through the source plug-in of the
locator's scheme, never more than the cap; every way a read fails becomes one ItemFailure here."""

from __future__ import annotations

import threading

from pipeline import plugins
from pipeline.errors import ItemFailure, first_line
from pipeline.sources.base import ObjectTooLarge, Source, SourceOptions
from pipeline.sources.local import scheme_of

MAX_OBJECT_BYTES = 200 * 1024 * 1024

# Storage clients are not thread-safe: one source (and so one client) per thread, and per scheme
# and options, so that two readers of two S3 endpoints in one thread each reach their own store.
_local = threading.local()


class ObjectReader:
    def __init__(
        self, *, s3_endpoint_url: str | None = None, max_bytes: int = MAX_OBJECT_BYTES
    ) -> None:
        self.options = SourceOptions(endpoint_url=s3_endpoint_url)
        self.max_bytes = max_bytes

    def read(self, locator: str, size: int | None = None) -> bytes:
        """The object's bytes. `size`, the listed size if known, fails a larger object before any
        request; either way no more than `max_bytes` + 1 bytes are ever fetched."""
        if size is not None and size > self.max_bytes:
            raise self._too_large()
        try:
            data = self._source(locator).read(locator, max_bytes=self.max_bytes, size=size)
        except ObjectTooLarge:
            raise self._too_large() from None
        except FileNotFoundError:
            raise ItemFailure("object no longer exists (deleted since the listing)") from None
        except Exception as err:
            raise ItemFailure(
                f"cannot read: {type(err).__name__}: {first_line(err, limit=200)}",
                permanent=False,
            ) from None
        if len(data) > self.max_bytes:  # grown since the listing, or a store that ignored the range
            raise self._too_large()
        return data

    def read_range(self, locator: str, start: int, end: int) -> bytes:
        """Bytes `start`..`end` (inclusive) of an object whose store offers ranged reads: a look
        at its head or tail."""
        return self._source(locator).read_range(locator, start, end)

    def _too_large(self) -> ItemFailure:
        return ItemFailure(f"larger than {self.max_bytes} bytes (the cap on one object)")

    def _source(self, locator: str) -> Source:
        sources = getattr(_local, "sources", None)
        if sources is None:
            sources = _local.sources = {}
        key = (scheme_of(locator), self.options)
        if key not in sources:
            sources[key] = plugins.source_class(key[0])(None, self.options)
        return sources[key]
