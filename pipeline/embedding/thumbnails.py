"""Making thumbnails (their place in a work dir: `pipeline.checkpoints.thumbnails`).

The embed stage makes one per newly embedded content key from the image its reader thread decoded
for the model (`ThumbnailWriter`): no second read, no second decode. `make_missing` is
`imgvec thumbnails`, for what was embedded before; `thumbnail_for` the server's path for an
object that has none yet: read the original, make one, keep it.

Cost, measured on 1024x768 photos (bench/README.md): a box reduction then a bicubic step to 256 px
(~0.7 ms) and WebP at method 0 (~1 ms, ~5 KB; JPEG would be ~0.2 ms but twice the bytes, and the
gallery loads dozens at a time), against ~70 ms per image for the CLIP forward pass on a CPU.
"""

from __future__ import annotations

import functools
import io
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from PIL import Image

from pipeline import interrupt
from pipeline.checkpoints.thumbnails import (
    THUMBNAIL_SIZE,
    missing_thumbnails,
    read_thumbnail,
    write_thumbnail,
)
from pipeline.embedding.backends.base import ordered_bounded, thread_pool
from pipeline.embedding.images import BadImage, decode_image
from pipeline.embedding.readers import ObjectReader
from pipeline.errors import ItemFailure, first_line
from pipeline.progress import Progress
from pipeline.workdir import WorkDir

log = logging.getLogger(__name__)

WEBP_QUALITY = 80
MEDIA_TYPE = "image/webp"


def make_thumbnail(image: Image.Image) -> bytes:
    """A WebP of `image` (RGB) whose longest side is THUMBNAIL_SIZE; a smaller image keeps its
    size. The image itself is left as it is (the model still needs it)."""
    width, height = image.size
    scale = THUMBNAIL_SIZE / max(width, height)
    if scale < 1:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        # reducing_gap=1: a box reduction by a whole factor does most of the way (an area
        # average: no aliasing), the bicubic step only the rest. 3-4x cheaper than bicubic alone.
        image = image.resize(size, Image.Resampling.BICUBIC, reducing_gap=1.0)
    if image.mode != "RGB":
        image = image.convert("RGB")
    out = io.BytesIO()
    image.save(out, format="WEBP", quality=WEBP_QUALITY, method=0)  # method 0: the fastest
    return out.getvalue()


def thumbnail_for(
    work_dirs: list[WorkDir], key: str, locator: str, reader: ObjectReader, cache: WorkDir
) -> bytes:
    """The thumbnail of content `key`: from the first work dir that has one, else made from the
    original (read through `reader` within its cap) and kept in `cache` for next time. Raises
    BadImage if the original is not a usable image, ItemFailure if it cannot be read. A cache
    that cannot be written (a read-only deployment) is logged, and the thumbnail still returned."""
    for work in work_dirs:
        data = read_thumbnail(work, key)
        if data is not None:
            return data
    data = make_thumbnail(decode_image(reader.read(locator)))
    try:
        write_thumbnail(cache, key, data)
    except Exception as err:
        log.warning(
            "imgvec: cannot keep a thumbnail in %s: %s", cache.describe(""), first_line(err)
        )
    return data


class ThumbnailWriter:
    """The embed stage's thumbnails, written in its reader threads. A thumbnail that cannot be
    written never fails its image: the first failure is said once and the run makes no more
    (a broken work dir must not cost a failed upload per image); `imgvec thumbnails` makes the
    missing ones later, and the server makes them on demand meanwhile."""

    def __init__(self, work: WorkDir) -> None:
        self.work = work
        self.written = 0
        self.stopped_by: str | None = None
        self._lock = threading.Lock()

    def for_key(self, key: str) -> Callable[[Image.Image], None] | None:
        """What the backend calls with the decoded image of `key`; None once writing stopped."""
        return None if self.stopped_by else functools.partial(self.write, key)

    def write(self, key: str, image: Image.Image) -> None:
        try:
            write_thumbnail(self.work, key, make_thumbnail(image))
        except Exception as err:
            with self._lock:
                if self.stopped_by is None:
                    self.stopped_by = f"{type(err).__name__}: {first_line(err, limit=200)}"
                    log.warning(
                        "imgvec: warning: cannot write thumbnails to %s (%s); embedding goes on "
                        "without them (`imgvec thumbnails` makes them later)",
                        self.work.describe("thumbnails/"),
                        self.stopped_by,
                    )
            return
        with self._lock:
            self.written += 1


@dataclass(frozen=True)
class Original:
    """A listed object whose thumbnail may be missing: its content key, where it is, its size."""

    key: str
    locator: str
    size: int | None = None


@dataclass
class Backfill:
    """What `make_missing` did: thumbnails made, keys that had one, originals that gave none
    (locator, reason)."""

    made: int = 0
    present: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)


def make_missing(
    work: WorkDir, originals: list[Original], reader: ObjectReader, *, workers: int = 8
) -> Backfill:
    """A thumbnail in `work` for each content key of `originals` that has none there (one
    listing says which), read and decoded by `workers` threads. An original that cannot be read
    or is not an image is counted in `failed`, not fatal; a thumbnail that cannot be written is
    (the work dir is broken). A stop (Ctrl-C) takes no new work and raises Interrupted: what is
    written stays, so the rerun makes only the rest."""
    by_key: dict[str, Original] = {}
    for original in originals:
        by_key.setdefault(original.key, original)
    missing = missing_thumbnails(work, list(by_key))
    done = Backfill(present=len(by_key) - len(missing))

    def make(original: Original) -> tuple[Original, str | None]:
        try:
            image = decode_image(reader.read(original.locator, size=original.size))
        except (BadImage, ItemFailure) as err:
            return original, str(err)
        write_thumbnail(work, original.key, make_thumbnail(image))
        return original, None

    def todo() -> Iterator[Original]:
        for key in missing:
            if interrupt.requested():
                return
            yield by_key[key]

    progress = Progress("thumbnails", "images", total=len(missing))
    try:
        with thread_pool(workers, "thumbnails") as pool:
            for original, problem in ordered_bounded(make, todo(), pool, in_flight=workers * 4):
                if problem is None:
                    done.made += 1
                else:
                    done.failed.append((original.locator, problem))
                progress.advance(1, failed=len(done.failed))
        interrupt.check()
    finally:
        progress.close()
    return done


__all__ = [
    "MEDIA_TYPE",
    "Backfill",
    "Original",
    "ThumbnailWriter",
    "make_missing",
    "make_thumbnail",
    "thumbnail_for",
]
