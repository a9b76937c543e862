"""A space's backend that cannot embed here: its weights cannot be found again from the space's
name alone (a checkpoint file, a service's project). Searches by stored vectors still work; a
query that needs a new vector says which flags select the space."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from pipeline.core.space import EmbeddingSpace
from pipeline.embedding.backends.base import EmbeddingBackend, ImageItem, Result
from pipeline.errors import ConfigError


class UnavailableBackend(EmbeddingBackend):
    input_kind: ClassVar[str] = "bytes"

    def __init__(self, space: EmbeddingSpace, reason: str, options: str) -> None:
        super().__init__(None)
        self.name = space.backend  # type: ignore[misc]  # (per instance: the space's backend)
        self._space = space
        self._reason = reason
        self._options = options

    @property
    def space(self) -> EmbeddingSpace:
        return self._space

    @classmethod
    def options_for_space(cls, space: EmbeddingSpace) -> str:
        return f"--backend {space.backend}"

    def error(self) -> ConfigError:
        return ConfigError(
            f"space {self._space.name} cannot make new vectors here: {self._reason}",
            hint=f"start `imgvec serve` with {self._options} to search it by text or upload",
        )

    def source_from_bytes(self, data: bytes, *args: Any, **kwargs: Any) -> Any:
        raise self.error()  # (before the bytes are decoded: nothing here can use them)

    def embed_image_batch(self, items: list[ImageItem]) -> list[Result]:
        raise self.error()

    def embed_text_batch(self, texts: list[str]) -> np.ndarray:
        raise self.error()
