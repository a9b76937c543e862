"""What every source yields, and the small protocol a source implements."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol
from urllib.parse import urlsplit

from pipeline.core.objects import ObjectInfo
from pipeline.errors import PermanentError


class Source(Protocol):
    """A place images are listed from. `iter_objects` streams; it never holds a whole listing."""

    #: the URI or path the user gave, for messages and the runs table
    spec: str
    #: True when a listing covers a whole prefix, so objects missing from it can be marked deleted
    complete_listing: bool

    def iter_objects(self) -> Iterator[ObjectInfo]: ...

    def scope(self) -> tuple[str, str | None, str]:
        """(scheme, bucket, key prefix) of the objects this source's listing covers."""
        ...


class BucketSource:
    """What the bucket stores (gs://, s3://) share: a spec of the form SCHEME://BUCKET/PREFIX."""

    scheme: str
    complete_listing = True

    def __init__(self, spec: str, *, page_size: int = 1000, client=None) -> None:
        parts = urlsplit(spec)
        if not parts.netloc:
            raise PermanentError(
                f"{spec!r} names no bucket", hint=f"write {self.scheme}://BUCKET/PREFIX"
            )
        self.spec = spec
        self.bucket = parts.netloc
        self.prefix = parts.path.lstrip("/")
        self.page_size = page_size
        self._client = client

    def scope(self) -> tuple[str, str | None, str]:
        return (self.scheme, self.bucket, self.prefix)
