"""Which listed objects are images worth embedding; the rest are skipped with a reason."""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import PurePosixPath

from pipeline.core.objects import ObjectInfo

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff"})


@dataclass(frozen=True)
class ObjectFilter:
    extensions: frozenset[str] = IMAGE_EXTENSIONS
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    max_size: int | None = None

    def wanted_name(self, name: str) -> bool:
        """Could an object of this name be kept? (Before its size and type are known.)"""
        return self._glob_reason(name) is None

    def skip_reason(self, obj: ObjectInfo) -> str | None:
        """Why the object is skipped, or None to keep it. An image extension or an image/*
        content type makes an image: stores often mislabel uploads, and extensionless keys exist."""
        suffix = PurePosixPath(obj.name).suffix.lower()
        is_image_type = bool(obj.content_type and obj.content_type.startswith("image/"))
        if self.extensions and suffix not in self.extensions and not is_image_type:
            return f"not an image ({suffix or 'no extension'}, {obj.content_type or 'no content type'})"
        reason = self._glob_reason(obj.name)
        if (
            reason is None
            and self.max_size is not None
            and obj.size is not None
            and obj.size > self.max_size
        ):
            reason = f"too large ({obj.size} bytes > --max-size {self.max_size})"
        return reason

    def _glob_reason(self, name: str) -> str | None:
        if self.include and not any(fnmatchcase(name, pattern) for pattern in self.include):
            return "matches no --include pattern"
        for pattern in self.exclude:
            if fnmatchcase(name, pattern):
                return f"matches --exclude {pattern}"
        return None
