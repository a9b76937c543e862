"""What every source yields, and the small protocol a source implements."""

from __future__ import annotations

import base64
import mimetypes
from collections.abc import Iterator
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Protocol
from urllib.parse import urlsplit

from pipeline.errors import PermanentError


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """One object as a listing saw it. Column order here is the manifest's column order."""

    locator: str
    scheme: str
    bucket: str | None
    key: str
    name: str
    size: int | None = None
    generation: str | None = None
    etag: str | None = None
    md5: str | None = None
    crc32c: str | None = None
    content_hash: str | None = None
    content_type: str | None = None
    updated_at: datetime | None = None


OBJECT_COLUMNS = [f.name for f in fields(ObjectInfo)]


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


def md5_hash(hex_digest: str) -> str:
    """The content hash imgvec uses everywhere, so identical bytes match across stores."""
    return f"md5:{hex_digest}"


def md5_from_base64(value: str | None) -> str | None:
    return md5_hash(base64.b64decode(value).hex()) if value else None


def guess_content_type(key: str) -> str | None:
    return mimetypes.guess_type(key, strict=False)[0]


def relative_name(key: str, prefix: str) -> str:
    """The name an analyst uses: the key below the listed prefix ("2026/IMG001.jpg" under "2026/"
    is "IMG001.jpg"); the whole key when the prefix is not a folder boundary."""
    if prefix and key.startswith(prefix):
        rest = key[len(prefix) :]
        if prefix.endswith("/"):
            return rest
        if rest.startswith("/"):
            return rest[1:]
    return key
