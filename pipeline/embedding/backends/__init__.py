"""Embedding backends: a plain registry, imported lazily (the core never imports torch)."""

from __future__ import annotations

import importlib

from pipeline.embedding.backends.base import EmbeddingBackend, ImageItem, ItemFailure
from pipeline.errors import ConfigError

BACKENDS = {
    "clip": "pipeline.embedding.backends.clip:ClipBackend",
    "vertex": "pipeline.embedding.backends.vertex:VertexBackend",
}


def get_backend(name: str, **options) -> EmbeddingBackend:
    if name not in BACKENDS:
        raise ConfigError(f"unknown backend {name!r}; known: {', '.join(sorted(BACKENDS))}")
    module, cls = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module), cls)(**options)


__all__ = ["BACKENDS", "EmbeddingBackend", "ImageItem", "ItemFailure", "get_backend"]
