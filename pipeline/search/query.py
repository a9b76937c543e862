"""The query: the k images nearest to a text, an image, or both, in one space.

It reads only (no space is registered, nothing is recorded), so the read-only analysts' role can
search. The score beside each distance is `pipeline.core.score.score`, the one definition.
"""

from __future__ import annotations

import asyncio

import numpy as np

from pipeline.core.score import score
from pipeline.core.space import EmbeddingSpace
from pipeline.embedding.backends import EmbeddingBackend, ImageItem, ItemFailure
from pipeline.embedding.images import BadImage
from pipeline.embedding.readers import ObjectReader
from pipeline.errors import ConfigError
from pipeline.listing.registry import find_source
from pipeline.search.answers import Match, Matches, QueryError
from pipeline.search.empty import anything_loaded, nothing_loaded
from pipeline.search.query_image import listed_query_image
from pipeline.search.where import where_sql


async def search(
    conn,
    backend: EmbeddingBackend,
    *,
    text: str | None = None,
    image: str | None = None,
    k: int = 10,
    min_score: float | None = None,
    source: str | None = None,
    where: list[str] | None = None,
    reader: ObjectReader | None = None,
) -> Matches:
    """The k images nearest to a text, an image, or both (hybrid: the mean of the two unit vectors).

    `image` is a listed locator, a listed name (ambiguous across sources: an error that lists the
    locators), or a file embedded on the spot. `source` (id, root, spec or folder) limits the
    search, and the names, to one listed source; by default every source is searched. `where`:
    conditions (pipeline.core.where) every image answered meets; the k nearest that do are
    answered. Nothing is embedded (no model loaded) before the query is known to be answerable.
    """
    check_query(text, image, k)
    # Placeholders $1-$5 are _nearest's own.
    filters = where_sql(where or [], first_parameter=6)
    space = backend.space
    # Looked up, never registered: a space nobody loaded is an empty answer, not a new row.
    space_id = await conn.fetchval(
        "SELECT space_id FROM embedding_spaces WHERE name = $1", space.name
    )
    source_id, root = await find_source(conn, source) if source else (None, None)
    listed = await listed_query_image(conn, image, space, space_id, source_id) if image else None
    if not await anything_loaded(conn, space_id, source_id):
        return Matches.empty(await nothing_loaded(conn, space, root))

    vectors = []
    if text:
        vectors.append(await asyncio.to_thread(lambda: next(backend.embed_texts([text]))))
    exclude = None
    if listed is not None:
        exclude, vector = listed
        vectors.append(vector)
    elif image:
        reader = reader or ObjectReader()
        vectors.append(await asyncio.to_thread(_embed_file, backend, image, reader))
    query = np.mean(vectors, axis=0)
    query = query / np.linalg.norm(query)
    rows = await _nearest(conn, space, space_id, source_id, query, k, exclude, filters)
    matches = Matches(
        Match(r["locator"], r["name"], float(r["distance"]), score(r["distance"])) for r in rows
    )
    if not matches and where:
        conditions = " and ".join(f"--where {w!r}" for w in where)
        return Matches.empty(f"no image in space {space.name} matches {conditions}")
    if not matches:
        return Matches.empty(f"no other image is loaded in space {space.name}")
    kept = Matches(m for m in matches if min_score is None or m.score >= min_score)
    if not kept:
        kept.why_empty = (
            f"no result scores at least {min_score:g}; the best was {matches[0].score:.2f}"
        )
    return kept


def check_query(text: str | None, image: str | None, k: int) -> None:
    if not text and not image:
        raise QueryError("search needs a text, an --image, or both")
    if k < 1:
        raise QueryError(f"k must be at least 1, not {k}")


#: hnsw.ef_search for a search with --where (pgvector's default, 40, serves the others)
FILTERED_EF_SEARCH = 400


async def _nearest(conn, space: EmbeddingSpace, space_id, source_id, query, k, exclude, filters):
    condition, values = filters
    async with conn.transaction():
        if await _has_iterative_scans(conn):
            # Deleted objects, other sources and --where are filtered out of the index's
            # candidates: read on until k rows pass (pgvector >= 0.8). relaxed_order keeps the
            # near rows found late, which strict_order drops: better recall at the same cost
            # (measured: sql/README.md); the outer query puts them back in order.
            await conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
        if values:
            # A --where drops most of the index's candidates: with pgvector's default candidate
            # list (40) a filter keeping 10 % of the images found 0.84 of the true 10 nearest,
            # with 400 0.97 (bench/bench_filter.py). A selective filter gets the exact plan anyway.
            await conn.execute(f"SET LOCAL hnsw.ef_search = {FILTERED_EF_SEARCH}")
        return await conn.fetch(
            f"""
            SELECT * FROM (
                SELECT o.locator, o.name, e.embedding::vector({space.dimension}) <-> $1 AS distance
                FROM embeddings e JOIN objects o ON o.object_id = e.object_id
                WHERE e.space_id = $2 AND o.deleted_at IS NULL AND o.locator IS DISTINCT FROM $4
                  AND ($5::integer IS NULL OR o.source_id = $5)
                  AND {condition}
                ORDER BY distance LIMIT $3
            ) nearest ORDER BY distance
            """,
            query,
            space_id,
            k,
            exclude,
            source_id,
            *values,
        )


async def _has_iterative_scans(conn) -> bool:
    """pgvector >= 0.8 in this database (`imgvec db status` notes an older one, and how to update
    it); older ones search without iterative scans: a source may then get fewer than k rows."""
    from pipeline.db import ITERATIVE_SCANS, version_tuple

    version = await conn.fetchval("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
    return version is not None and version_tuple(version) >= ITERATIVE_SCANS


def _embed_file(backend, image: str, reader: ObjectReader):
    """An image that was never listed (a file, a URI), embedded now."""
    try:
        source = backend.load_source(ImageItem(image), reader)
    except (BadImage, ItemFailure) as err:
        raise ConfigError(f"cannot use {image} as the query image: {err}") from None
    [(_, result)] = list(backend.embed_stream([ImageItem(image, source=source)]))
    if isinstance(result, ItemFailure):
        raise ConfigError(f"cannot embed {image}: {result.reason}")
    return result
