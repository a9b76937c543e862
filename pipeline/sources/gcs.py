"""Google Cloud Storage through google-cloud-storage: default credentials (ADC), and
STORAGE_EMULATOR_HOST, which the client honours itself, for an emulator."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from pipeline.core.objects import ObjectInfo, md5_from_base64, relative_name
from pipeline.errors import PermanentError, RetryableError, first_line
from pipeline.sources.base import BucketSource

# Only what the manifest needs: smaller pages, faster listings.
_FIELDS = "items(name,size,generation,etag,md5Hash,crc32c,contentType,updated),nextPageToken"


class GcsSource(BucketSource):
    scheme = "gs"

    def __init__(
        self, spec: str, *, page_size: int = 1000, timeout: float = 60.0, client=None
    ) -> None:
        super().__init__(spec, page_size=page_size, client=client)
        self.timeout = timeout

    def client(self):
        if self._client is None:
            from google.cloud import storage

            self._client = storage.Client()
        return self._client

    def iter_objects(self) -> Iterator[ObjectInfo]:
        from google.cloud.storage.retry import DEFAULT_RETRY

        with self._errors():
            blobs = self.client().list_blobs(
                self.bucket,
                prefix=self.prefix or None,
                page_size=self.page_size,
                fields=_FIELDS,
                timeout=min(self.timeout, 60.0),
                # Transient errors are retried, but not for the client's default two minutes.
                retry=DEFAULT_RETRY.with_timeout(self.timeout),
            )
            for blob in blobs:
                yield self._info(blob)

    def stat(self, key: str) -> ObjectInfo:
        """One object by key (for lists of locators)."""
        from google.cloud.storage.retry import DEFAULT_RETRY

        with self._errors():
            blob = (
                self.client()
                .bucket(self.bucket)
                .get_blob(key, retry=DEFAULT_RETRY.with_timeout(self.timeout))
            )
        if blob is None:
            raise PermanentError(f"gs://{self.bucket}/{key} does not exist")
        return self._info(blob)

    @contextlib.contextmanager
    def _errors(self):
        """Storage errors as one clear line: permanent ones name the fix, passing ones say rerun."""
        from google.api_core import exceptions
        from google.auth.exceptions import DefaultCredentialsError

        try:
            yield
        except exceptions.NotFound:
            raise PermanentError(
                f"cannot list {self.spec}: bucket {self.bucket!r} does not exist",
                hint="check the bucket name, and that the credentials' project can see it",
            ) from None
        except exceptions.Forbidden as err:
            raise PermanentError(
                f"cannot list {self.spec}: access denied ({err.message})",
                hint="grant the job's service account storage.objects.list on the bucket",
            ) from None
        except DefaultCredentialsError:
            raise PermanentError(
                f"cannot list {self.spec}: no Google credentials found",
                hint="run `gcloud auth application-default login`, or set GOOGLE_APPLICATION_CREDENTIALS",
            ) from None
        except (exceptions.GoogleAPIError, OSError) as err:
            raise RetryableError(
                f"cannot list {self.spec}: {first_line(err)}", hint="rerun the same command"
            ) from None
        except Exception as err:
            if type(err).__module__.startswith(("requests", "urllib3")):
                raise RetryableError(
                    f"cannot list {self.spec}: {type(err).__name__} (storage endpoint unreachable)",
                    hint="check the network, or STORAGE_EMULATOR_HOST for an emulator; then rerun",
                ) from None
            raise

    def _info(self, blob) -> ObjectInfo:
        return ObjectInfo(
            locator=f"gs://{self.bucket}/{blob.name}",
            scheme="gs",
            bucket=self.bucket,
            key=blob.name,
            name=relative_name(blob.name, self.prefix),
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
