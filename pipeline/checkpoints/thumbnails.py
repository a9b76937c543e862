"""Thumbnails: `thumbnails/<ab>/<name>.webp`, one small WebP per content key (what an object's
bytes are: `pipeline.core.objects.content_key`), so identical bytes under several locators share
one. Written by the embed stage (from the image it decoded anyway) and by `imgvec thumbnails`;
read by the server, which makes a missing one on demand (`pipeline.embedding.thumbnails`).

A thumbnail is content-addressed: it never changes, so rewriting one (a `--force` re-embed) is
harmless, and a server may tell browsers to cache it for good.
"""

from __future__ import annotations

import hashlib
import re

from pipeline.workdir import WorkDir

THUMBNAIL_SIZE = 256  # pixels, the longest side
FOLDER = "thumbnails"
_HASH_KEY = re.compile(r"^([a-z0-9]+):([0-9a-f]{8,})$")  # md5:<hex>, as the sources make them


def thumbnail_relpath(key: str) -> str:
    """Where the thumbnail of a content key lives in a work dir. A content hash names its file
    as it is ("md5:0a1b…" -> thumbnails/0a/md5-0a1b….webp); a locator (a store that gives no
    hash) is hashed first, since it may hold any character."""
    match = _HASH_KEY.match(key)
    if match:
        algorithm, digest = match.groups()
        name = f"{algorithm}-{digest}"
    else:
        digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
        name = f"locator-{digest}"
    return f"{FOLDER}/{digest[:2]}/{name}.webp"


def write_thumbnail(work: WorkDir, key: str, data: bytes) -> str:
    """Publish a thumbnail whole (replacing one that is there: the same key makes the same
    picture); returns where it went."""
    relpath = thumbnail_relpath(key)
    scratch = work.scratch_file(relpath, binary=True)
    try:
        with scratch:
            scratch.write(data)
        published = work.publish(scratch.name, relpath)
    except BaseException:
        work.discard(scratch.name)
        raise
    assert published is not None  # (only an exclusive publish can refuse)
    return published


def read_thumbnail(work: WorkDir, key: str) -> bytes | None:
    """The thumbnail's bytes, or None when the work dir has none for the key."""
    missing: tuple[type[BaseException], ...] = (FileNotFoundError,)
    if work.gcs:
        from google.api_core.exceptions import NotFound

        missing = (NotFound,)
    try:
        with work.open_binary(thumbnail_relpath(key)) as fh:
            return fh.read()
    except missing:
        return None


def missing_thumbnails(work: WorkDir, keys: list[str]) -> list[str]:
    """The keys (in order, each once) whose thumbnail the work dir lacks, from one listing."""
    present = set(work.sizes_below(FOLDER))
    missing: dict[str, None] = {}
    for key in keys:
        if thumbnail_relpath(key) not in present:
            missing.setdefault(key)
    return list(missing)


__all__ = [
    "THUMBNAIL_SIZE",
    "missing_thumbnails",
    "read_thumbnail",
    "thumbnail_relpath",
    "write_thumbnail",
]
