"""HNSW index builds: after the first bulk load of a space, or on demand (`imgvec index`).

Building once over loaded rows is far faster than inserting into an existing index; the build
gets a roomy, transaction-local maintenance_work_mem (a graph that fits in memory builds many
times faster) and reports its progress from pg_stat_progress_create_index.

pgvector's HNSW needs a fixed dimension, so each space's partition gets an expression index on
`embedding::vector(dim)`: queries that say `WHERE space_id = N ORDER BY embedding::vector(dim) <->
q` (as `image_embeddings` does) are pruned to that partition and use its index.
"""

from __future__ import annotations

import asyncio
import difflib
import re

import asyncpg

from pipeline.db import connect
from pipeline.db.spaces import partition_name
from pipeline.errors import UsageError
from pipeline.progress import Progress

# Operator class per query operator: <-> (L2, the analysts' operator), <=> (cosine), <#> (ip).
OPCLASSES = ("vector_l2_ops", "vector_cosine_ops", "vector_ip_ops")
MAX_HNSW_DIMENSION = 2000  # pgvector's limit for an HNSW index on `vector`
_MEMORY = re.compile(r"^(\d+)\s*(kB|MB|GB)$")
_KILOBYTES = {"kB": 1, "MB": 1024, "GB": 1024 * 1024}
# pgvector's bounds (its hnsw.h), checked before any SQL: a wrong value is then a usage error that
# names the flag, not the server's InvalidParameterValueError.
M_RANGE = (2, 100)
EF_CONSTRUCTION_RANGE = (4, 1000)


def check_index_options(
    opclass: str, m: int, ef_construction: int, maintenance_work_mem: str | None = None
) -> None:
    """A UsageError naming the `imgvec index` flag when pgvector would refuse the build."""
    if opclass not in OPCLASSES:
        close = difflib.get_close_matches(opclass, OPCLASSES, n=1, cutoff=0.6)
        raise UsageError(
            f"unknown --opclass {opclass!r}" + (f"; did you mean {close[0]}?" if close else ""),
            hint="imgvec builds HNSW indexes with vector_l2_ops (for <->), vector_cosine_ops "
            "(<=>) or vector_ip_ops (<#>)",
        )
    for flag, value, (low, high) in (
        ("--m", m, M_RANGE),
        ("--ef-construction", ef_construction, EF_CONSTRUCTION_RANGE),
    ):
        if not low <= value <= high:
            raise UsageError(
                f"{flag} {value} is out of range: pgvector's HNSW takes {low} to {high}"
            )
    if ef_construction < 2 * m:
        raise UsageError(
            f"--ef-construction {ef_construction} is less than 2 x --m {m}: pgvector's HNSW needs "
            "ef_construction >= 2 * m",
            hint=f"raise --ef-construction to {2 * m} or more, or lower --m",
        )
    if maintenance_work_mem is not None:
        found = _MEMORY.match(maintenance_work_mem)
        # PostgreSQL's bounds for maintenance_work_mem: 1MB to 2147483647kB (about 2TB).
        kilobytes = int(found[1]) * _KILOBYTES[found[2]] if found else 0
        if not 1024 <= kilobytes <= 2147483647:
            raise UsageError(
                f"--maintenance-work-mem {maintenance_work_mem!r} is not a memory size from 1MB "
                "to 2TB, e.g. 512MB or 2GB"
            )


async def build_index(
    conn,
    space_id: int,
    *,
    rebuild: bool = False,
    opclass: str = "vector_l2_ops",
    m: int = 16,
    ef_construction: int = 64,
    maintenance_work_mem: str = "1GB",
    progress_url: str | None = None,
) -> str:
    """Build (with `rebuild`: drop and build again) the space's HNSW index, then ANALYZE its
    partition; returns the index's name. With `progress_url`, a second connection to that URL
    reports the build's progress."""
    check_index_options(opclass, m, ef_construction, maintenance_work_mem)
    partition = partition_name(space_id)
    watcher = (
        asyncio.create_task(_report_progress(progress_url, partition)) if progress_url else None
    )
    try:
        async with conn.transaction():
            await conn.execute(f"SET LOCAL maintenance_work_mem = '{maintenance_work_mem}'")
            await conn.execute("SET LOCAL max_parallel_maintenance_workers = 1")
            if rebuild:
                for (name,) in await conn.fetch(
                    "SELECT indexname FROM pg_indexes WHERE tablename = $1 AND indexdef LIKE '%USING hnsw%'",
                    partition,
                ):
                    await conn.execute(f'DROP INDEX "{name}"')
            index = await create_hnsw_index(
                conn, space_id, opclass=opclass, m=m, ef_construction=ef_construction
            )
    finally:
        if watcher is not None:
            watcher.cancel()
    await conn.execute(f"ANALYZE {partition}")
    return index


async def create_hnsw_index(
    conn: asyncpg.Connection,
    space_id: int,
    *,
    opclass: str = "vector_l2_ops",
    m: int = 16,
    ef_construction: int = 64,
) -> str:
    """Build (if missing) the HNSW index of a space's partition, with the session's settings;
    returns its name. build_index is the one to call after a bulk load (see the module's doc)."""
    check_index_options(opclass, m, ef_construction)
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


async def _report_progress(url: str, partition: str) -> None:
    """Poll the build's progress from a second connection, one line or bar update a second."""
    conn = await connect(url)
    progress = Progress("index", "tuples")
    try:
        while True:
            row = await conn.fetchrow(
                "SELECT phase, tuples_done, tuples_total FROM pg_stat_progress_create_index p "
                "JOIN pg_class c ON c.oid = p.relid WHERE c.relname = $1",
                partition,
            )
            if row is not None and row["tuples_total"] and progress.total != row["tuples_total"]:
                progress.set_total(row["tuples_total"])  # known once the build has counted
            if row is not None and row["tuples_done"] > progress.count:
                progress.advance(row["tuples_done"] - progress.count, phase=row["phase"])
            await asyncio.sleep(1)
    finally:
        progress.close()
        await conn.close()
