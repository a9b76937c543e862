"""The load stage: embed-stage CSV parts into PostgreSQL + pgvector. Entry point: `load_work_dir`.

Parts go in a group at a time, each group in one transaction: vectors new to the space are
binary-COPYed straight into the space's partition, vectors that replace older ones go through a
staging table, and the parts are recorded in loaded_parts. While one group is written the next is
prepared — read, matched to its objects, split into new and replacing vectors, and encoded for
COPY with NumPy in one go (pipeline.loading.binary_copy) — so the writing connection only streams
ready buffers, at about the speed of a raw COPY. A crash anywhere — mid-COPY, before or after the
commit — followed by a rerun neither loses nor duplicates a row, and parts already loaded are
skipped. Rows are read from each
part's binary twin when it has one (see pipeline.checkpoints.parts), else parsed from the CSV;
each part's failures file is recorded alongside. The HNSW index is built after the first bulk
load of a space (far faster than inserting into an existing index) and maintained by PostgreSQL
after that.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from dataclasses import dataclass, field
from itertools import chain

import asyncpg
import numpy as np

from pipeline.checkpoints.failures import Failure, has_failures, read_failures
from pipeline.checkpoints.parts import (
    PartRows,
    binary_twin,
    is_part,
    read_part,
    read_space,
    space_folders,
)
from pipeline.core.space import EmbeddingSpace
from pipeline.db import connect, locks, open_database, resolve_url
from pipeline.db.runs import tracked_run
from pipeline.db.spaces import partition_name, register_space
from pipeline.errors import ConfigError
from pipeline.loading.binary_copy import binary_copy
from pipeline.loading.indexing import build_index
from pipeline.progress import Progress
from pipeline.settings import Settings
from pipeline.workdir import WorkDir

# Which objects a batch's rows are for: by content hash (identical bytes under several locators
# all get the vector), or by locator where the store gives no hash.
# (Two arrays, not a row per object: asyncpg decodes them at a fraction of the client's CPU.)
_OBJECTS_BY_HASH = (
    "SELECT array_agg(content_hash), array_agg(object_id) FROM objects "
    "WHERE content_hash = ANY($1::text[])"
)
_OBJECTS_BY_LOCATOR = (
    "SELECT array_agg(locator), array_agg(object_id) FROM objects WHERE locator = ANY($1::text[])"
)
# Which of them already have a vector in the space. (A separate probe by key: folded into one
# query with the match as EXISTS, the planner hashed the whole partition for every batch.)
_HAVE_VECTORS = "SELECT array_agg(object_id) FROM embeddings WHERE space_id = $1 AND object_id = ANY($2::bigint[])"
_REPLACE_VECTORS = """
UPDATE embeddings e
SET embedding = b.embedding, content_hash = b.content_hash, created_at = now()
FROM load_batch b
WHERE e.space_id = $1 AND e.object_id = b.object_id
"""
# Identical bytes listed under a new locator after their part was loaded: reuse the vector.
# Objects lacking a current vector are found first, so the common case — none — never joins the
# space's vectors by hash.
_REUSE_BY_HASH = """
WITH missing AS MATERIALIZED (
    SELECT o.object_id, o.content_hash FROM objects o
    WHERE o.deleted_at IS NULL AND o.content_hash IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM embeddings x
                      WHERE x.space_id = $1 AND x.object_id = o.object_id AND x.content_hash = o.content_hash)
)
INSERT INTO embeddings (space_id, object_id, embedding, content_hash)
SELECT DISTINCT ON (m.object_id) $1, m.object_id, e.embedding, e.content_hash
FROM missing m JOIN embeddings e ON e.space_id = $1 AND e.content_hash = m.content_hash
ON CONFLICT (space_id, object_id) DO UPDATE
SET embedding = EXCLUDED.embedding, content_hash = EXCLUDED.content_hash, created_at = now()
"""
# What the embed stage could not embed (a part's failures file): every object holding those bytes
# gets a failure row — unless a vector arrives for it, which clears its row (see _CLEAR_FAILURES).
# The load is the one writer of the failures table; each part is loaded once, so each failed
# attempt to embed counts once.
_RECORD_FAILURES = """
WITH f AS (SELECT * FROM unnest($3::text[], $4::text[], $5::text[]) AS f(locator, content_hash, reason))
INSERT INTO failures (locator, stage, space_id, reason, run_id)
SELECT o.locator, 'embed', $1::integer, f.reason, $2::bigint FROM f JOIN objects o ON o.content_hash = f.content_hash
WHERE f.content_hash <> ''
UNION ALL
SELECT o.locator, 'embed', $1::integer, f.reason, $2::bigint FROM f JOIN objects o ON o.locator = f.locator
WHERE f.content_hash = ''
ON CONFLICT ON CONSTRAINT uq_failures_locator_stage_space_id DO UPDATE
SET reason = EXCLUDED.reason, attempts = failures.attempts + 1, last_failed_at = now(),
    run_id = EXCLUDED.run_id
