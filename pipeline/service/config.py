"""What `imgvec serve` was started with: everything the app needs to know, and nothing secret logged."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeline.embedding.backends.base import EmbeddingBackend
    from pipeline.settings import Settings

DEFAULT_MAX_UPLOAD_MB = 20
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


@dataclass
class ServiceConfig:
    settings: Settings
    #: the backend the serve flags chose; None (no backend flag given): the database's default
    #: space is searched when a request names none
    default_backend: EmbeddingBackend | None = None
    #: where thumbnails are looked for first and kept when made on demand (a folder or gs://)
    work_dir: str = "imgvec-work"
    #: the sources `POST /api/runs` may run (never a path taken from a request)
    sources: list[str] = field(default_factory=list)
    #: required on every /api/ request when set (bearer header or the imgvec_token cookie)
    token: str | None = None
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_MB * 1024 * 1024
    host: str = "127.0.0.1"
    port: int = 8000

    def __repr__(self) -> str:  # never the token (nor the database URL inside settings)
        return (
            f"ServiceConfig(host={self.host!r}, port={self.port}, work_dir={self.work_dir!r}, "
            f"sources={self.sources!r}, token={'set' if self.token else None})"
        )


def is_loopback(host: str) -> bool:
    import ipaddress

    if host in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name other than localhost: it may resolve to anything
        return False
