"""More like this: the images nearest a listed object's stored vector. No model, no backend."""

from __future__ import annotations

from datetime import datetime

from pipeline.core.space import EmbeddingSpace
from pipeline.search.answers import Matches, QueryError
from pipeline.search.filters import Filters
from pipeline.search.nearest import StoredVector, nearest_matches
from pipeline.search.query_image import stored_vector


async def similar_to(
    conn,
    space: EmbeddingSpace,
    object_id: int,
    k: int = 10,
    where: list[str] | None = None,
    *,
    prefix: str | None = None,
    content_type: str | None = None,
    since: datetime | None = None,
    min_score: float | None = None,
    space_id: int | None = None,
) -> Matches:
    """The k images of the space nearest the object's vector there, itself left out. NotFound
    for an id no object has; a QueryError when it has no vector in the space (or is deleted).

    A caller that knows the space's id (the service keeps it) gets the answer in one round
    trip; the object is looked at on its own only when that finds nothing, to say why."""
    if k < 1:
        raise QueryError(f"k must be at least 1, not {k}")
    filters = Filters(where or [], prefix, content_type, since)
    filters.sql(first_parameter=1)  # an unreadable --where: refused before anything is read
    if space_id is not None:
        found = await nearest_matches(
            conn, space, space_id, StoredVector(object_id), k, exclude=[object_id],
            filters=filters, min_score=min_score,
        )  # fmt: skip
        if found:
            return found
    # (none found: the long way says why, e.g. no vector there, or another space's id)
    space_id, vector = await stored_vector(conn, object_id, space)
    return await nearest_matches(
        conn, space, space_id, vector, k, exclude=[object_id], filters=filters, min_score=min_score
    )
