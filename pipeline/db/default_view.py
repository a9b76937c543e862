"""The compatibility view `image_embeddings`: the default space's vectors of the default source's
images, under the names analysts' queries use (image_id, content, embedding)."""

from __future__ import annotations

import asyncpg

from pipeline.db import locks
from pipeline.db.comments import apply_comments, comments_of


async def set_default_space(conn: asyncpg.Connection, space_id: int) -> None:
    """Point `image_embeddings` at another space. No vector of any space is touched."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", locks.SPACES_DDL)
        await make_default(conn, space_id)


async def make_default(conn: asyncpg.Connection, space_id: int) -> None:
    """Make the space the default and rebuild the view on it. In the caller's transaction, which
    holds locks.SPACES_DDL: a missing space rolls the flag change back with it."""
    await conn.execute(
        "UPDATE embedding_spaces SET is_default = false WHERE is_default AND space_id <> $1",
        space_id,
    )
    dimension = await conn.fetchval(
        "UPDATE embedding_spaces SET is_default = true WHERE space_id = $1 RETURNING dimension",
        space_id,
    )
    if dimension is None:
        raise LookupError(f"no embedding space with id {space_id}")
    # The column type changes with the dimension, so the view is replaced, not altered; its
    # comments are carried over. Only the default source's images show, so that a name is one
    # image (names are unique within a source, not across sources: migration 0006).
    comments = await comments_of(conn, "image_embeddings")
    await conn.execute(
        f"""
        DROP VIEW image_embeddings;
        CREATE VIEW image_embeddings AS
            SELECT o.name AS image_id,
                   o.locator AS content,
                   e.embedding::vector({int(dimension)}) AS embedding,
                   o.attributes
            FROM embeddings e
            JOIN objects o ON o.object_id = e.object_id
            WHERE e.space_id = {int(space_id)} AND o.deleted_at IS NULL
              AND o.source_id = (SELECT source_id FROM sources WHERE is_default)
        """
    )
    await apply_comments(conn, "VIEW", "image_embeddings", comments)
