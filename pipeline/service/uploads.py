"""Uploaded images: bounded in size (413) before anything decodes them; the decoding itself, with
the embed stage's rules (pixel limit, truncated files, HTML...), is the search's and the
backend's, which answer 400 with the decoder's reason."""

from __future__ import annotations

from starlette.datastructures import UploadFile

from pipeline.embedding.readers import ObjectReader
from pipeline.errors import ItemFailure
from pipeline.service.problems import Problem

#: room for the multipart envelope and the form's text fields beside the file(s)
ENVELOPE_BYTES = 256 * 1024


def too_large(limit: int) -> Problem:
    return Problem(413, f"upload larger than {_megabytes(limit)} (the server's --max-upload-mb)")


async def read_upload(file: UploadFile, limit: int) -> bytes:
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise too_large(limit)
    return data


def _megabytes(limit: int) -> str:
    return f"{limit / (1024 * 1024):g} MB"


class ListedOnlyReader(ObjectReader):
    """The reader the API hands to search: it reads nothing. A request names listed images
    (looked up in the database, their stored vectors used); a path or URI in a request must never
    make the server open a file or fetch a URL."""

    def read(self, locator: str, size: int | None = None) -> bytes:
        raise ItemFailure("not a listed image (the API searches by listed images only)")

    def read_range(self, locator: str, start: int, end: int) -> bytes:
        raise ItemFailure("not a listed image (the API searches by listed images only)")
