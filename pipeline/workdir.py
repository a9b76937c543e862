"""The work dir that stages hand checkpoints through: a local folder or a gs:// prefix.
Every file lands whole or not at all (temp file + rename, or a single upload)."""

from __future__ import annotations

import io
import mimetypes
import os
import tempfile
import threading
from pathlib import Path
from urllib.parse import urlsplit

GITIGNORE = "# Created by imgvec automatically: a work dir holds checkpoints, not sources.\n*\n"


class WorkDir:
    def __init__(self, spec: str | Path) -> None:
        self.spec = str(spec)
        parts = urlsplit(self.spec)
        self.gcs = parts.scheme == "gs"
        # (a gs:// work dir has no `local`: a path of it used by mistake fails at once)
        self.local: Path
        # One storage client per thread of this work dir: building one looks up credentials
        # (~ms to s), too slow per file when a stage writes a thumbnail per image.
        self._clients = threading.local()
        if self.gcs:
            self.bucket, self.prefix = parts.netloc, parts.path.strip("/")
        else:
            self.local = Path(self.spec).expanduser().absolute()

    def describe(self, relpath: str) -> str:
        if self.gcs:
            return f"gs://{self.bucket}/{self._key(relpath)}"
        return str(self.local / relpath)

    def scratch_file(self, relpath: str, *, binary: bool = False):
        """A temp file next to the final place (same filesystem, so the rename is atomic)."""
        where: dict = {}
        if not self.gcs:
            self._create_local_root()
            target = self.local / relpath
            target.parent.mkdir(parents=True, exist_ok=True)
            where = {"dir": target.parent, "prefix": f".{target.name}."}
        if binary:
            return tempfile.NamedTemporaryFile("w+b", suffix=".tmp", delete=False, **where)
        return tempfile.NamedTemporaryFile(
            "w+", newline="", encoding="utf-8", suffix=".tmp", delete=False, **where
        )

    def _create_local_root(self) -> None:
        """Create the folder if it is missing, with a `.gitignore` of `*` (as pytest and ruff do for
        their caches): checkpoints in a project folder must not end up in its repository. A folder
        the user made is left as it is."""
        if self.local.is_dir():
            return
        try:
            self.local.mkdir(parents=True)
        except FileExistsError:  # another process made it first (and wrote the file)
            return
        (self.local / ".gitignore").write_text(GITIGNORE, encoding="utf-8")

    def publish(self, scratch_path: str, relpath: str, *, exclusive: bool = False) -> str | None:
        """Move a finished, closed scratch file into place; returns where it went. With
        `exclusive`, an existing file wins: returns None and leaves the scratch file in place."""
        if self.gcs:
            from google.api_core.exceptions import PreconditionFailed

            blob = self._client().bucket(self.bucket).blob(self._key(relpath))
            try:
                blob.upload_from_filename(
                    scratch_path,
                    content_type=_content_type(relpath),
                    if_generation_match=0 if exclusive else None,
                )
            except PreconditionFailed:
                return None
            os.unlink(scratch_path)
            return self.describe(relpath)
        with open(scratch_path, "rb") as fh:
            os.fsync(fh.fileno())
        target = self.local / relpath
        if exclusive:
            try:
                os.link(scratch_path, target)  # fails if the target exists: no clobbering
            except FileExistsError:
                return None
            os.unlink(scratch_path)
        else:
            os.replace(scratch_path, target)
        _fsync_dir(target.parent)
        return self.describe(relpath)

    def list(self, folder: str) -> list[str]:
        """Relative paths of the files directly in `folder`, sorted (scratch files left out)."""
        return sorted(self.sizes(folder))

    def sizes(self, folder: str) -> dict[str, int]:
        """The files directly in `folder` with their sizes in bytes, from one listing."""
        if self.gcs:
            return self._blob_sizes(folder, delimiter="/")
        path = self.local / folder
        if not path.is_dir():
            return {}
        return {
            f"{folder.rstrip('/')}/{entry.name}": entry.stat().st_size
            for entry in os.scandir(path)
            if entry.is_file() and not entry.name.startswith(".")
        }

    def sizes_below(self, folder: str) -> dict[str, int]:
        """Every file below `folder`, at any depth, with its size in bytes, from one listing."""
        if self.gcs:
            return self._blob_sizes(folder, delimiter=None)
        found = {}
        for directory, _, names in os.walk(self.local / folder):
            relative = os.path.relpath(directory, self.local)
            for name in names:
                if not name.startswith("."):
                    found[f"{relative}/{name}"] = os.stat(os.path.join(directory, name)).st_size
        return found

    def open_text(self, relpath: str):
        """A text stream of a published file (for pandas)."""
        if self.gcs:
            return io.StringIO(
                self._client().bucket(self.bucket).blob(self._key(relpath)).download_as_text()
            )
        return open(self.local / relpath, newline="", encoding="utf-8")

    def open_binary(self, relpath: str):
        if self.gcs:
            return io.BytesIO(
                self._client().bucket(self.bucket).blob(self._key(relpath)).download_as_bytes()
            )
        return open(self.local / relpath, "rb")

    def _blob_sizes(self, folder: str, delimiter: str | None) -> dict[str, int]:
        """Objects under `folder` (with delimiter "/": directly in it) by relative path, with sizes."""
        prefix = self._key(folder.rstrip("/") + "/")
        base = len(self._key(""))
        return {
            b.name[base:].lstrip("/"): b.size
            for b in self._client().list_blobs(self.bucket, prefix=prefix, delimiter=delimiter)
        }

    def _client(self):
        client = getattr(self._clients, "client", None)
        if client is None:
            import google.cloud.storage

            client = self._clients.client = google.cloud.storage.Client()
        return client

    def discard(self, scratch_path: str) -> None:
        try:
            os.unlink(scratch_path)
        except FileNotFoundError:
            pass

    def _key(self, relpath: str) -> str:
        return f"{self.prefix}/{relpath}" if self.prefix else relpath


def _content_type(relpath: str) -> str:
    return mimetypes.guess_type(relpath)[0] or "application/octet-stream"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


__all__ = ["WorkDir"]
