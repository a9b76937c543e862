"""Uploaded images: bounded in size (413) before anything decodes them; the decoding itself, with
the embed stage's rules (pixel limit, truncated files, HTML...), is the search's and the
backend's, which answer 400 with the decoder's reason."""

from __future__ import annotations

from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

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


class BodyLimitMiddleware:
    """Refuses a request body over the upload limit (and its envelope) with a 413 problem: at once when its
    Content-Length says so, else as soon as the bytes received pass the limit. (FastAPI's own
    max_body_size answers in plain text, whatever the app's error handlers say.)"""

    def __init__(self, app, max_upload_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_upload_bytes + ENVELOPE_BYTES
        self.refusal = too_large(max_upload_bytes).detail

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            from pipeline.service.problems import problem_response

            return await problem_response(413, self.refusal)(scope, receive, send)
        received = 0

        async def bounded_receive():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                # An HTTPException: FastAPI passes it on to the app's handler (problem+json).
                raise HTTPException(413, self.refusal)
            return message

        await self.app(scope, bounded_receive, send)


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
