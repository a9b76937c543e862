"""HNSW index builds: after the first bulk load of a space, or on demand (`imgvec index`).

Building once over loaded rows is far faster than inserting into an existing index; the build
gets a roomy, transaction-local maintenance_work_mem (a graph that fits in memory builds many
times faster) and reports its progress from pg_stat_progress_create_index.
"""

from __future__ import annotations

import asyncio
import re

from pipeline.db.spaces import create_hnsw_index, partition_name
from pipeline.progress import Progress

_MEMORY = re.compile(r"^\d+\s*(kB|MB|GB)$")


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
    if not _MEMORY.match(maintenance_work_mem):
        raise ValueError(
            f"maintenance_work_mem must look like 512MB or 2GB, not {maintenance_work_mem!r}"
        )
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


async def _report_progress(url: str, partition: str) -> None:
    """Poll the build's progress from a second connection, one line or bar update a second."""
    from pipeline.db import connect

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
