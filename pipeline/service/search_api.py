"""`GET /api/search` (a text, listed images, or both) and `POST /api/search` (an uploaded image)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile

from pipeline.search import search
from pipeline.service.problems import Problem
from pipeline.service.results import answer
from pipeline.service.state import ServiceState, service_state
from pipeline.service.uploads import ListedOnlyReader, read_upload

router = APIRouter(prefix="/api", tags=["search"])

MAX_K = 1000
_GIVE = "give an object id, a listed name or a listed locator"
State = Annotated[ServiceState, Depends(service_state)]
K = Annotated[int, Query(ge=1, le=MAX_K, description="How many images.")]
MinScore = Annotated[
    float | None, Query(ge=0.0, le=1.0, description="Leave out matches scoring below this.")
]
Repeated = Annotated[list[str] | None, Query()]


async def known_parameters(request: Request) -> None:
    """A parameter the endpoint does not take is refused, never ignored: `txt=red` would
    otherwise answer a search for something else. The names taken are the endpoint's own
    parameters (its dependencies take none)."""
    import difflib

    route = request.scope["route"].dependant
    taken = [p.alias for p in route.query_params]
    form = [p.alias for p in route.body_params]
    given = [(name, "parameter", taken) for name in request.query_params]
    if form and _is_multipart(request):  # (the form is parsed already: this reads a cache)
        given += [(name, "form field", form) for name in (await request.form())]
    for name, kind, names in given:
        if name in names:
            continue
        if name in form:  # (POST's fields in the URL)
            raise Problem(400, f"{name!r} is a form field here: send it in the multipart form")
        close = difflib.get_close_matches(name, names, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        listed = f"; {kind}s: {', '.join(names)}" if names else ""
        raise Problem(400, f"unknown {kind} {name!r}{hint}{listed}")


async def multipart_only(request: Request) -> None:
    """POST /api/search takes an upload; a JSON body would otherwise be answered "file: required"."""
    if not _is_multipart(request):
        raise Problem(
            415,
            "POST /api/search takes an image as multipart form field 'file' (curl -F "
            "file=@query.jpg); send a query without an image as parameters: "
            "GET /api/search?text=...",
            headers={"Accept": "multipart/form-data"},  # (RFC 9110: what would have been taken)
        )


def _is_multipart(request: Request) -> bool:
    return request.headers.get("content-type", "").lower().startswith("multipart/form-data")


@router.get("/search", dependencies=[Depends(known_parameters)])
async def search_images(
    state: State,
    text: str | None = None,
    image: Annotated[
        list[str] | None,
        Query(description="A listed image: its object id, name or locator. Repeatable."),
    ] = None,
    k: K = 10,
    min_score: MinScore = None,
    space: str | None = None,
    prefix: Annotated[str | None, Query(description="Names starting with this.")] = None,
    content_type: Annotated[
        str | None, Query(description="A content type, or a prefix such as image/*.")
    ] = None,
    since: Annotated[datetime | None, Query(description="Updated at or after this.")] = None,
    where: Annotated[
        list[str] | None, Query(description="A condition as imgvec search --where. Repeatable.")
    ] = None,
    source: Annotated[str | None, Query(description="One listed source only.")] = None,
) -> dict[str, Any]:
    """The images nearest to a text, to listed images (their vectors combined), or both."""
    images = [i for i in image or [] if i]
    if not text and not images:
        raise Problem(400, "give a text, an image (image=, repeatable) or both")
    object_ids = [int(i) for i in images if i.isdigit()]
    names = [i for i in images if not i.isdigit()]
    filters = {"prefix": prefix, "content_type": content_type, "since": since, "where": where}
    async with state.pool.acquire() as conn:
        chosen = await state.space(conn, space)
        await check_listed(conn, names)
        matches = await _search(
            conn,
            state,
            chosen,
            text=text,
            images=names or None,
            object_ids=object_ids or None,
            k=k,
            min_score=min_score,
            source=await listed_source(conn, source) if source else None,
            **filters,
        )
    query = {"text": text, "image": images, "k": k, "min_score": min_score, "source": source}
    return answer(chosen.name, query | filters, matches)


@router.post("/search", dependencies=[Depends(multipart_only), Depends(known_parameters)])
async def search_by_upload(
    state: State,
    file: Annotated[UploadFile, File(description="An image to search by.")],
    text: Annotated[str | None, Form()] = None,
    k: Annotated[int, Form(ge=1, le=MAX_K)] = 10,
    min_score: Annotated[float | None, Form(ge=0.0, le=1.0)] = None,
    space: Annotated[str | None, Form()] = None,
    where: Annotated[list[str] | None, Form()] = None,
    prefix: Annotated[str | None, Form(description="Names starting with this.")] = None,
) -> dict[str, Any]:
    """The images nearest to an uploaded image (and a text, if given: hybrid)."""
    data = await read_upload(file, state.config.max_upload_bytes)
    async with state.pool.acquire() as conn:
        chosen = await state.space(conn, space)
        matches = await _search(
            conn,
            state,
            chosen,
            text=text,
            upload=data,
            k=k,
            min_score=min_score,
            where=where,
            prefix=prefix,
        )
    query = {
        "text": text,
        "file": file.filename,
        "k": k,
        "min_score": min_score,
        "where": where,
        "prefix": prefix,
    }
    return answer(chosen.name, query, matches)


async def _search(conn, state: ServiceState, space, **query):
    return await search(conn, state.backend(space), reader=ListedOnlyReader(), **query)


async def check_listed(conn, names: list[str]) -> None:
    """Each name is a listed object's name or locator: checked before search sees it, which
    would otherwise take a path or a URI for a file to embed (as the CLI does). The answer never
    depends on what exists on the server's disk."""
    for name in names:
        listed = await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM objects WHERE locator = $1 OR name = $1)", name
        )
        if not listed:
            close = await _close_names(conn, name)
            hint = f"did you mean {' or '.join(map(repr, close))}?" if close else _GIVE
            raise Problem(404, f"{name!r} is not a listed image: {hint}")


