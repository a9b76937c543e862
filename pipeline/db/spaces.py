"""Embedding spaces: registering one, with its partition of `embeddings`.

Design: one `embeddings` table LIST-partitioned by space_id; adding a space adds a partition
(with its own HNSW index, pipeline.loading.indexing); nothing else moves. Which space
`image_embeddings` shows: pipeline.db.default_view. Reading them (the server's space picker):
`load_space`, `default_space`, `list_spaces`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

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


#: attribute keys with at most this many distinct values are listed with their values (the
#: page's pickers); a key with more (an id, a date) is one no picker can show
PICKER_VALUES = 50


@dataclass(frozen=True)
class SpaceRow:
    """A registered space as the server lists it: its images are the live objects with a vector
    in it; `attributes` the keys those images carry with at most PICKER_VALUES distinct values."""

    name: str
    space_id: int
    backend: str
    model: str
    weights: str
    dimension: int
    metric: str
    normalized: bool
    images: int
    default: bool
    attributes: dict[str, list] = field(default_factory=dict)

    @property
    def space(self) -> EmbeddingSpace:
        return EmbeddingSpace(
            self.backend, self.model, self.weights, self.dimension, self.metric, self.normalized
        )


def _space_of(row: asyncpg.Record) -> EmbeddingSpace:
    return EmbeddingSpace(
        row["backend"],
        row["model"],
        row["weights"],
        row["dimension"],
        row["metric"],
        row["normalized"],
    )


async def load_space(conn: asyncpg.Connection, name: str) -> tuple[int, EmbeddingSpace] | None:
    """(space_id, space) of the registered space of that name; None when there is none."""
    row = await conn.fetchrow("SELECT * FROM embedding_spaces WHERE name = $1", name)
    return None if row is None else (row["space_id"], _space_of(row))


async def default_space(conn: asyncpg.Connection) -> tuple[int, EmbeddingSpace] | None:
    """(space_id, space) of the default space (the one `image_embeddings` shows): one indexed
    row, for every request that names no space (list_spaces counts and scans images)."""
    row = await conn.fetchrow("SELECT * FROM embedding_spaces WHERE is_default")
    return None if row is None else (row["space_id"], _space_of(row))


async def list_spaces(conn: asyncpg.Connection) -> list[SpaceRow]:
    """Every registered space, in the order registered, with its image count and picker values."""
    spaces = await conn.fetch(
        """
        SELECT s.*, (SELECT count(*) FROM embeddings e JOIN objects o USING (object_id)
                     WHERE e.space_id = s.space_id AND o.deleted_at IS NULL) AS images
        FROM embedding_spaces s ORDER BY s.space_id
        """
    )
    values = await conn.fetch(
        """
        WITH pairs AS (
            SELECT e.space_id, kv.key, kv.value
            FROM embeddings e JOIN objects o USING (object_id), jsonb_each(o.attributes) kv
            WHERE o.deleted_at IS NULL AND jsonb_typeof(kv.value) IN ('string', 'number', 'boolean')
            GROUP BY e.space_id, kv.key, kv.value
        ), few AS (
            SELECT space_id, key FROM pairs GROUP BY space_id, key HAVING count(*) <= $1
        )
        SELECT space_id, key, value::text FROM pairs JOIN few USING (space_id, key)
        ORDER BY space_id, key, value
        """,
        PICKER_VALUES,
    )
    pickers: dict[int, dict[str, list]] = {}
    for row in values:
        pickers.setdefault(row["space_id"], {}).setdefault(row["key"], []).append(
            json.loads(row["value"])
        )
    return [
        SpaceRow(
            name=s["name"],
            space_id=s["space_id"],
            backend=s["backend"],
            model=s["model"],
            weights=s["weights"],
            dimension=s["dimension"],
            metric=s["metric"],
            normalized=s["normalized"],
            images=s["images"],
            default=s["is_default"],
            attributes=pickers.get(s["space_id"], {}),
        )
        for s in spaces
    ]