"""
_CLEAR_FAILURES = """
DELETE FROM failures f USING objects o
WHERE f.stage = 'embed' AND f.space_id = $1 AND f.locator = o.locator AND o.object_id = ANY($2::bigint[])
"""
_RECORD_PARTS = """
INSERT INTO loaded_parts (space_id, part, rows, run_id)
SELECT $1, p.part, p.rows, $4 FROM unnest($2::text[], $3::integer[]) AS p(part, rows)
"""
# Parts per transaction: fewer commits (each flushes the WAL); 4 measured clearly slower, 16-128 alike.
PARTS_PER_TRANSACTION = 32


@dataclass
class LoadResult:
    run_id: int
    counts: Counter = field(default_factory=Counter)
    indexes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        c = self.counts
        parsed = (
            f" ({c['parts_parsed_from_csv']} parsed from CSV, no usable binary twin)"
            if c["parts_parsed_from_csv"]
            else ""
        )
        return (
            f"{c['parts_loaded']} parts loaded{parsed} ({c['rows']} vectors), {c['parts_skipped']} already "
            f"loaded, {c['reused']} vectors reused for identical bytes; indexes: {', '.join(self.indexes) or 'none'}"
        )


async def load_work_dir(
    *,
    work_dir: str,
    settings: Settings | None = None,
    index: bool = True,
    maintenance_work_mem: str = "1GB",
) -> LoadResult:
    settings = settings or Settings()
    work = WorkDir(work_dir)
    # One listing of every space's files, with their sizes: on GCS a listing is a request per 1,000.
    by_folder = space_folders(work.sizes_below("embeddings"))
    if not by_folder:
        raise ConfigError(
            f"no embeddings in {work.spec}", hint=f"run `imgvec embed --work-dir {work.spec}` first"
        )
    url = await resolve_url(settings)
    async with open_database(settings) as conn, tracked_run(conn, "load", work.spec) as run:
        result = LoadResult(run.run_id, run.counts)
        for folder, sizes in by_folder.items():
            space_id = await _load_space(conn, url, work, folder, sizes, run.run_id, result)
            if index:
                result.indexes.append(
                    await _ensure_index(conn, space_id, maintenance_work_mem, url)
                )
    return result


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


_CONNECTION_LOST = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError)


async def _load_space(
    conn,
    url: str,
    work: WorkDir,
    folder: str,
    sizes: dict[str, int],
    run_id: int,
    result: LoadResult,
) -> int:
    space = read_space(work, folder)
    space_id = await register_space(conn, space)
    async with space_load_lock(conn, space_id):
        # A second connection looks up the next group's objects while this one COPYs the current one.
        matcher = await connect(url)
        try:
            loader = _SpaceLoader(conn, matcher, work, space_id, run_id, result)
            await loader.load(space, sizes)
        finally:
            with contextlib.suppress(*_CONNECTION_LOST):
                await matcher.close()
    return space_id


@dataclass
class _Group:
    """A group of parts made ready to load: everything but the writes is done beforehand."""

    parts: list[tuple[str, int, bool]]  # (part, rows, parsed from its CSV)
    rows: int
    object_ids: list[int]  # every object the rows are for
    new: memoryview | None  # binary COPY data of the vectors new to the space
    replaced: memoryview | None  # ... and of those replacing a vector, for load_batch
    replaced_count: int
    failures: list[Failure]


@dataclass
class _SpaceLoader:
    conn: object
    matcher: object  # a second connection, for the lookups while `conn` writes
    work: WorkDir
    space_id: int
    run_id: int
    result: LoadResult
    #: the space had no vector when this load began: then only this load's own inserts exist
    empty_at_start: bool = False
    #: the space has failure rows, which vectors arriving for their objects must clear
    space_has_failures: bool = False
    #: the objects of the group being written while the next one is prepared (maybe not committed)
    in_flight: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    groups_written: int = 0

    async def load(self, space: EmbeddingSpace, sizes: dict[str, int]) -> None:
        conn, work = self.conn, self.work
        done = {
            r[0]
            for r in await conn.fetch(
                "SELECT part FROM loaded_parts WHERE space_id = $1", self.space_id
            )
        }
        # A part's identity is where it lives: two work dirs may both have a part-00000.
        parts = sorted(p for p in sizes if is_part(p))
        todo = [p for p in parts if work.describe(p) not in done]
        self.result.counts["parts_skipped"] += len(parts) - len(todo)
        groups = _groups(todo)
        self.space_has_failures = await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM failures WHERE stage = 'embed' AND space_id = $1)",
            self.space_id,
        )
        self.empty_at_start = not await conn.fetchval(
            f"SELECT EXISTS (SELECT 1 FROM {partition_name(self.space_id)})"
        )
        # Created once per connection and emptied at each commit: no catalog churn per part.
        await conn.execute(
            "CREATE TEMP TABLE IF NOT EXISTS load_batch "
            "(object_id bigint, embedding vector, content_hash text) ON COMMIT DELETE ROWS"
        )
        progress = Progress("load", "parts", total=len(todo))
        pending = None
        vectors = 0
        try:
            # The next group is prepared (read, matched, encoded) while this one is written.
            if groups:
                pending = asyncio.create_task(self.prepare(groups[0], space.dimension, sizes))
            for index in range(len(groups)):
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
                reused = await conn.execute(_REUSE_BY_HASH, self.space_id)
                self.result.counts["reused"] += int(reused.split()[-1])
        finally:
            if pending is not None and not pending.done():
                pending.cancel()  # a group failed: drop the one being prepared
            progress.close()

    async def prepare(self, paths: list[str], dimension: int, sizes: dict[str, int]) -> _Group:
        """Read a group's parts (in a thread), match their objects and split them into new and
        replacing vectors (on the second connection), and encode both for COPY (in a thread)."""
        batch, parts = await asyncio.to_thread(_read_group, self.work, paths, dimension, sizes)
        rows, object_ids = await _match_objects(self.matcher, batch)
        # Which objects have a vector: those committed (the probe) and those of the group being
        # written now, which the probe may not see yet. The groups before that one have committed,
        # and no other loader writes this space (the advisory lock).
        ids = object_ids.tolist()
        have = np.isin(object_ids, self.in_flight)
        if not (self.empty_at_start and self.groups_written == 0):
            committed = await self.matcher.fetchval(_HAVE_VECTORS, self.space_id, ids)
            have |= np.isin(object_ids, committed or [])
        self.in_flight = object_ids
        new = ~have
        encoded_new, encoded_replaced = await asyncio.to_thread(
            lambda: (
                _encode(rows[new], object_ids[new], batch, self.space_id),
                _encode(rows[have], object_ids[have], batch),
            )
        )
        return _Group(
            parts,
            len(batch.locators),
            ids,
            encoded_new,
            encoded_replaced,
            int(have.sum()),
            batch.failures,
        )

    async def write(self, group: _Group) -> None:
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
                await conn.execute(_REPLACE_VECTORS, space_id)
            failures = group.failures
            if failures:
                await conn.execute(
                    _RECORD_FAILURES,
                    space_id,
                    self.run_id,
                    [f.locator for f in failures],
                    [f.content_hash or "" for f in failures],
                    [f.reason for f in failures],
                )
                self.space_has_failures = True
            if self.space_has_failures:  # a vector clears an earlier failure (a retry that worked)
                await conn.execute(_CLEAR_FAILURES, space_id, group.object_ids)
            await conn.execute(
                _RECORD_PARTS,
                space_id,
                [self.work.describe(path) for path, _, _ in group.parts],
                [rows for _, rows, _ in group.parts],
                self.run_id,
            )
        self.groups_written += 1
        counts = self.result.counts
        counts["parts_loaded"] += len(group.parts)
        counts["parts_parsed_from_csv"] += sum(parsed_csv for _, _, parsed_csv in group.parts)
        counts["rows"] += group.rows
        counts["replaced"] += group.replaced_count


def _groups(parts: list[str]) -> list[list[str]]:
    """Groups of 1, 2, 4, ... parts up to PARTS_PER_TRANSACTION: writing starts as soon as one part
    is ready, and each group is prepared while one half its size is written (preparing takes
    about as long as writing)."""
    groups, start, size = [], 0, 1
    while start < len(parts):
        groups.append(parts[start : start + size])
        start, size = start + size, min(2 * size, PARTS_PER_TRANSACTION)
    return groups


def _encode(
    rows: np.ndarray, object_ids: np.ndarray, batch: PartRows, space_id: int | None = None
) -> memoryview | None:
    """Binary COPY data for the batch's `rows`, each for its object: [space_id,] object_id,
    embedding, content_hash."""
    if not len(rows):
        return None
    order = np.argsort(
        rows, kind="stable"
    )  # in row order, all the rows need no copy of the vectors
    rows, object_ids = rows[order], object_ids[order]
    everything = np.array_equal(rows, np.arange(len(batch.vectors)))
    hashes = batch.content_hashes
    columns = [
        ("int8", object_ids),
        ("vector", batch.vectors if everything else batch.vectors[rows]),
        ("text", [hashes[r] or None for r in rows.tolist()]),
    ]
    if space_id is not None:
        columns.insert(0, ("int4", space_id))
    return binary_copy(columns, len(rows))


async def _match_objects(conn, batch: PartRows) -> tuple[np.ndarray, np.ndarray]:
    """(rows, object_ids): each object a row of the batch is for, and that row; the last row wins
    when a content hash appears twice."""
    by_hash = {h: row for row, h in enumerate(batch.content_hashes) if h}
    hashes, object_ids = await conn.fetchrow(_OBJECTS_BY_HASH, list(by_hash))
    rows, object_ids = [by_hash[h] for h in hashes or ()], list(object_ids or ())
    if not all(batch.content_hashes):
        by_locator = {
            loc: row
            for row, (loc, h) in enumerate(zip(batch.locators, batch.content_hashes, strict=False))
            if not h
        }
        locators, more = await conn.fetchrow(_OBJECTS_BY_LOCATOR, list(by_locator))
        rows += [by_locator[loc] for loc in locators or ()]
        object_ids += more or []
    return np.array(rows, np.int64), np.array(object_ids, np.int64)


def _read_group(
    work: WorkDir, paths: list[str], dimension: int, sizes: dict[str, int]
) -> tuple[PartRows, list]:
    """The rows of several parts as one batch, and (part, rows, parsed from its CSV) for each part."""
    parts = [
        read_part(work, path, dimension, sizes.get(path), binary_twin(path) in sizes)
        for path in paths
    ]
    vectors = (
        np.concatenate([p.vectors for p in parts])
        if parts
        else np.zeros((0, dimension), np.float32)
    )
    batch = PartRows(
        list(chain.from_iterable(p.locators for p in parts)),
        list(chain.from_iterable(p.content_hashes for p in parts)),
        vectors,
    )
    batch.failures = [
        failure
        for path in paths
        if has_failures(path, sizes)
        for failure in read_failures(work, path)
    ]
    return batch, [
        (path, len(p.locators), p.parsed_csv) for path, p in zip(paths, parts, strict=False)
    ]


async def _ensure_index(conn, space_id: int, maintenance_work_mem: str, url: str) -> str:
    index = await build_index(
        conn, space_id, maintenance_work_mem=maintenance_work_mem, progress_url=url
    )
    await conn.execute("ANALYZE objects")
    return index