async def _close_names(conn, name: str) -> list[str]:
    """Listed names `name` may be a typo of (a typo keeps the length within a few characters,
    which bounds what is read on a big table)."""
    import difflib

    rows = await conn.fetch(
        """
        SELECT DISTINCT name FROM objects WHERE deleted_at IS NULL
            AND length(name) BETWEEN length($1) - 3 AND length($1) + 3 LIMIT 50000
        """,
        name,
    )
    return difflib.get_close_matches(name, [r["name"] for r in rows], n=3, cutoff=0.6)


async def listed_source(conn, source: str) -> str:
    """The root of the listed source `source` names (its id, root or spec), looked up in the
    database only: search would otherwise open `source` to normalise it (a folder, a file of
    locators, a bucket), and a request must never make the server look at a path. A folder as it
    was listed (`/data/photos`, `./photos`: relative to the server's folder, as the CLI's to its
    own) is matched by the root it was listed as, computed from the text alone."""
    root = await conn.fetchval(
        """
        SELECT root FROM sources WHERE source_id::text = $1 OR root = $1 OR spec = $1
            OR root = $1 || '/' OR root = $2
        ORDER BY root = $1 DESC, source_id LIMIT 1
        """,
        source,
        _folder_root(source),
    )
    if root is None:
        known = await conn.fetch("SELECT source_id, root FROM sources ORDER BY source_id")
        listed = ", ".join(f"{r['source_id']} {r['root']!r}" for r in known) or "none yet"
        raise Problem(404, f"no source {source!r} is listed (sources, id and root: {listed})")
    return root


def _folder_root(source: str) -> str | None:
    """The root a local folder `source` was listed as (file:///abs/path/), or None for a URI.
    os.path.abspath only joins and normalises text: nothing on disk is looked at."""
    import os.path

    if "://" in source:
        return None
    return "file://" + os.path.abspath(os.path.expanduser(source)).rstrip("/") + "/"
