"""Loading one space's parts: a group at a time, each group in one transaction, the next group
prepared (pipeline.loading.groups) on a second connection while the current one is written."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from dataclasses import dataclass, field

import asyncpg
import numpy as np

from pipeline.checkpoints.parts import is_part, read_space
from pipeline.core.space import EmbeddingSpace
from pipeline.db import connect, locks
from pipeline.db.spaces import partition_name, register_space
from pipeline.loading import sql
from pipeline.loading.groups import Group, encode, match_objects, plan_groups, read_group
from pipeline.progress import Progress
from pipeline.workdir import WorkDir

_CONNECTION_LOST = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError)


@contextlib.asynccontextmanager
async def space_load_lock(conn: asyncpg.Connection, space_id: int):
    """One loader per space at a time, for the whole load: what is loaded and which objects have a
    vector cannot change under us (other spaces load in parallel)."""
    await locks.acquire(conn, locks.LOAD, space_id)
    try:
        yield
    finally:
        # (A lost connection has released the lock already: do not mask the error that lost it.)
        with contextlib.suppress(*_CONNECTION_LOST):
            await locks.release(conn, locks.LOAD, space_id)


async def load_space(
    conn: asyncpg.Connection,
    url: str,
    work: WorkDir,
    folder: str,
    sizes: dict[str, int],
    run_id: int,
    counts: Counter,
) -> int:
    """Load the parts of the space in `folder` not loaded yet; returns the space's id."""
    space = read_space(work, folder)
    space_id = await register_space(conn, space)
    async with space_load_lock(conn, space_id):
        # A second connection looks up the next group's objects while this one COPYs the current one.
        matcher = await connect(url)
        try:
            loader = _SpaceLoader(conn, matcher, work, space_id, run_id, counts)
            await loader.load(space, sizes)
        finally:
            with contextlib.suppress(*_CONNECTION_LOST):
                await matcher.close()
    return space_id


@dataclass
class _SpaceLoader:
    conn: asyncpg.Connection
    matcher: asyncpg.Connection  # a second connection, for the lookups while `conn` writes
    work: WorkDir
    space_id: int
    run_id: int
    counts: Counter
    #: the space had no vector when this load began: then only this load's own inserts exist
    empty_at_start: bool = False
    #: the space has failure rows, which vectors arriving for their objects must clear
    space_has_failures: bool = False
    #: the objects of the group being written while the next one is prepared (maybe not committed)
    in_flight: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    groups_written: int = 0

    async def load(self, space: EmbeddingSpace, sizes: dict[str, int]) -> None:
        conn, work = self.conn, self.work
        done = {r[0] for r in await conn.fetch(sql.LOADED_PARTS, self.space_id)}
        # A part's identity is where it lives: two work dirs may both have a part-00000.
        parts = sorted(p for p in sizes if is_part(p))
        todo = [p for p in parts if work.describe(p) not in done]
        self.counts["parts_skipped"] += len(parts) - len(todo)
        groups = plan_groups(todo)
        self.space_has_failures = await conn.fetchval(sql.HAS_FAILURES, self.space_id)
        self.empty_at_start = not await conn.fetchval(
            f"SELECT EXISTS (SELECT 1 FROM {partition_name(self.space_id)})"
        )
        await conn.execute(sql.CREATE_LOAD_BATCH)
        progress = Progress("load", "parts", total=len(todo))
        pending = None
        vectors = 0
        try:
            # The next group is prepared (read, matched, encoded) while this one is written.
            if groups:
                pending = asyncio.create_task(self.prepare(groups[0], space.dimension, sizes))
            for index in range(len(groups)):
                assert pending is not None
                group = await pending
                if index + 1 < len(groups):
                    pending = asyncio.create_task(
                        self.prepare(groups[index + 1], space.dimension, sizes)
                    )
                await self.write(group)
                vectors += group.rows
                progress.advance(len(group.parts), vectors=vectors, space=space.name)
            if not self.empty_at_start:
                # On a first load every object with a loaded hash got its vector from the parts.
                reused = await conn.execute(sql.REUSE_BY_HASH, self.space_id)
                self.counts["reused"] += int(reused.split()[-1])
        finally:
            if pending is not None and not pending.done():
                pending.cancel()  # a group failed: drop the one being prepared
            progress.close()

    async def prepare(self, paths: list[str], dimension: int, sizes: dict[str, int]) -> Group:
        """Read a group's parts (in a thread), match their objects and split them into new and
        replacing vectors (on the second connection), and encode both for COPY (in a thread)."""
        batch, parts = await asyncio.to_thread(read_group, self.work, paths, dimension, sizes)
        rows, object_ids = await match_objects(self.matcher, batch)
        # Which objects have a vector: those committed (the probe) and those of the group being
        # written now, which the probe may not see yet. The groups before that one have committed,
        # and no other loader writes this space (the advisory lock).
        ids = object_ids.tolist()
        have = np.isin(object_ids, self.in_flight)
        if not (self.empty_at_start and self.groups_written == 0):
            committed = await self.matcher.fetchval(sql.HAVE_VECTORS, self.space_id, ids)
            have |= np.isin(object_ids, committed or [])
        self.in_flight = object_ids
        new = ~have
        encoded_new, encoded_replaced = await asyncio.to_thread(
            lambda: (
                encode(rows[new], object_ids[new], batch, self.space_id),
                encode(rows[have], object_ids[have], batch),
            )
        )
        return Group(
            parts,
            len(batch.locators),
            ids,
            encoded_new,
            encoded_replaced,
            int(have.sum()),
            batch.failures,
        )

    async def write(self, group: Group) -> None:
        """One transaction: the vectors of objects new to the space go straight into its partition
        with binary COPY; vectors that replace existing ones go through the staging table; the parts
        are recorded as loaded. A crash before the commit leaves no trace; after it, the parts are
        skipped."""
        conn, space_id = self.conn, self.space_id
        async with conn.transaction():
            if group.new is not None:
                await conn.copy_to_table(
                    partition_name(space_id),
                    source=group.new,
                    format="binary",
                    columns=["space_id", "object_id", "embedding", "content_hash"],
                )
            if group.replaced is not None:
                await conn.copy_to_table(
                    "load_batch",
                    source=group.replaced,
                    format="binary",
                    columns=["object_id", "embedding", "content_hash"],
                )
                await conn.execute(sql.REPLACE_VECTORS, space_id)
            failures = group.failures
            if failures:
                await conn.execute(
                    sql.RECORD_FAILURES,
                    space_id,
                    self.run_id,
                    [f.locator for f in failures],
                    [f.content_hash or "" for f in failures],
                    [f.reason for f in failures],
                )
                self.space_has_failures = True
            if self.space_has_failures:  # a vector clears an earlier failure (a retry that worked)
                await conn.execute(sql.CLEAR_FAILURES, space_id, group.object_ids)
            await conn.execute(
                sql.RECORD_PARTS,
                space_id,
                [self.work.describe(path) for path, _, _ in group.parts],
                [rows for _, rows, _ in group.parts],
                self.run_id,
            )
        self.groups_written += 1
        counts = self.counts
        counts["parts_loaded"] += len(group.parts)
        counts["parts_parsed_from_csv"] += sum(parsed_csv for _, _, parsed_csv in group.parts)
        counts["rows"] += group.rows
        counts["replaced"] += group.replaced_count
