"""The model of an embedding space: the vectors one backend, model and set of weights make.

Two vectors can be compared only within a space. Its name is its identity in the work dir
(`embeddings/<name>/`) and in the database (`embedding_spaces.name`)."""

from __future__ import annotations

import re
from dataclasses import dataclass

METRICS = ("cosine", "l2", "ip")
MAX_DIMENSION = 16000  # pgvector's limit for the `vector` type


@dataclass(frozen=True)
class EmbeddingSpace:
    backend: str
    model: str
    weights: str
    dimension: int
    metric: str = "cosine"
    normalized: bool = True

    def __post_init__(self) -> None:
        if not 1 <= self.dimension <= MAX_DIMENSION:
            raise ValueError(
                f"dimension must be between 1 and {MAX_DIMENSION}, not {self.dimension}"
            )
        if self.metric not in METRICS:
            raise ValueError(f"metric must be one of {', '.join(METRICS)}, not {self.metric!r}")

    @property
    def name(self) -> str:
        return f"{self.backend}/{self.model}/{self.weights}/{self.dimension}"

    @property
    def slug(self) -> str:
        """The name as one safe path segment (the space's folder in a work dir)."""
        return re.sub(r"[^A-Za-z0-9._-]+", "_", self.name.replace("/", "--"))
