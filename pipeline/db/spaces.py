"""Embedding spaces: registering one, with its partition of `embeddings`.

Design: one `embeddings` table LIST-partitioned by space_id; adding a space adds a partition
(with its own HNSW index, pipeline.loading.indexing); nothing else moves. Which space
`image_embeddings` shows: pipeline.db.default_view.
"""

from __future__ import annotations

import asyncpg

from pipeline.core.space import EmbeddingSpace
from pipeline.db import locks
from pipeline.db.comments import apply_comments, comments_of
from pipeline.db.default_view import make_default

INLINE_MAX_DIMENSION = 1900  # larger vectors do not fit a heap page inline


def partition_name(space_id: int) -> str:
    return f"embeddings_space_{int(space_id)}"


async def register_space(conn: asyncpg.Connection, space: EmbeddingSpace) -> int:
    """The space's id, creating its row and partition on first use. The first space registered
    becomes the default; registering another never changes or deletes existing vectors."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", locks.SPACES_DDL)
        row = await conn.fetchrow(
            "SELECT space_id FROM embedding_spaces WHERE name = $1", space.name
        )
        if row is not None:
            return row["space_id"]
        space_id = await conn.fetchval(
            """
            INSERT INTO embedding_spaces (name, backend, model, weights, dimension, metric, normalized)
            VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING space_id
            """,
            space.name,
            space.backend,
            space.model,
            space.weights,
            space.dimension,
            space.metric,
            space.normalized,
        )
        partition = partition_name(space_id)
        await conn.execute(
            f"CREATE TABLE {partition} PARTITION OF embeddings FOR VALUES IN ({int(space_id)})"
        )
        if space.dimension <= INLINE_MAX_DIMENSION:
            # Inline rather than in the TOAST table: see migrations/versions/0005_lean_embeddings.py.
            await conn.execute(f"ALTER TABLE {partition} ALTER COLUMN embedding SET STORAGE PLAIN")
        await apply_comments(
            conn,
            "TABLE",
            partition,
            await comments_of(conn, "embeddings"),
            prefix=f"Vectors of space {space.name}: ",
        )
        if not await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM embedding_spaces WHERE is_default)"
        ):
            await make_default(conn, space_id)
    return space_id
