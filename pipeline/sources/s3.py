"""Amazon S3 (and S3-compatible stores) through boto3, the `s3` extra. The endpoint comes from
IMGVEC_S3_ENDPOINT_URL or boto3's own AWS_ENDPOINT_URL; credentials from boto3's usual chain."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import replace

from pipeline.core.objects import ObjectInfo, guess_content_type, md5_hash, relative_name
from pipeline.errors import ConfigError, PermanentError, RetryableError
from pipeline.sources.base import BucketSource


class S3Source(BucketSource):
    scheme = "s3"

    def __init__(
        self, spec: str, *, page_size: int = 1000, endpoint_url: str | None = None, client=None
    ) -> None:
        super().__init__(spec, page_size=page_size, client=client)
        self.endpoint_url = endpoint_url

    def client(self):
        if self._client is None:
            try:
                import boto3
                from botocore.config import Config
            except ImportError:
                raise ConfigError(
                    "listing s3:// needs boto3", hint="pip install 'imgvec[s3]'"
                ) from None
            config = Config(
                retries={"mode": "adaptive", "max_attempts": 5}, connect_timeout=5, read_timeout=30
            )
            self._client = boto3.client("s3", endpoint_url=self.endpoint_url, config=config)
        return self._client

    def iter_objects(self) -> Iterator[ObjectInfo]:
        with self._errors():
            pages = (
                self.client()
                .get_paginator("list_objects_v2")
                .paginate(
                    Bucket=self.bucket,
                    Prefix=self.prefix,
                    PaginationConfig={"PageSize": self.page_size},
                )
            )
            for page in pages:
                for item in page.get("Contents", ()):
                    yield self._info(item)

    def stat(self, key: str) -> ObjectInfo:
        """One object by key (for lists of locators)."""
        with self._errors(key):
            head = self.client().head_object(Bucket=self.bucket, Key=key)
        item = {
            "Key": key,
            "ETag": head.get("ETag"),
            "Size": head.get("ContentLength"),
            "LastModified": head.get("LastModified"),
        }
        info = self._info(item)
        return replace(
            info,
            name=key,
            generation=head.get("VersionId"),
            content_type=head.get("ContentType") or info.content_type,
        )

    @contextlib.contextmanager
    def _errors(self, key: str | None = None):
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        try:
            yield
        except NoCredentialsError:
            raise PermanentError(
                f"cannot list {self.spec}: no AWS credentials found",
                hint="set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE",
            ) from None
        except ClientError as err:
            code = err.response.get("Error", {}).get("Code", "")
            if code == "NoSuchBucket" or (code == "404" and key is None):
                raise PermanentError(
                    f"cannot list {self.spec}: bucket {self.bucket!r} does not exist"
                ) from None
            if code in ("NoSuchKey", "404"):
                raise PermanentError(f"s3://{self.bucket}/{key} does not exist") from None
            if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                raise PermanentError(f"cannot list {self.spec}: access denied ({code})") from None
            raise RetryableError(
                f"cannot list {self.spec}: {code or err}", hint="rerun the same command"
            ) from None
        except BotoCoreError as err:
            raise RetryableError(
                f"cannot list {self.spec}: {err}", hint="check the endpoint, then rerun"
            ) from None

    def _info(self, item: dict) -> ObjectInfo:
        key = item["Key"]
        etag = item.get("ETag", "").strip('"') or None
        # A single-part upload's ETag is the MD5 of its bytes; a multipart one ("…-N") is not.
        content_hash = md5_hash(etag) if etag and "-" not in etag else None
        return ObjectInfo(
            locator=f"s3://{self.bucket}/{key}",
            scheme="s3",
            bucket=self.bucket,
            key=key,
            name=relative_name(key, self.prefix),
            size=item.get("Size"),
            generation=None,
            etag=etag,
            content_hash=content_hash,
            content_type=guess_content_type(key),
            updated_at=item.get("LastModified"),
        )
