"""Fetching an object's bytes by locator: gs://, s3:// or a local file, never more than the cap."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from urllib.parse import urlsplit

from pipeline.errors import ItemFailure, first_line

MAX_OBJECT_BYTES = 200 * 1024 * 1024

# Storage clients are not thread-safe: one per thread, and per endpoint, so that two readers (or a
# GCS emulator started after the first read) in one thread each reach their own store.
_local = threading.local()


class ObjectReader:
    def __init__(
        self, *, s3_endpoint_url: str | None = None, max_bytes: int = MAX_OBJECT_BYTES
    ) -> None:
        self.s3_endpoint_url = s3_endpoint_url
        self.max_bytes = max_bytes

    def read(self, locator: str, size: int | None = None) -> bytes:
        """The object's bytes. `size`, the listed size if known, fails a larger object before any
        request; either way no more than `max_bytes` + 1 bytes are ever fetched."""
        if size is not None and size > self.max_bytes:
            raise self._too_large()
        parts = urlsplit(locator)
        try:
            if parts.scheme == "gs":
                data = self._read_gcs(parts.netloc, parts.path.lstrip("/"))
            elif parts.scheme == "s3":
                data = self._read_s3(parts.netloc, parts.path.lstrip("/"))
            else:
                data = self._read_file(Path(locator.removeprefix("file://")))
        except ItemFailure:
            raise
        except FileNotFoundError:
            raise ItemFailure("object no longer exists (deleted since the listing)") from None
        except Exception as err:
            name = type(err).__name__
            if name in ("NotFound", "NoSuchKey"):
                raise ItemFailure("object no longer exists (deleted since the listing)") from None
            raise ItemFailure(
                f"cannot read: {name}: {first_line(err, limit=200)}",
                permanent=False,
            ) from None
        if len(data) > self.max_bytes:  # grown since the listing, or a store that ignored the range
            raise self._too_large()
        return data

    def _too_large(self) -> ItemFailure:
        return ItemFailure(f"larger than {self.max_bytes} bytes (the cap on one object)")

    def _read_file(self, path: Path) -> bytes:
        if path.stat().st_size > self.max_bytes:
            raise self._too_large()
        with open(path, "rb") as fh:
            return fh.read(self.max_bytes + 1)

    def read_range(self, locator: str, start: int, end: int) -> bytes:
        """Bytes `start`..`end` (inclusive) of a gs:// object: a look at its head or tail."""
        parts = urlsplit(locator)
        blob = self._gcs().bucket(parts.netloc).blob(parts.path.lstrip("/"))
        return blob.download_as_bytes(start=start, end=end)

    def _read_gcs(self, bucket: str, key: str) -> bytes:
        from google.api_core.exceptions import RequestRangeNotSatisfiable

        blob = self._gcs().bucket(bucket).blob(key)
        try:
            # A range, `end` inclusive: one byte past the cap tells a too-large object apart.
            return blob.download_as_bytes(start=0, end=self.max_bytes)
        except RequestRangeNotSatisfiable:  # what a range on a zero-byte object gets
            return b""

    def _read_s3(self, bucket: str, key: str) -> bytes:
        response = self._s3().get_object(Bucket=bucket, Key=key)
        body = response["Body"]
        try:
            if response.get("ContentLength", 0) > self.max_bytes:  # known before the body is read
                raise self._too_large()
            return body.read(self.max_bytes + 1)
        finally:
            body.close()

    def _gcs(self):
        emulator = os.environ.get("STORAGE_EMULATOR_HOST")
        return _client_for(("gcs", emulator), _new_gcs_client)

    def _s3(self):
        endpoint = self.s3_endpoint_url
        return _client_for(("s3", endpoint), lambda: _new_s3_client(endpoint))


def _client_for(key: tuple, make):
    clients = getattr(_local, "clients", None)
    if clients is None:
        clients = _local.clients = {}
    if key not in clients:
        clients[key] = make()
    return clients[key]


def _new_gcs_client():
    from google.cloud import storage

    return storage.Client()


def _new_s3_client(endpoint_url: str | None):
    import boto3

    return boto3.client("s3", endpoint_url=endpoint_url)
