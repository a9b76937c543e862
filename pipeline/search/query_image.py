"""Which listed image a query image names, or why none can be used: unknown (with the names it
may be a typo of), ambiguous across sources, deleted, failed to embed, or not in the space."""

from __future__ import annotations

import difflib
import shlex
from pathlib import Path

from pipeline.core.space import EmbeddingSpace
from pipeline.plugins import reads_locator
from pipeline.search.answers import NotFound, QueryError


async def listed_query_image(
    conn, image: str, space: EmbeddingSpace, space_id: int | None, source_id: int | None
):
    """(object id, vector) of a listed query image; None when it is not listed but is a file or
    a URI to embed on the spot. Anything else is a QueryError that says why and what to do."""
    listed_file = await _listed_local_file(conn, image, space_id)
    if listed_file is not None:
        return listed_file
    rows = await conn.fetch(
        """
        SELECT o.object_id, o.locator, o.deleted_at, s.root, e.embedding
        FROM objects o
        LEFT JOIN sources s ON s.source_id = o.source_id
        LEFT JOIN embeddings e ON e.object_id = o.object_id AND e.space_id = $2
        WHERE o.locator = $1 OR (o.name = $1 AND ($3::integer IS NULL OR o.source_id = $3))
        ORDER BY o.locator
        """,
        image,
        space_id,
        source_id,
    )
    exact = [r for r in rows if r["locator"] == image]
    live = exact or [r for r in rows if r["deleted_at"] is None]
    if len(live) > 1:
        raise _ambiguous(image, live)
    if not live:
        if _is_file_or_uri(image):
            return None
        if rows:
            raise _deleted(image, max(r["deleted_at"] for r in rows))
        raise await _never_listed(conn, image, source_id)
    [row] = live
    if row["embedding"] is not None:
        return row["object_id"], row["embedding"].to_numpy()
    raise await _not_in_space(conn, image, row["locator"], space, space_id)


async def _listed_local_file(conn, image: str, space_id: int | None):
    """(object id, vector) when `image` is the path of a local file listed as it is now (same
    size and modification time) with a vector in the space: its stored vector, and the image left
    out of its own answer, as for a listed name. None otherwise: looked up by name, or embedded."""
    path = Path(image).expanduser()
    if space_id is None or reads_locator(image) or not path.is_file():
        return None
    now = path.stat()
    row = await conn.fetchrow(
        """
        SELECT o.object_id, e.embedding FROM objects o
        JOIN embeddings e ON e.object_id = o.object_id AND e.space_id = $2
        WHERE o.locator = $1 AND o.deleted_at IS NULL AND o.size = $3 AND o.generation = $4
        """,
        f"file://{path.resolve()}",  # (the local source's locators: resolved paths)
        space_id,
        now.st_size,
        str(now.st_mtime_ns),
    )
    return None if row is None else (row["object_id"], row["embedding"].to_numpy())


async def stored_vector(conn, object_id: int, space: EmbeddingSpace):
    """(the space's id, the vector a listed object has there), in one round trip: NotFound for an
    id no object has, a QueryError for a deleted object or one without a vector in the space."""
    row = await conn.fetchrow(
        """
        SELECT sp.space_id, o.name, o.locator, o.deleted_at, e.embedding FROM objects o
        LEFT JOIN embedding_spaces sp ON sp.name = $2
        LEFT JOIN embeddings e ON e.object_id = o.object_id AND e.space_id = sp.space_id
        WHERE o.object_id = $1
        """,
        object_id,
        space.name,
    )
    if row is None:
        raise NotFound(f"no object has the id {object_id}")
    if row["deleted_at"] is not None:
        raise _deleted(row["name"], row["deleted_at"])
    if row["embedding"] is None:
        raise await _not_in_space(conn, row["name"], row["locator"], space, row["space_id"])
    return row["space_id"], row["embedding"].to_numpy()


def _deleted(image: str, gone) -> QueryError:
    return QueryError(
        f"{image!r} was deleted from its source on {gone:%Y-%m-%d %H:%M} UTC",
        hint="its vectors are kept, but it is no longer searched; give a file to search by it",
    )


def _is_file_or_uri(image: str) -> bool:
    """A locator some installed source reads (its reader fetches it), or a local file."""
    return reads_locator(image) or Path(image).expanduser().is_file()


def _ambiguous(image: str, rows) -> QueryError:
    shown = ", ".join(repr(r["locator"]) for r in rows[:5])
    more = f" and {len(rows) - 5} more" if len(rows) > 5 else ""
    roots = sorted({r["root"] for r in rows if r["root"]})
    return QueryError(
        f"{image!r} names {len(rows)} images: {shown}{more}",
        hint=f"give the full locator, e.g. --image {shlex.quote(rows[0]['locator'])}, or choose "
        f"the source with --source ({', '.join(repr(root) for root in roots)})",
    )


async def _never_listed(conn, image: str, source_id: int | None) -> QueryError:
    # Typos keep the length within a few characters: that bounds what is read on a big table.
    names = await conn.fetch(
        """
        SELECT DISTINCT name FROM objects
        WHERE deleted_at IS NULL AND ($2::integer IS NULL OR source_id = $2)
          AND length(name) BETWEEN length($1) - 3 AND length($1) + 3
        LIMIT 50000
        """,
        image,
        source_id,
    )
    close = difflib.get_close_matches(image, [r["name"] for r in names], n=3, cutoff=0.6)
    hint = (
        f"did you mean {' or '.join(repr(name) for name in close)}?"
        if close
        else "give a listed name or locator (imgvec run SOURCE lists and embeds new images), "
        "or the path of an image file"
    )
    return QueryError(f"{image!r} was never listed and is not a file", hint=hint)


async def _not_in_space(
    conn, image: str, locator: str, space: EmbeddingSpace, space_id: int | None
) -> QueryError:
    reason = await conn.fetchval(
        """
        SELECT reason FROM failures WHERE locator = $1 AND space_id = $2
        ORDER BY last_failed_at DESC LIMIT 1
        """,
        locator,
        space_id,
    )
    if reason is not None:
        return QueryError(
            f"{image!r} was listed but could not be embedded in space {space.name}: {reason}",
            hint="`imgvec embed --retry-failed` (same backend options) tries it again",
        )
    elsewhere = await conn.fetch(
        """
        SELECT s.name FROM embeddings e JOIN objects o ON o.object_id = e.object_id
        JOIN embedding_spaces s ON s.space_id = e.space_id WHERE o.locator = $1 ORDER BY s.space_id
        """,
        locator,
    )
    found = f" (it has vectors in {', '.join(r['name'] for r in elsewhere)})" if elsewhere else ""
    return QueryError(
        f"{image!r} is listed but not in space {space.name}{found}",
        hint="`imgvec run SOURCE` with the same backend options embeds and loads it, or give the "
        "backend options of a space it is in",
    )
