"""The notebook API: embed `(locator, PIL.Image)` pairs or texts, vectors back in a stream.

from pipeline import embed_images
for locator, vector in embed_images(pairs, backend="clip", pretrained="none"):
    ...
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator

import numpy as np

from pipeline.embedding.backends import EmbeddingBackend, ImageItem, ItemFailure, get_backend
from pipeline.embedding.images import to_rgb


def embed_images(
    items: Iterable[tuple[str, object]],
    backend: str | EmbeddingBackend = "clip",
    *,
    batch_size: int = 50,
    **backend_options,
) -> Iterator[tuple[str, np.ndarray | None]]:
    """Yield `(locator, vector)` for each `(locator, PIL.Image)`, in order, holding at most a few
    batches in memory. An image that cannot be embedded yields `(locator, None)`."""
    model = _backend(backend, batch_size, backend_options)

    def prepared() -> Iterator[ImageItem]:
        for locator, image in items:
            try:
                rgb = to_rgb(image)
            except (OSError, ValueError) as err:
                yield ImageItem(locator, source=ItemFailure(f"cannot convert the image: {err}"))
                continue
            if model.input_kind == "image":
                yield ImageItem(locator, source=model.prepare(rgb))
            elif hasattr(model, "source_for_image"):  # Vertex: PNG, within its size limit
                yield ImageItem(locator, source=model.source_for_image(rgb))
            else:
                buffer = io.BytesIO()
                rgb.save(buffer, format="PNG")
                yield ImageItem(locator, source=buffer.getvalue())

    for item, result in model.embed_stream(prepared()):
        yield item.locator, None if isinstance(result, ItemFailure) else result


def embed_texts(
    texts: Iterable[str],
    backend: str | EmbeddingBackend = "clip",
    *,
    batch_size: int = 50,
    **backend_options,
) -> Iterator[np.ndarray]:
    """Yield one vector per text, in the same space as the backend's images."""
    yield from _backend(backend, batch_size, backend_options).embed_texts(texts)


def _backend(backend, batch_size: int, options: dict) -> EmbeddingBackend:
    model = get_backend(backend, **options) if isinstance(backend, str) else backend
    if model.name != "vertex":  # Vertex takes one image per request whatever is asked
        model.batch_size = batch_size
    return model
