"""The notebook API: embed `(locator, PIL.Image)` pairs or texts, vectors back in a stream.

from pipeline import embed_images
for locator, vector in embed_images(pairs, pretrained="none"):  # the first installed backend
    ...
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

from pipeline.embedding.backends import EmbeddingBackend, ImageItem, ItemFailure
from pipeline.plugins import backend_names, get_backend


def embed_images(
    items: Iterable[tuple[str, object]],
    backend: str | EmbeddingBackend | None = None,
    *,
    batch_size: int = 50,
    **backend_options,
) -> Iterator[tuple[str, np.ndarray | None]]:
    """Yield `(locator, vector)` for each `(locator, PIL.Image)`, in order, holding at most a few
    batches in memory. `backend`: a name (default: the first installed) with its options, or a
    backend. An image that cannot be embedded yields `(locator, None)`."""
    model = _backend(backend, batch_size, backend_options)

    def prepared() -> Iterator[ImageItem]:
        for locator, image in items:
            try:
                source = model.source_from_image(image)
            except (OSError, ValueError) as err:
                source = ItemFailure(f"cannot convert the image: {err}")
            yield ImageItem(locator, source=source)

    for item, result in model.embed_stream(prepared()):
        yield item.locator, None if isinstance(result, ItemFailure) else result


def embed_texts(
    texts: Iterable[str],
    backend: str | EmbeddingBackend | None = None,
    *,
    batch_size: int = 50,
    **backend_options,
) -> Iterator[np.ndarray]:
    """Yield one vector per text, in the same space as the backend's images."""
    yield from _backend(backend, batch_size, backend_options).embed_texts(texts)


def _backend(backend, batch_size: int, options: dict) -> EmbeddingBackend:
    if isinstance(backend, EmbeddingBackend):
        model = backend
    else:
        model = get_backend(backend or backend_names()[0], **options)
    model.batch_size = min(batch_size, model.max_batch_size or batch_size)
    return model
