"""One listed image by its object id: metadata, nearest images, thumbnail, original.

Only a listed, not deleted object found by its id is ever read: its locator comes from the
database, never from the request."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from pipeline.errors import ItemFailure
from pipeline.search import similar_to
from pipeline.service.problems import Problem
from pipeline.service.results import answer, result
from pipeline.service.search_api import MAX_K
from pipeline.service.state import ServiceState, service_state

router = APIRouter(prefix="/api/images", tags=["images"])

State = Annotated[ServiceState, Depends(service_state)]
THUMBNAIL_CACHE = "public, max-age=31536000, immutable"  # content-addressed: never changes
# An original is data from a bucket: never run as a page of this origin (an SVG or HTML "image"
# would otherwise script the gallery and read its token cookie).
ORIGINAL_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; img-src 'self'; sandbox",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "private, max-age=3600",
}

_OBJECT = """
    SELECT o.object_id, o.name, o.locator, o.content_type, o.attributes, o.size, o.updated_at,
           o.content_hash, s.root AS source,
           ARRAY(SELECT sp.name FROM embeddings e
                 JOIN embedding_spaces sp ON sp.space_id = e.space_id
                 WHERE e.object_id = o.object_id ORDER BY sp.space_id) AS spaces
    FROM objects o LEFT JOIN sources s ON s.source_id = o.source_id
    WHERE o.object_id = $1 AND o.deleted_at IS NULL
"""
# Only what names a thumbnail: a page asks for 48 at once.
_THUMBNAIL_KEY = (
    "SELECT locator, content_hash FROM objects WHERE object_id = $1 AND deleted_at IS NULL"
)


@router.get("/{object_id}")
async def image(state: State, object_id: int, space: str | None = None) -> dict[str, Any]:
    """A listed image's metadata, and the spaces holding a vector for it."""
    async with state.pool.acquire() as conn:
        if space is not None:
            await state.space(conn, space)  # an unknown space is a 404 naming the known ones
        row = await listed_object(conn, object_id)
    return result(
        object_id=row["object_id"],
        name=row["name"],
        locator=row["locator"],
        content_type=row["content_type"],
        attributes=_attributes(row["attributes"]),
    ) | {
        "size": row["size"],
        "updated_at": row["updated_at"].isoformat() if row["updated_at"] else None,
        "content_hash": row["content_hash"],
        "source": row["source"],
        "spaces": list(row["spaces"]),
    }


@router.get("/{object_id}/similar")
async def similar(
    state: State,
    object_id: int,
    k: Annotated[int, Query(ge=1, le=MAX_K)] = 10,
    space: str | None = None,
    where: Annotated[list[str] | None, Query()] = None,
    min_score: Annotated[float | None, Query(ge=0.0, le=1.0)] = None,
    prefix: Annotated[str | None, Query(description="Names starting with this.")] = None,
) -> dict[str, Any]:
    """The images nearest to a listed image's stored vector (itself never among them)."""
    async with state.pool.acquire() as conn:
        chosen = await state.space(conn, space)
        matches = await similar_to(
            conn,
            chosen,
            object_id,
            k,
            where=where,
            min_score=min_score,
            prefix=prefix,
            space_id=await state.space_id(conn, chosen),
        )
    query = dict(object_id=object_id, k=k, where=where, min_score=min_score, prefix=prefix)
    return answer(chosen.name, query, matches)


@router.api_route("/{object_id}/thumbnail", methods=["GET", "HEAD"])  # (curl -I)
async def thumbnail(state: State, object_id: int, request: Request) -> Response:
    """A small WebP of the image: from a work dir, or made from the original once and cached."""
    from pipeline.core.objects import content_key

    async with state.pool.acquire() as conn:
        row = await listed_object(conn, object_id, _THUMBNAIL_KEY)
        work_dirs = await state.work_dirs(conn)
    key = content_key(row["locator"], row["content_hash"])
    etag = _etag(key)
    headers = {"Cache-Control": THUMBNAIL_CACHE, "ETag": etag}
    if etag in request.headers.get("if-none-match", "").replace("W/", "").split(", "):
        return Response(status_code=304, headers=headers)
    data = await asyncio.to_thread(_thumbnail, state, work_dirs, key, row["locator"])
    return Response(data, media_type="image/webp", headers=headers)


@router.api_route("/{object_id}/original", methods=["GET", "HEAD"])  # (curl -I)
async def original(state: State, object_id: int) -> Response:
    """The image's own bytes, read from its source, with its listed content type."""
    from pipeline.core.objects import guess_content_type

    async with state.pool.acquire() as conn:
        row = await listed_object(conn, object_id)
    data = await asyncio.to_thread(_read, state.reader(), row["locator"], row["size"])
    content_type = (
        row["content_type"] or guess_content_type(row["name"]) or "application/octet-stream"
    )
    return Response(data, media_type=content_type, headers=ORIGINAL_HEADERS)


async def listed_object(conn, object_id: int, sql: str = _OBJECT):
    row = await conn.fetchrow(sql, object_id)
    if row is None:
        raise Problem(404, f"no listed image has object id {object_id}")
    return row


def _thumbnail(state: ServiceState, work_dirs, key: str, locator: str) -> bytes:
    from pipeline.embedding.images import BadImage
    from pipeline.embedding.thumbnails import thumbnail_for

    try:
        return thumbnail_for(work_dirs, key, locator, state.reader(), state.thumbnail_cache())
    except BadImage as err:
        raise Problem(404, f"no thumbnail: the original is not a usable image ({err})") from None
    except ItemFailure as err:
        raise _unreadable(err) from None


def _read(reader, locator: str, size: int | None) -> bytes:
    try:
        return reader.read(locator, size=size)
    except ItemFailure as err:
        raise _unreadable(err) from None


def _unreadable(err: ItemFailure) -> Problem:
    if not err.permanent:
        return Problem(503, f"the original cannot be read now: {err.reason}")
    return Problem(404, f"the original cannot be read: {err.reason}")


def _etag(key: str) -> str:
    """The content key as an entity tag (hashed when it is a locator with odd characters)."""
    if re.fullmatch(r"[A-Za-z0-9:._-]+", key):
        return f'"{key}"'
    return '"' + hashlib.sha256(key.encode()).hexdigest()[:32] + '"'


def _attributes(value) -> dict:
    return json.loads(value) if isinstance(value, str) else dict(value or {})
