"""A file of locators: one per line, or a CSV with a `locator` column. Each locator (of any
installed source's scheme, or a local path) is looked up on its own by the source of its scheme;
such a list covers no prefix, so nothing is ever marked deleted from it. A locator that names no
object is a skipped row of the manifest, with its reason: the listing goes on."""

from __future__ import annotations

import codecs
import csv
import os
import shlex
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

from pipeline import plugins
from pipeline.core.objects import ObjectInfo, guess_content_type, sniff_content_type
from pipeline.errors import PermanentError, UsageError
from pipeline.sources.base import MissingObject, ObjectMissing, Source, SourceOptions
from pipeline.sources.local import SCHEME as FILE_SCHEME
from pipeline.sources.local import scheme_of

# How much of the file is looked at to tell a list of locators from an image or other binary file.
_SNIFF_BYTES = 64 * 1024
_FORMS = (
    "a list of locators is a UTF-8 text file with one locator per line (a path, relative to the "
    "current folder, or gs://…, s3://…; '#' starts a comment), or a CSV with a `locator` column"
)


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
        if self.path is not None and self.path.is_file():
            # Before any run starts: `imgvec list photo.jpg` is a usage error, not a decode crash.
            with open(self.path, "rb") as fh:
                _check_is_text(str(spec), fh.read(_SNIFF_BYTES))

    @classmethod
    def accepts(cls, spec: str) -> bool:
        return Path(spec).expanduser().is_file()

    def root(self) -> str:
        return "list:" + os.path.abspath(self._listed_file())

    def _listed_file(self) -> Path:
        assert self.path is not None  # (a source made only to read lists nothing)
        return self.path

    def locators(self) -> Iterator[str]:
        # utf-8-sig: a BOM (a CSV saved by Excel) would otherwise hide the `locator` header.
        with open(self._listed_file(), newline="", encoding="utf-8-sig") as fh:
            try:
                header = next(csv.reader([fh.readline()]), [])
                fh.seek(0)
                if "locator" in header:
                    rows = (row.get("locator") or "" for row in csv.DictReader(fh))
                else:
                    rows = (line for line in fh if not line.startswith("#"))
                yield from (row.strip() for row in rows if row.strip())
            except UnicodeDecodeError:  # past the part looked at when it was opened
                raise _not_text(str(self.spec)) from None

    def list(self) -> Iterator[ObjectInfo]:
        found, missing = 0, 0
        first_missing = ""
        for locator in self.locators():
            try:
                obj = self.stat(locator)
            except ObjectMissing:
                # Bad input is recorded, never fatal: one deleted file must not stop the rest.
                missing += 1
                first_missing = first_missing or locator
                yield _missing(locator)
                continue
            except PermanentError as err:
                raise PermanentError(f"{self.spec}: {err}", hint=err.hint) from None
            found += 1
            yield obj
        if missing and not found and not _looks_like_locator(first_missing):
            # Not one line names an object, and the first is no path or URL: a file that is no
            # list of locators (notes, a README), not a list whose every object is gone (that one
            # lists as skipped rows). (The transaction is rolled back.)
            raise UsageError(
                f"cannot list {self.spec}: none of its {missing} locator(s) names an existing "
                f"object (the first: {first_missing!r}); is it a list of locators?",
                hint=_FORMS,
            )

    def stat(self, locator: str) -> ObjectInfo:
        return self._source(locator).stat(locator)

    def read(self, locator: str, *, max_bytes: int, size: int | None = None) -> bytes:
        return self._source(locator).read(locator, max_bytes=max_bytes, size=size)

    def _source(self, locator: str) -> Source:
        scheme = scheme_of(locator)
        if scheme not in self._sources:
            self._sources[scheme] = plugins.source_class(scheme)(None, self.options)
        return self._sources[scheme]


def _missing(locator: str) -> MissingObject:
    """The manifest row of a locator that names nothing: its locator as the scheme's source
    would write it (a local path absolute, under file://), named as the list names it."""
    scheme = scheme_of(locator)
    if scheme == FILE_SCHEME:
        path = os.path.abspath(os.path.expanduser(locator.removeprefix("file://")))
        return MissingObject(f"file://{path}", scheme, None, path, locator)
    parts = urlsplit(locator)
    return MissingObject(locator, scheme, parts.netloc or None, parts.path.lstrip("/"), locator)


def _looks_like_locator(line: str) -> bool:
    """A URL, a path with a folder, or a file name with an image's extension."""
    image = (guess_content_type(line) or "").startswith("image/")
    return "://" in line or "/" in line or os.sep in line or image


def _check_is_text(spec: str, head: bytes) -> None:
    """A usage error unless `head` (the file's first bytes) is UTF-8 text, naming an image as one."""
    try:
        decoder = codecs.getincrementaldecoder("utf-8")()
        # (not final when cut short: the cut may split a character)
        decoder.decode(head, final=len(head) < _SNIFF_BYTES)
        if b"\x00" not in head:
            return
    except UnicodeDecodeError:
        pass
    sniffed = sniff_content_type(head)
    guessed = guess_content_type(spec) or ""  # (a format the magic numbers do not cover)
    if sniffed is None and not guessed.startswith("image/"):
        raise _not_text(spec)
    kind = sniffed.removeprefix("image/").upper() if sniffed else guessed
    folder = os.path.dirname(spec) or "."
    raise UsageError(
        f"cannot list {spec}: it is an image ({kind}), not a list of locators",
        hint=f"to list it with the other images of its folder: imgvec list {shlex.quote(folder)}; "
        "to list it alone: put its path in a text file (one locator per line) and list that file",
    )


def _not_text(spec: str) -> UsageError:
    return UsageError(
        f"cannot list {spec}: it is not a list of locators (a binary file, not UTF-8 text)",
        hint=_FORMS,
    )
