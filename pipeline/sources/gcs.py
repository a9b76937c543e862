"""Google Cloud Storage (gs://BUCKET/PREFIX) through google-cloud-storage: default credentials
(ADC), and STORAGE_EMULATOR_HOST, which the client honours itself, for an emulator."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from pipeline.core.objects import ObjectInfo, md5_from_base64, relative_name
from pipeline.errors import PermanentError, RetryableError, first_line
from pipeline.sources.base import BucketSource

# Only what the manifest needs: smaller pages, faster listings.
_FIELDS = "items(name,size,generation,etag,md5Hash,crc32c,contentType,updated),nextPageToken"


class GcsSource(BucketSource):
    scheme = "gs"

    def client(self):
        # A new client when the emulator changed (one started after the first read, in tests).
        emulator = os.environ.get("STORAGE_EMULATOR_HOST")
        if self._client is None or self._client_emulator != emulator:
            import google.cloud.storage

            self._client = google.cloud.storage.Client()
            self._client_emulator = emulator
        return self._client

    def list(self) -> Iterator[ObjectInfo]:
        from google.cloud.storage.retry import DEFAULT_RETRY

        assert self.bucket is not None  # (a source made only to read lists nothing)
        with self._errors(self.spec, self.bucket):
            blobs = self.client().list_blobs(
                self.bucket,
                prefix=self.prefix or None,
                page_size=self.options.page_size,
                fields=_FIELDS,
                timeout=min(self.options.timeout, 60.0),
                # Transient errors are retried, but not for the client's default two minutes.
                retry=DEFAULT_RETRY.with_timeout(self.options.timeout),
            )
            for blob in blobs:
                yield self._info(blob, self.bucket, self.prefix)

    def stat(self, locator: str) -> ObjectInfo:
        from google.cloud.storage.retry import DEFAULT_RETRY

        bucket, key = self.split(locator)
        with self._errors(f"gs://{bucket}/", bucket):
            blob = (
                self.client()
                .bucket(bucket)
                .get_blob(key, retry=DEFAULT_RETRY.with_timeout(self.options.timeout))
            )
        if blob is None:
            raise self.missing_object(locator, bucket)  # (get_blob says None to both)
        return self._info(blob, bucket, "")

    def check_bucket(self, bucket: str) -> None:
        with self._errors(f"gs://{bucket}/", bucket):
            if not self.client().bucket(bucket).exists():
                raise PermanentError(
                    f"cannot list gs://{bucket}/: bucket {bucket!r} does not exist"
                )

    def read(self, locator: str, *, max_bytes: int, size: int | None = None) -> bytes:
        from google.api_core.exceptions import NotFound, RequestRangeNotSatisfiable

        try:
            # A range, `end` inclusive: one byte past the cap tells a too-large object apart.
            return self.read_range(locator, 0, max_bytes)
        except RequestRangeNotSatisfiable:  # what a range on a zero-byte object gets
            return b""
        except NotFound:
            raise FileNotFoundError(locator) from None

    def read_range(self, locator: str, start: int, end: int) -> bytes:
        bucket, key = self.split(locator)
        return self.client().bucket(bucket).blob(key).download_as_bytes(start=start, end=end)

    @contextlib.contextmanager
    def _errors(self, spec: str | None, bucket: str | None):
        """Storage errors as one clear line: permanent ones name the fix, passing ones say rerun."""
        from google.api_core import exceptions
        from google.auth.exceptions import DefaultCredentialsError

        try:
            yield
        except exceptions.NotFound:
            raise PermanentError(
                f"cannot list {spec}: bucket {bucket!r} does not exist",
                hint="check the bucket name, and that the credentials' project can see it",
            ) from None
        except exceptions.Forbidden as err:
            raise PermanentError(
                f"cannot list {spec}: access denied ({err.message})",
                hint="grant the job's service account storage.objects.list on the bucket",
            ) from None
        except DefaultCredentialsError:
            raise PermanentError(
                f"cannot list {spec}: no Google credentials found",
                hint="run `gcloud auth application-default login`, or set GOOGLE_APPLICATION_CREDENTIALS",
            ) from None
        except (exceptions.GoogleAPIError, OSError) as err:
            raise RetryableError(
                f"cannot list {spec}: {first_line(err)}", hint="rerun the same command"
            ) from None
        except Exception as err:
            if type(err).__module__.startswith(("requests", "urllib3")):
                raise RetryableError(
                    f"cannot list {spec}: {type(err).__name__} (storage endpoint unreachable)",
                    hint="check the network, or STORAGE_EMULATOR_HOST for an emulator; then rerun",
                ) from None
            raise

    def _info(self, blob, bucket: str, prefix: str) -> ObjectInfo:
        return ObjectInfo(
            locator=f"gs://{bucket}/{blob.name}",
            scheme=self.scheme,
            bucket=bucket,
            key=blob.name,
            name=relative_name(blob.name, prefix),
            size=blob.size,
            generation=str(blob.generation) if blob.generation is not None else None,
            etag=blob.etag,
            md5=blob.md5_hash,
            crc32c=blob.crc32c,
            # Composite objects have no MD5: their change shows in the generation instead.
            content_hash=md5_from_base64(blob.md5_hash),
            content_type=blob.content_type,
            updated_at=blob.updated,
        )
