"""The query: the k images nearest to a text, images (listed, files or an upload), or both, in
one space.

It reads only (no space is registered, nothing is recorded), so the read-only analysts' role can
search. The score beside each distance is `pipeline.core.score.score`, the one definition.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

import numpy as np

from pipeline.embedding.backends import EmbeddingBackend, ImageItem, ItemFailure
from pipeline.embedding.images import BadImage
from pipeline.embedding.readers import ObjectReader
from pipeline.errors import ConfigError
from pipeline.search.answers import Matches, QueryError
from pipeline.search.empty import anything_loaded, nothing_loaded
from pipeline.search.filters import Filters
from pipeline.search.nearest import nearest_matches, unit
from pipeline.search.query_image import listed_query_image, stored_vector


async def search(
    conn,
    backend: EmbeddingBackend,
    *,
    text: str | None = None,
    images: list[str] | None = None,
    object_ids: list[int] | None = None,
    upload: bytes | None = None,
    k: int = 10,
    min_score: float | None = None,
    source: str | None = None,
    where: list[str] | None = None,
    prefix: str | None = None,
    content_type: str | None = None,
    since: datetime | None = None,
    reader: ObjectReader | None = None,
) -> Matches:
    """The k images nearest to a text, images, or both (hybrid: the mean of the text's unit
    vector and the images' combined one).

    The query images: `images`, each a listed locator, a listed name (ambiguous across sources:
    an error that lists the locators) or a file embedded on the spot; `object_ids`, listed
    objects by id; `upload`, an image's bytes (decoded by the embed stage's rules). Their vectors
    are combined (the mean of the unit vectors) and every listed one is left out of the answer.
    `source` (id, root, spec or folder) limits the search, and the names, to one listed source.
    `where` (pipeline.core.where), `prefix` (of the name), `content_type` (exact, or `image/*`)
    and `since` (updated at or after) filter the images answered: the k nearest that pass are.
    Nothing is embedded (no model loaded) before the query is known to be answerable.
    """
    images, object_ids = images or [], object_ids or []
    check_query(text, bool(images or object_ids or upload is not None), k)
    filters = Filters(where or [], prefix, content_type, since)
    filters.sql(first_parameter=1)  # an unreadable --where is refused before anything is read
    space = backend.space
    # Looked up, never registered: a space nobody loaded is an empty answer, not a new row.
    space_id = await conn.fetchval(
        "SELECT space_id FROM embedding_spaces WHERE name = $1", space.name
    )
    source_id, root = None, None
    if source:
        # (here, not at the top: `pipeline.listing` brings pandas, 0.3 s a search need not pay)
        from pipeline.listing.registry import find_source

        source_id, root = await find_source(conn, source)
    exclude, image_vectors, files = [], [], []
    for image in images:
        listed = await listed_query_image(conn, image, space, space_id, source_id)
        if listed is None:
            files.append(image)
        else:
            exclude.append(listed[0])
            image_vectors.append(listed[1])
    for object_id in object_ids:
        image_vectors.append((await stored_vector(conn, object_id, space))[1])
        exclude.append(object_id)
    if not await anything_loaded(conn, space_id, source_id):
        return Matches.empty(await nothing_loaded(conn, space, root))

    reader = reader or ObjectReader()
    for image in files:
        image_vectors.append(await asyncio.to_thread(_embed_file, backend, image, reader))
    if upload is not None:
        image_vectors.append(await asyncio.to_thread(_embed_upload, backend, upload))
    vectors = [unit(image_vectors)] if image_vectors else []
    if text:
        vectors.append(await asyncio.to_thread(lambda: next(backend.embed_texts([text]))))
    return await nearest_matches(
        conn,
        space,
        space_id,
        unit(vectors),
        k,
        exclude=exclude,
        source_id=source_id,
        filters=filters,
        min_score=min_score,
    )


def check_query(text: str | None, has_images: bool, k: int) -> None:
    if not text and not has_images:
        raise QueryError("search needs a text, an --image, or both")
    if k < 1:
        raise QueryError(f"k must be at least 1, not {k}")


def _embed_file(backend: EmbeddingBackend, image: str, reader: ObjectReader) -> np.ndarray:
    """An image that was never listed (a file, a URI), embedded now."""
    try:
        source = backend.load_source(ImageItem(image), reader)
    except (BadImage, ItemFailure) as err:
        raise ConfigError(f"cannot use {image} as the query image: {err}") from None
    return _embed_one(backend, ImageItem(image, source=source))


def _embed_upload(backend: EmbeddingBackend, data: bytes) -> np.ndarray:
    """Uploaded bytes, decoded by the embed stage's rules (size and pixel limits) and embedded."""
    try:
        source = backend.source_from_bytes(data)
    except BadImage as err:
        raise QueryError(f"cannot use the uploaded file as the query image: {err}") from None
    return _embed_one(backend, ImageItem("upload", source=source))


def _embed_one(backend: EmbeddingBackend, item: ImageItem) -> np.ndarray:
    [(_, result)] = list(backend.embed_stream([item]))
    if isinstance(result, ItemFailure):
        raise ConfigError(f"cannot embed {item.locator}: {result.reason}")
    return result
