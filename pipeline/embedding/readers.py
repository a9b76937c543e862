"""Fetching an object's bytes by locator: gs://, s3:// or a local file."""

from __future__ import annotations

import threading
from pathlib import Path
from urllib.parse import urlsplit

from pipeline.embedding.backends.base import ItemFailure

_local = threading.local()  # one client per thread: the storage clients are not thread-safe


class ObjectReader:
    def __init__(
        self, *, s3_endpoint_url: str | None = None, max_bytes: int = 200 * 1024 * 1024
    ) -> None:
        self.s3_endpoint_url = s3_endpoint_url
        self.max_bytes = max_bytes

    def read(self, locator: str) -> bytes:
        parts = urlsplit(locator)
        try:
            if parts.scheme == "gs":
                return (
                    self._gcs()
                    .bucket(parts.netloc)
                    .blob(parts.path.lstrip("/"))
                    .download_as_bytes()
                )
            if parts.scheme == "s3":
                body = self._s3().get_object(Bucket=parts.netloc, Key=parts.path.lstrip("/"))[
                    "Body"
                ]
                return body.read()
            path = Path(locator.removeprefix("file://"))
            if path.stat().st_size > self.max_bytes:
                raise ItemFailure(f"larger than {self.max_bytes} bytes")
            return path.read_bytes()
        except ItemFailure:
            raise
        except FileNotFoundError:
            raise ItemFailure("object no longer exists (deleted since the listing)") from None
        except Exception as err:
            name = type(err).__name__
            if name in ("NotFound", "NoSuchKey"):
                raise ItemFailure("object no longer exists (deleted since the listing)") from None
            raise ItemFailure(
                f"cannot read: {name}: {str(err).splitlines()[0][:200] if str(err) else ''}",
                permanent=False,
            ) from None

    def _gcs(self):
        if getattr(_local, "gcs", None) is None:
            from google.cloud import storage

            _local.gcs = storage.Client()
        return _local.gcs

    def _s3(self):
        if getattr(_local, "s3", None) is None:
            import boto3

            _local.s3 = boto3.client("s3", endpoint_url=self.s3_endpoint_url)
        return _local.s3
