"""Groups of parts, and everything done to a group before it is written: its parts read as one
batch, its rows matched to their objects, and the vectors encoded for binary COPY."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain

import numpy as np

from pipeline.checkpoints.failures import Failure, has_failures, read_failures
from pipeline.checkpoints.parts import PartRows, binary_twin, read_part
from pipeline.loading import sql
from pipeline.loading.binary_copy import binary_copy
from pipeline.workdir import WorkDir

# Parts per transaction: fewer commits (each flushes the WAL); 4 measured clearly slower, 16-128 alike.
PARTS_PER_TRANSACTION = 32


@dataclass
class Group:
    """A group of parts made ready to load: everything but the writes is done beforehand."""

    parts: list[tuple[str, int, bool]]  # (part, rows, parsed from its CSV)
    rows: int
    object_ids: list[int]  # every object the rows are for
    new: memoryview | None  # binary COPY data of the vectors new to the space
    replaced: memoryview | None  # ... and of those replacing a vector, for load_batch
    replaced_count: int
    failures: list[Failure]


def plan_groups(parts: list[str]) -> list[list[str]]:
    """Groups of 1, 2, 4, ... parts up to PARTS_PER_TRANSACTION: writing starts as soon as one part
    is ready, and each group is prepared while one half its size is written (preparing takes
    about as long as writing)."""
    groups, start, size = [], 0, 1
    while start < len(parts):
        groups.append(parts[start : start + size])
        start, size = start + size, min(2 * size, PARTS_PER_TRANSACTION)
    return groups


def read_group(
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


async def match_objects(conn, batch: PartRows) -> tuple[np.ndarray, np.ndarray]:
    """(rows, object_ids): each object a row of the batch is for, and that row; the last row wins
    when a content hash appears twice."""
    by_hash = {h: row for row, h in enumerate(batch.content_hashes) if h}
    hashes, object_ids = await conn.fetchrow(sql.OBJECTS_BY_HASH, list(by_hash))
    rows, object_ids = [by_hash[h] for h in hashes or ()], list(object_ids or ())
    if not all(batch.content_hashes):
        by_locator = {
            loc: row
            for row, (loc, h) in enumerate(zip(batch.locators, batch.content_hashes, strict=False))
            if not h
        }
        locators, more = await conn.fetchrow(sql.OBJECTS_BY_LOCATOR, list(by_locator))
        rows += [by_locator[loc] for loc in locators or ()]
        object_ids += more or []
    return np.array(rows, np.int64), np.array(object_ids, np.int64)


def encode(
    rows: np.ndarray, object_ids: np.ndarray, batch: PartRows, space_id: int | None = None
) -> memoryview | None:
    """Binary COPY data for the batch's `rows`, each for its object: [space_id,] object_id,
    embedding, content_hash."""
    if not len(rows):
        return None
    # In row order, all the rows need no copy of the vectors.
    order = np.argsort(rows, kind="stable")
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
