"""The work dir that stages hand checkpoints through: a local folder or a gs:// prefix.
Every file lands whole or not at all (temp file + rename, or a single upload)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from urllib.parse import urlsplit


class WorkDir:
    def __init__(self, spec: str | Path) -> None:
        self.spec = str(spec)
        parts = urlsplit(self.spec)
        self.gcs = parts.scheme == "gs"
        if self.gcs:
            self.bucket, self.prefix = parts.netloc, parts.path.strip("/")
            self.local = None
        else:
            self.local = Path(self.spec).expanduser()

    def describe(self, relpath: str) -> str:
        if self.gcs:
            return f"gs://{self.bucket}/{self._key(relpath)}"
        return str(self.local / relpath)

    def scratch_file(self, relpath: str):
        """A temp file next to the final place (same filesystem, so the rename is atomic)."""
        if self.gcs:
            return tempfile.NamedTemporaryFile("w+", suffix=".tmp", delete=False, newline="", encoding="utf-8")
        target = self.local / relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        return tempfile.NamedTemporaryFile(
            "w+", dir=target.parent, prefix=f".{target.name}.", suffix=".tmp", delete=False, newline="", encoding="utf-8"
        )

    def publish(self, scratch_path: str, relpath: str) -> str:
        """Move a finished, closed scratch file into place; returns where it went."""
        if self.gcs:
            from google.cloud import storage

            blob = storage.Client().bucket(self.bucket).blob(self._key(relpath))
            blob.upload_from_filename(scratch_path, content_type="text/csv")
            os.unlink(scratch_path)
        else:
            with open(scratch_path, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(scratch_path, self.local / relpath)
            _fsync_dir(self.local / Path(relpath).parent)
        return self.describe(relpath)

    def discard(self, scratch_path: str) -> None:
        try:
            os.unlink(scratch_path)
        except FileNotFoundError:
            pass

    def _key(self, relpath: str) -> str:
        return f"{self.prefix}/{relpath}" if self.prefix else relpath


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


__all__ = ["WorkDir"]
