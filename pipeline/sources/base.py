"""The source plug-in contract: what a place images come from implements, in one file per source.

A source lists objects (`list`) for the list stage and reads them back by locator (`read`) for the
embed stage. It is found by `pipeline.plugins.source_class_for(spec)` (listing) and
`source_class(scheme)` (reading a locator), imgvec's own and entry points' alike.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import ClassVar
from urllib.parse import urlsplit

from pipeline.core.objects import ObjectInfo
from pipeline.errors import PermanentError


@dataclass(frozen=True)
class SourceOptions:
    """What the caller knows from Settings and the command line; each source uses what it needs.
    Frozen (hashable): readers keep one source per thread and per scheme and options."""

    page_size: int = 1000
    #: seconds a store request may take, retries included
    timeout: float = 60.0
    #: an S3-compatible store's endpoint (None: the client's own default)
    endpoint_url: str | None = None
    #: (name, size) -> whether the filters could keep it: lets a source skip costly per-object
    #: work (hashing a local file) for objects that will be dropped anyway
    wanted: Callable[[str, int], bool] | None = None


class ObjectTooLarge(Exception):
    """Raised by `read` when the store says, before any byte is fetched, that the object is over
    `max_bytes`. (A source that cannot tell just returns `max_bytes` + 1 bytes.)"""


class ObjectMissing(PermanentError):
    """Raised by `stat` when the locator names no object. A file of locators records such a line
    as a skipped object (`MissingObject`) and goes on; any other PermanentError stops the listing
    (a missing bucket, no credentials: no other line would fare better)."""


@dataclass(frozen=True, slots=True)
class MissingObject(ObjectInfo):
    """A listed locator with no object behind it: a manifest row skipped with `reason`, never an
    object in the database (nothing to embed), as the product rule wants for bad input."""

    reason: str = "missing (no such object)"


class Source(ABC):
    """A place images are listed from and read from.

    `spec` is what the user gave (a URI or a path); None makes a source that only reads and stats
    locators of its scheme, listing nothing (what the embed stage and a file of locators use).
    The constructor checks the spec (a bad one fails before any run starts) but makes no client:
    clients are made on first use.
    A source instance is used by one thread only (storage clients are not thread-safe).
    """

    #: the URI scheme of its specs and locators; its key in the registry, and the sources table's
    #: and the objects table's `kind` / `scheme`
    scheme: ClassVar[str]
    #: a listing covers a whole place, so objects missing from it may be marked deleted
    complete_listing: ClassVar[bool] = True
    #: a listing may hold two objects of one name (then the later is named by its locator)
    names_may_clash: ClassVar[bool] = False

    def __init__(self, spec: str | None, options: SourceOptions) -> None:
        self.spec = spec
        self.options = options

    @classmethod
    def accepts(cls, spec: str) -> bool:
        """Whether this source lists `spec`: by default, when the spec's URI scheme is its own.
        (The registry asks this only of specs whose scheme no source is registered under.)"""
        return urlsplit(spec).scheme == cls.scheme

    @abstractmethod
    def root(self) -> str:
        """The normalised place it lists, its identity in the sources table: `imgvec list ./pics`
        and `imgvec list /home/me/pics/` are one source. For a source with `complete_listing`,
        every listed locator starts with it (and the objects below it not listed are deleted)."""

    @abstractmethod
    def list(self) -> Iterator[ObjectInfo]:
        """The objects, streamed: a listing is never held whole. Store errors as PermanentError
        (with the fix as hint) or RetryableError."""

    @abstractmethod
    def read(self, locator: str, *, max_bytes: int, size: int | None = None) -> bytes:
        """The bytes of one object of this scheme, at most `max_bytes` + 1 of them (so that a
        too-large object shows, without fetching it whole). `size`: the listed size, if known.
        An object that does not exist raises FileNotFoundError; one the store reports too large
        before the transfer raises ObjectTooLarge. The cap itself is checked by the caller."""

    def stat(self, locator: str) -> ObjectInfo:
        """One object by locator, for files of locators. One that does not exist raises
        ObjectMissing."""
        raise PermanentError(f"{self.scheme}:// locators cannot be looked up one by one")

    def read_range(self, locator: str, start: int, end: int) -> bytes:
        """Bytes `start`..`end` (inclusive) of an object, where the store offers ranged reads."""
        raise PermanentError(f"{self.scheme}:// objects cannot be read by range")


class BucketSource(Source):
    """What the bucket stores share: a spec of the form SCHEME://BUCKET/PREFIX."""

    def __init__(self, spec: str | None, options: SourceOptions) -> None:
        super().__init__(spec, options)
        self.bucket: str | None  # (None: a source made only to read, which lists nothing)
        self.bucket, self.prefix = (None, "") if spec is None else self.split(spec)
        self._client = None
        self._existing_buckets: set[str] = set()

    def split(self, uri: str) -> tuple[str, str]:
        """(bucket, key) of a SCHEME://BUCKET/KEY URI."""
        parts = urlsplit(uri)
        if not parts.netloc:
            raise PermanentError(
                f"{uri!r} names no bucket", hint=f"write {self.scheme}://BUCKET/PREFIX"
            )
        return parts.netloc, parts.path.lstrip("/")

    def root(self) -> str:
        return f"{self.scheme}://{self.bucket}/{self.prefix}"

    def missing_object(self, locator: str, bucket: str) -> ObjectMissing:
        """What `stat` raises for a locator the store has no object for, once `check_bucket`
        says its bucket exists: a missing bucket is no missing object, it stops the listing
        (stores answer both alike). The bucket is asked once."""
        if bucket not in self._existing_buckets:
            self.check_bucket(bucket)
            self._existing_buckets.add(bucket)
        return ObjectMissing(f"{locator} does not exist")

    def check_bucket(self, bucket: str) -> None:
        """Raise PermanentError when the bucket does not exist."""
        raise NotImplementedError
