"""The nearest images to one query vector in a space, as Matches: the SQL every search runs
(by text, image, upload or a listed object's stored vector), and why an answer is empty."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np

from pipeline.core.score import score
from pipeline.core.space import EmbeddingSpace
from pipeline.search.answers import Match, Matches
from pipeline.search.empty import unmatched_filters
from pipeline.search.filters import Filters

#: hnsw.ef_search for a search with filters (pgvector's default, 40, serves the others)
FILTERED_EF_SEARCH = 400


@dataclass(frozen=True)
class StoredVector:
    """A query by a listed object's stored vector, read by the search's own SQL (one round trip
    where reading it first is two). No rows when the object has no vector there, or is deleted."""

    object_id: int


async def nearest_matches(
    conn,
    space: EmbeddingSpace,
    space_id: int | None,
    query: np.ndarray | StoredVector,
    k: int,
    *,
    exclude: list[int],
    source_id: int | None = None,
    filters: Filters | None = None,
    min_score: float | None = None,
) -> Matches:
    """The k images nearest `query` (a unit vector) meeting the filters, but those of `exclude`
    (object ids: the query's own images), nearest first; when none, `why_empty` says why."""
    filters = filters or Filters()
    rows = await _nearest(conn, space, space_id, source_id, query, k, exclude, filters)
    matches = Matches(
        Match(
            r["object_id"],
            r["locator"],
            r["name"],
            float(r["distance"]),
            score(r["distance"]),
            r["content_hash"],
            json.loads(r["attributes"]),
            r["content_type"],
        )
        for r in rows
    )
    if not matches and filters:
        return Matches.empty(await unmatched_filters(conn, space, space_id, filters))
    if not matches:
        return Matches.empty(f"no other image is loaded in space {space.name}")
    kept = Matches(m for m in matches if min_score is None or m.score >= min_score)
    if not kept:
        best = math.floor(matches[0].score * 10_000) / 10_000  # (rounded, 0.99999 read 1.00)
        kept.why_empty = f"no result scores at least {min_score:g}; the best was {best:.4f}"
    return kept


def unit(vectors: list[np.ndarray]) -> np.ndarray:
    """The mean of unit vectors, made a unit vector again."""
    mean = np.mean(vectors, axis=0)
    return mean / np.linalg.norm(mean)


async def _nearest(conn, space, space_id, source_id, query, k, exclude, filters: Filters):
    # Placeholders $1-$5 are this query's own. Iterative index scans are on for the session
    # (pipeline.db.connection.prepare_session): a filter still gets k rows from the index.
    condition, values = filters.sql(first_parameter=6)
    dimension = space.dimension
    target, stored = "$1", ""
    if isinstance(query, StoredVector):
        # (an uncorrelated subquery: run once, its value handed to the index scan. The HNSW
        # scan of a NULL returns rows in no order: no vector, no rows.)
        target = f"(SELECT embedding::vector({dimension}) FROM stored)"
        stored = """WITH stored AS MATERIALIZED (
            SELECT q.embedding FROM embeddings q JOIN objects qo ON qo.object_id = q.object_id
            WHERE q.object_id = $1::bigint AND q.space_id = $2 AND qo.deleted_at IS NULL)"""
        query = query.object_id
    sql = f"""
        {stored}
        SELECT * FROM (
            SELECT o.object_id, o.locator, o.name, o.content_hash, o.attributes::text,
                   o.content_type, e.embedding::vector({dimension}) <-> {target} AS distance
            FROM embeddings e JOIN objects o ON o.object_id = e.object_id
            WHERE e.space_id = $2 AND o.deleted_at IS NULL AND o.object_id <> ALL($4::bigint[])
              AND ($5::integer IS NULL OR o.source_id = $5)
              AND {condition} {"AND EXISTS (SELECT FROM stored)" if stored else ""}
            ORDER BY distance LIMIT $3
        ) nearest ORDER BY distance
        """
    arguments = (query, space_id, k, exclude, source_id, *values)
    if not values:
        return await conn.fetch(sql, *arguments)
    async with conn.transaction():
        # A filter drops most of the index's candidates: with pgvector's default candidate
        # list (40) a filter keeping 10 % of the images found 0.84 of the true 10 nearest,
        # with 400 0.97 (bench/bench_filter.py). A selective filter gets the exact plan anyway.
        await conn.execute(f"SET LOCAL hnsw.ef_search = {FILTERED_EF_SEARCH}")
        return await conn.fetch(sql, *arguments)
