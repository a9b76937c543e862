"""The sources table: which source a listing is of, and which source is the default.

A name (objects.name) is relative to the source it was listed from, so it identifies an image only
within that source; `image_embeddings` shows the default source (migration 0006).
"""

from __future__ import annotations

import asyncpg

from pipeline.errors import ConfigError, ImgvecError, UsageError
from pipeline.sources import Source, SourceOptions, open_source

# pg_advisory_xact_lock key serialising the choice of a default source ("imgsrc" in ASCII).
_SOURCES_LOCK_KEY = 0x696D67737263


async def register_source(conn: asyncpg.Connection, source: Source) -> int:
    """The source's id, recording it on first listing. Call it inside the listing's transaction,
    so that a listing that fails or is killed records no source; `settle_source` ends it.

    No lock and no update of an existing row here: either would be held for the whole listing
    (serialising listings of different sources, or deadlocking with another's `settle_source`).
    A second first listing of the same root waits on the insert until the first one ends."""
    # The root, the normalised place listed, is the identity: `imgvec list ./pics` and
    # `imgvec list /home/me/pics/` are one source.
    source_id = await conn.fetchval(
        """
        INSERT INTO sources (root, kind, spec) VALUES ($1, $2, $3)
        ON CONFLICT (root) DO NOTHING RETURNING source_id
        """,
        source.root(),
        source.scheme,
        source.spec,
    )
    if source_id is None:
        source_id = await conn.fetchval(
            "SELECT source_id FROM sources WHERE root = $1", source.root()
        )
    return source_id


async def settle_source(conn: asyncpg.Connection, source_id: int, source: Source) -> None:
    """At the end of a listing's transaction (its commit follows): note the spec and time of this
    listing, and choose the default. The first source listed becomes the default; so does a later
    one while the default holds no image (e.g. all its objects were deleted).

    The lock (held until the commit, a moment) keeps two listings ending at once from both making
    themselves the default."""
    await conn.execute("SELECT pg_advisory_xact_lock($1)", _SOURCES_LOCK_KEY)
    await conn.execute(
        "UPDATE sources SET spec = $2, last_listed_at = now() WHERE source_id = $1",
        source_id,
        source.spec,
    )
    default = await conn.fetchval("SELECT source_id FROM sources WHERE is_default")
    if default != source_id and (default is None or not await _has_images(conn, default)):
        await conn.execute("SELECT set_default_source($1)", str(source_id))


async def set_default_source(conn: asyncpg.Connection, source: str) -> str:
    """Make a source the default behind `image_embeddings` (by id, root, spec, or a local folder);
    returns its root. No vector moves."""
    try:
        return await conn.fetchval("SELECT set_default_source($1)", normalise_source(source))
    except asyncpg.NoDataFoundError as err:
        raise ConfigError(str(err), hint=err.hint) from None


async def find_source(conn: asyncpg.Connection, source: str) -> tuple[int, str]:
    """(source_id, root) of a listed source given by id, root, spec, or a local folder."""
    wanted = normalise_source(source)
    row = await conn.fetchrow(
        """
        SELECT source_id, root FROM sources
        WHERE source_id::text = $1 OR root = $1 OR spec = $1 OR root = $1 || '/'
        ORDER BY root = $1 DESC, source_id LIMIT 1
        """,
        wanted,
    )
    if row is None:
        known = await conn.fetch("SELECT source_id, root FROM sources ORDER BY source_id")
        listed = ", ".join(f"{r['source_id']} {r['root']!r}" for r in known) or "none yet"
        raise UsageError(  # (a mistyped name, as a mistyped flag: exit 2)
            f"no source {source!r} is listed", hint=f"listed sources (id root): {listed}"
        )
    return row["source_id"], row["root"]


def normalise_source(source: str) -> str:
    """A source's spec as its root (a local folder as file:///abs/path/), so that any way of
    naming it finds it; anything no source lists (an id, a root) as given."""
    try:
        return open_source(source, SourceOptions()).root()
    except ImgvecError:
        return source


async def _has_images(conn: asyncpg.Connection, source_id: int) -> bool:
    return await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM objects WHERE source_id = $1 AND deleted_at IS NULL)",
        source_id,
    )
