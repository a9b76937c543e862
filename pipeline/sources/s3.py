"""Amazon S3 and S3-compatible stores (s3://BUCKET/PREFIX) through boto3, the `s3` extra. The
endpoint comes from IMGVEC_S3_ENDPOINT_URL or boto3's own AWS_ENDPOINT_URL; credentials from
boto3's usual chain."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import replace

from pipeline.core.objects import ObjectInfo, guess_content_type, md5_hash, relative_name
from pipeline.errors import ConfigError, PermanentError, RetryableError
from pipeline.sources.base import BucketSource, ObjectMissing, ObjectTooLarge


class S3Source(BucketSource):
    scheme = "s3"

    def client(self):
        if self._client is None:
            try:
                import boto3
                from botocore.config import Config
            except ImportError:
                raise ConfigError(
                    "reading s3:// needs boto3", hint="pip install 'imgvec[s3]'"
                ) from None
            config = Config(
                retries={"mode": "adaptive", "max_attempts": 5}, connect_timeout=5, read_timeout=30
            )
            self._client = boto3.client("s3", endpoint_url=self.options.endpoint_url, config=config)
        return self._client

    def list(self) -> Iterator[ObjectInfo]:
        bucket = self.bucket
        assert bucket is not None  # (a source made only to read lists nothing)
        with self._errors(self.spec, bucket):
            pages = (
                self.client()
                .get_paginator("list_objects_v2")
                .paginate(
                    Bucket=bucket,
                    Prefix=self.prefix,
                    PaginationConfig={"PageSize": self.options.page_size},
                )
            )
            for page in pages:
                for item in page.get("Contents", ()):
                    yield self._info(item, bucket, self.prefix)

    def stat(self, locator: str) -> ObjectInfo:
        bucket, key = self.split(locator)
        try:
            with self._errors(f"s3://{bucket}/", bucket, key):
                head = self.client().head_object(Bucket=bucket, Key=key)
        except ObjectMissing:
            raise self.missing_object(locator, bucket) from None  # (S3 says 404 to both)
        item = {
            "Key": key,
            "ETag": head.get("ETag"),
            "Size": head.get("ContentLength"),
            "LastModified": head.get("LastModified"),
        }
        info = self._info(item, bucket, "")
        return replace(
            info,
            generation=head.get("VersionId"),
            content_type=head.get("ContentType") or info.content_type,
        )

    def check_bucket(self, bucket: str) -> None:
        with self._errors(f"s3://{bucket}/", bucket):  # (a 404 without a key: no such bucket)
            self.client().head_bucket(Bucket=bucket)

    def read(self, locator: str, *, max_bytes: int, size: int | None = None) -> bytes:
        bucket, key = self.split(locator)
        try:
            response = self.client().get_object(Bucket=bucket, Key=key)
        except self.client().exceptions.NoSuchKey:
            raise FileNotFoundError(locator) from None
        body = response["Body"]
        try:
            if response.get("ContentLength", 0) > max_bytes:  # known before the body is read
                raise ObjectTooLarge(locator)
            return body.read(max_bytes + 1)
        finally:
            body.close()

    @contextlib.contextmanager
    def _errors(self, spec: str | None, bucket: str | None, key: str | None = None):
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        try:
            yield
        except NoCredentialsError:
            raise PermanentError(
                f"cannot list {spec}: no AWS credentials found",
                hint="set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE",
            ) from None
        except ClientError as err:
            code = err.response.get("Error", {}).get("Code", "")
            if code == "NoSuchBucket" or (code == "404" and key is None):
                raise PermanentError(
                    f"cannot list {spec}: bucket {bucket!r} does not exist"
                ) from None
            if code in ("NoSuchKey", "404"):
                raise ObjectMissing(f"s3://{bucket}/{key} does not exist") from None
            if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                raise PermanentError(f"cannot list {spec}: access denied ({code})") from None
            raise RetryableError(
                f"cannot list {spec}: {code or err}", hint="rerun the same command"
            ) from None
        except BotoCoreError as err:
            raise RetryableError(
                f"cannot list {spec}: {err}", hint="check the endpoint, then rerun"
            ) from None

    def _info(self, item: dict, bucket: str, prefix: str) -> ObjectInfo:
        key = item["Key"]
        etag = item.get("ETag", "").strip('"') or None
        # A single-part upload's ETag is the MD5 of its bytes; a multipart one ("…-N") is not.
        content_hash = md5_hash(etag) if etag and "-" not in etag else None
        return ObjectInfo(
            locator=f"s3://{bucket}/{key}",
            scheme=self.scheme,
            bucket=bucket,
            key=key,
            name=relative_name(key, prefix),
            size=item.get("Size"),
            generation=None,
            etag=etag,
            content_hash=content_hash,
            content_type=guess_content_type(key),
            updated_at=item.get("LastModified"),
        )
