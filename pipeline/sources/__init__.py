"""Sources of images: one module per kind, a plain registry, and `open_source` to pick one."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from pipeline.core.objects import OBJECT_COLUMNS, ObjectInfo
from pipeline.errors import ConfigError
from pipeline.sources.base import Source
from pipeline.sources.gcs import GcsSource
from pipeline.sources.local import LocalSource
from pipeline.sources.locator_file import LocatorFileSource
from pipeline.sources.s3 import S3Source

# URI scheme -> source class. Local folders and locator files are told apart by what the path is.
SOURCES = {"gs": GcsSource, "s3": S3Source, "file": LocalSource}


def open_source(spec: str, **options) -> Source:
    """The source for `spec`: gs://bucket/prefix, s3://bucket/prefix, a folder, or a file of locators."""
    scheme = urlsplit(spec).scheme
    if scheme in ("gs", "s3"):
        keys = {"gs": ("page_size", "timeout"), "s3": ("page_size", "endpoint_url")}[scheme]
        return SOURCES[scheme](
            spec, **{k: v for k, v in options.items() if k in keys and v is not None}
        )
    if scheme in ("", "file"):
        path = Path(spec.removeprefix("file://")).expanduser()
        if path.is_dir():
            return LocalSource(path, wanted=options.get("wanted"))
        if path.is_file():
            return LocatorFileSource(
                path,
                timeout=options.get("timeout") or 60.0,
                endpoint_url=options.get("endpoint_url"),
            )
        raise ConfigError(f"{spec}: no such folder or locator file")
    known = ", ".join(f"{s}://" for s in ("gs", "s3")) + ", a local folder, or a file of locators"
    raise ConfigError(f"unknown source scheme {scheme!r} in {spec!r}; known: {known}")


__all__ = ["OBJECT_COLUMNS", "ObjectInfo", "Source", "SOURCES", "open_source"]
