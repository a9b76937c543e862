"""The catalogue: spaces, health, a diverse sample of a space, and embeddings as a service."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any, Literal

import asyncpg
from fastapi import APIRouter, Depends, Query, Request
from starlette.datastructures import UploadFile

from pipeline.service.problems import Problem
from pipeline.service.results import api_terms, result
from pipeline.service.state import ServiceState, service_state
from pipeline.service.uploads import read_upload

router = APIRouter(prefix="/api", tags=["catalogue"])

State = Annotated[ServiceState, Depends(service_state)]
MAX_DIVERSE = 200
MAX_INPUTS = 64  # texts and files in one /api/embeddings request


@router.get("/spaces")
async def spaces(state: State) -> dict[str, Any]:
    """The spaces holding vectors, with their image counts and the attribute values a picker
    can offer (keys with at most 50 distinct values)."""
    from pipeline.db.spaces import list_spaces

    async with state.pool.acquire() as conn:
        rows = await list_spaces(conn)
        default = await state.space(conn, None) if rows else None
    return {
        "default": default.name if default is not None else None,
        "spaces": [
            {
                "name": row.name,
                "backend": row.backend,
                "model": row.model,
                "weights": row.weights,
                "dimension": row.dimension,
                "images": row.images,
                "attributes": row.attributes,
            }
            for row in rows
        ],
    }


@router.get("/health")
async def health(state: State) -> dict[str, Any]:
    """Whether the database answers; the pgvector version; whether the role may write."""
    try:
        async with state.pool.acquire(timeout=5) as conn:
            version = await conn.fetchval(
                "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
            )
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as err:
        raise Problem(503, f"the database does not answer: {type(err).__name__}") from None
    return {"status": "ok", "database": "ok", "pgvector": version, "read_only": state.read_only}


@router.get("/diverse")
async def diverse(
    state: State,
    n: Annotated[int, Query(ge=1, le=MAX_DIVERSE)] = 12,
    method: Literal["kmeans", "random"] = "kmeans",
    prefix: str | None = None,
    space: str | None = None,
    where: Annotated[list[str] | None, Query()] = None,
) -> dict[str, Any]:
    """n images that cover the space: the one nearest each k-means centroid (or n at random)."""
    from pipeline.search.diverse import diverse as pick

    async with state.pool.acquire() as conn:
        chosen = await state.space(conn, space)
        picks = await pick(conn, chosen, n, method=method, prefix=prefix, where=where)
    return {
        "space": chosen.name,
        "method": method,
        "results": [
            result(
                object_id=p.object_id,
                name=p.name,
                locator=p.locator,
                content_type=p.content_type,
                attributes=p.attributes,
            )
            | {"cluster": p.cluster, "cluster_size": p.cluster_size}
            for p in picks
        ],
        "note": api_terms(picks.why_empty),
    }


@router.post(
    "/embeddings",
    openapi_extra={
        "requestBody": {
            "content": {
                "application/json": {"example": {"texts": ["red car"], "space": None}},
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "file": {
                                "type": "array",
                                "items": {"type": "string", "format": "binary"},
                            },
                            "text": {"type": "array", "items": {"type": "string"}},
                            "space": {"type": "string"},
                        },
                    }
                },
            }
        }
    },
)
async def embeddings(state: State, request: Request) -> dict[str, Any]:
    """Vectors for texts and/or images, in a space (JSON texts, or multipart files and texts)."""
    texts, files, space = await _embedding_inputs(request, state.config.max_upload_bytes)
    if not texts and not files:
        raise Problem(400, "give texts (JSON: texts; multipart: text) and/or image files (file)")
    async with state.pool.acquire() as conn:
        chosen = await state.space(conn, space)
    backend = state.backend(chosen)
    found = []
    if texts:
        vectors = await asyncio.to_thread(lambda: list(backend.embed_texts(texts)))
        found += [(f"text:{t}", v) for t, v in zip(texts, vectors, strict=True)]
    if files:
        found += await asyncio.to_thread(_embed_files, backend, files)
    return {
        "space": chosen.name,
        "dimension": chosen.dimension,
        "embeddings": [{"input": label, "vector": v.tolist()} for label, v in found],
    }


async def _embedding_inputs(request: Request, limit: int):
    """(texts, [(filename, bytes)], space) of a JSON or a multipart request."""
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        form = await request.form(max_files=MAX_INPUTS, max_fields=MAX_INPUTS + 1)
        form_texts = [t for t in form.getlist("text") if isinstance(t, str)]
        uploads = [f for f in form.getlist("file") if isinstance(f, UploadFile)]
        files = [(f.filename or "upload", await read_upload(f, limit)) for f in uploads]
        space = form.get("space")
        return form_texts, files, space if isinstance(space, str) and space else None
    try:
        body = json.loads(await request.body() or b"null")
    except ValueError:
        raise Problem(400, "the body is neither JSON nor multipart/form-data") from None
    given = body.get("texts") if isinstance(body, dict) else None
    if not isinstance(given, list) or not all(isinstance(t, str) for t in given):
        raise Problem(400, 'give JSON {"texts": ["..."], "space": null}')
    texts: list[str] = given
    if len(texts) > MAX_INPUTS:
        raise Problem(400, f"at most {MAX_INPUTS} texts per request")
    space = body.get("space")
    return texts, [], space if isinstance(space, str) and space else None


def _embed_files(backend, files: list[tuple[str, bytes]]):
    """Each upload decoded by the embed stage's rules, then embedded; the first bad one is a 400
    naming the file and the decoder's reason."""
    from pipeline.embedding.backends.base import ImageItem
    from pipeline.embedding.images import BadImage
    from pipeline.errors import ItemFailure

    items = []
    for filename, data in files:
        try:
            items.append(ImageItem(f"file:{filename}", source=backend.source_from_bytes(data)))
        except BadImage as err:
            raise Problem(400, f"{filename}: {err}") from None
    found = []
    for item, vector in backend.embed_stream(items):
        if isinstance(vector, ItemFailure):
            raise Problem(400, f"{item.locator.removeprefix('file:')}: {vector.reason}")
        found.append((item.locator, vector))
    return found
