"""Objects and their keys. A listed object is known by its locator (where it is); its bytes by a
content key (what it is): identical bytes under several locators are embedded once per space."""

from __future__ import annotations

import base64
import mimetypes
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """One object as a listing saw it. Column order here is the manifest's column order."""

    locator: str
    scheme: str  # the kind of source that listed it (the source plug-in's scheme)
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
    # What is known of the image beyond its bytes (a label, a split...): JSON scalars by name, from
    # the source itself, the folder layout or a sidecar table (pipeline.listing.attributes).
    attributes: dict[str, Any] | None = None


OBJECT_COLUMNS = [f.name for f in fields(ObjectInfo)]


def content_key(locator: str, content_hash: str | None) -> str:
    """What identifies an object's bytes: their hash, or the locator when the store gives none."""
    return content_hash or locator


def md5_hash(hex_digest: str) -> str:
    """The content hash imgvec uses everywhere, so identical bytes match across stores."""
    return f"md5:{hex_digest}"


def md5_from_base64(value: str | None) -> str | None:
    return md5_hash(base64.b64decode(value).hex()) if value else None


def guess_content_type(key: str) -> str | None:
    return mimetypes.guess_type(key, strict=False)[0]


# (leading bytes, offset) -> content type: the list stage keeps image/* objects, a dataset's rows
# have no file name to guess from, and a file named as a list of locators may be an image.
_MAGIC = [
    (b"\x89PNG\r\n\x1a\n", 0, "image/png"),
    (b"\xff\xd8\xff", 0, "image/jpeg"),
    (b"GIF8", 0, "image/gif"),  # GIF87a, GIF89a
    (b"WEBP", 8, "image/webp"),
    (b"BM", 0, "image/bmp"),
    (b"II*\x00", 0, "image/tiff"),
    (b"MM\x00*", 0, "image/tiff"),
]


def sniff_content_type(data: bytes) -> str | None:
    """The image type the bytes' magic number says, or None when it is none of ours."""
    for magic, offset, content_type in _MAGIC:
        if data[offset : offset + len(magic)] == magic:
            return content_type
    return None


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
