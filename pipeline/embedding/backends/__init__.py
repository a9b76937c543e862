"""Embedding backends: each a plug-in class found by name through `pipeline.plugins` (imported
lazily there: the core never imports torch)."""

from __future__ import annotations

from pipeline.embedding.backends.base import EmbeddingBackend, ImageItem, ItemFailure

__all__ = ["EmbeddingBackend", "ImageItem", "ItemFailure"]
