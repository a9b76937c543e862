"""Embedding spaces: registering one, indexing it, choosing the default behind `image_embeddings`.

Design: one `embeddings` table LIST-partitioned by space_id. pgvector's HNSW needs a fixed
dimension, so each partition gets an expression index on `embedding::vector(dim)`; queries that
say `WHERE space_id = N ORDER BY embedding::vector(dim) <-> q` (as `image_embeddings` does) are
pruned to that partition and use its index. Adding a space adds a partition; nothing else moves.
"""

from __future__ import annotations

import asyncpg

from pipeline.core.space import EmbeddingSpace

# Operator class per query operator: <-> (L2, the analysts' operator), <=> (cosine), <#> (ip).
OPCLASSES = ("vector_l2_ops", "vector_cosine_ops", "vector_ip_ops")
_SPACES_LOCK_KEY = 0x696D677370  # "imgsp": serialises partition DDL between processes
MAX_HNSW_DIMENSION = 2000  # pgvector's limit for an HNSW index on `vector`


INLINE_MAX_DIMENSION = 1900  # larger vectors do not fit a heap page inline


def partition_name(space_id: int) -> str:
    return f"embeddings_space_{int(space_id)}"


async def register_space(conn: asyncpg.Connection, space: EmbeddingSpace) -> int:
    """The space's id, creating its row and partition on first use. The first space registered
    becomes the default; registering another never changes or deletes existing vectors."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _SPACES_LOCK_KEY)
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
        await _copy_comments(conn, "embeddings", partition, f"Vectors of space {space.name}: ")
        if not await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM embedding_spaces WHERE is_default)"
        ):
            await _make_default(conn, space_id)
    return space_id


async def set_default_space(conn: asyncpg.Connection, space_id: int) -> None:
    """Point `image_embeddings` at another space. No vector of any space is touched."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _SPACES_LOCK_KEY)
        await _make_default(conn, space_id)


async def create_hnsw_index(
    conn: asyncpg.Connection,
    space_id: int,
    *,
    opclass: str = "vector_l2_ops",
    m: int = 16,
    ef_construction: int = 64,
) -> str:
    """Build (if missing) the HNSW index of a space's partition; returns its name.

    Build it after the bulk load: inserting into an existing HNSW index is far slower than
    building it once over the loaded rows.
    """
    if opclass not in OPCLASSES:
        raise ValueError(f"opclass must be one of {', '.join(OPCLASSES)}, not {opclass!r}")
    dimension = await _dimension(conn, space_id)
    if dimension > MAX_HNSW_DIMENSION:
        raise ValueError(
            f"space {space_id} has {dimension} dimensions; pgvector's HNSW indexes at most "
            f"{MAX_HNSW_DIMENSION} on vector (use a smaller --dimension or halfvec)"
        )
    partition = partition_name(space_id)
    index = f"{partition}_hnsw_{opclass.removeprefix('vector_').removesuffix('_ops')}"
    await conn.execute(
        f"""
        CREATE INDEX IF NOT EXISTS {index} ON {partition}
        USING hnsw ((embedding::vector({dimension})) {opclass})
        WITH (m = {int(m)}, ef_construction = {int(ef_construction)})
        """
    )
    return index


async def _dimension(conn: asyncpg.Connection, space_id: int) -> int:
    dimension = await conn.fetchval(
        "SELECT dimension FROM embedding_spaces WHERE space_id = $1", space_id
    )
    if dimension is None:
        raise LookupError(f"no embedding space with id {space_id}")
    return dimension


async def _make_default(conn: asyncpg.Connection, space_id: int) -> None:
    dimension = await _dimension(conn, space_id)
    await conn.execute(
        "UPDATE embedding_spaces SET is_default = false WHERE is_default AND space_id <> $1",
        space_id,
    )
    await conn.execute(
        "UPDATE embedding_spaces SET is_default = true WHERE space_id = $1", space_id
    )
    # The column type changes with the dimension, so the view is replaced, not altered; its
    # comments are carried over. Only the default source's images show, so that a name is one
    # image (names are unique within a source, not across sources: migration 0006).
    comments = await _comments(conn, "image_embeddings")
    await conn.execute(
        f"""
        DROP VIEW image_embeddings;
        CREATE VIEW image_embeddings AS
            SELECT o.name AS image_id,
                   o.locator AS content,
                   e.embedding::vector({dimension}) AS embedding
            FROM embeddings e
            JOIN objects o ON o.object_id = e.object_id
            WHERE e.space_id = {int(space_id)} AND o.deleted_at IS NULL
              AND o.source_id = (SELECT source_id FROM sources WHERE is_default)
        """
    )
    await _apply_comments(conn, "VIEW", "image_embeddings", comments)


async def _comments(conn: asyncpg.Connection, relation: str) -> dict[str | None, str]:
    """Comments of a relation (key None) and of its columns."""
    rows = await conn.fetch(
        """
        SELECT NULL AS column, obj_description($1::regclass, 'pg_class') AS comment
        UNION ALL
        SELECT a.attname, col_description(a.attrelid, a.attnum)
        FROM pg_attribute a WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped
        """,
        relation,
    )
    return {r["column"]: r["comment"] for r in rows if r["comment"] is not None}


async def _apply_comments(
    conn, kind: str, relation: str, comments: dict[str | None, str], prefix: str = ""
) -> None:
    for column, comment in comments.items():
        target = f"{kind} {relation}" if column is None else f"COLUMN {relation}.{_ident(column)}"
        text = prefix + comment if column is None else comment
        await conn.execute(f"COMMENT ON {target} IS {_literal(text)}")


async def _copy_comments(conn, source: str, target: str, prefix: str) -> None:
    await _apply_comments(conn, "TABLE", target, await _comments(conn, source), prefix)


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
