"""The invariant every reliability scenario ends with:

every listed, non-deleted object has, for each space it was run for, exactly one current
embedding (its content hash is the object's) or exactly one failure row with a reason — never
both, never neither; no object has two rows in a space; every vector in the table is the vector
the CSV parts hold for that content; and every part in the work dir is recorded as loaded.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import asyncpg
import numpy as np

from pipeline.checkpoints.parts import is_part, read_part, read_space
from pipeline.core.objects import content_key
from pipeline.workdir import WorkDir

_STATE = """
SELECT o.locator, o.content_hash,
       (SELECT count(*) FROM embeddings e WHERE e.object_id = o.object_id AND e.space_id = $1) AS vectors,
       (SELECT e.embedding FROM embeddings e WHERE e.object_id = o.object_id AND e.space_id = $1
          AND e.content_hash IS NOT DISTINCT FROM o.content_hash) AS current,
       (SELECT string_agg(f.reason, '; ') FROM failures f
          WHERE f.locator = o.locator AND f.stage = 'embed' AND f.space_id = $1) AS failure,
       (SELECT count(*) FROM failures f
          WHERE f.locator = o.locator AND f.stage = 'embed' AND f.space_id = $1) AS failures
FROM objects o WHERE o.deleted_at IS NULL
"""


async def check_invariant(url: str, work_dir: str | Path) -> dict[str, int]:
    """Assert the invariant; returns counts per outcome (for the test's report)."""
    work = WorkDir(work_dir)
    conn = await asyncpg.connect(url)
    outcome: dict[str, int] = defaultdict(int)
    try:
        from pgvector.asyncpg import register_vector

        await register_vector(conn)
        for space_file in work.sizes_below("embeddings"):
            if not space_file.endswith("space.json"):
                continue
            folder = space_file.rsplit("/", 1)[0]
            space = read_space(work, folder)
            space_id = await conn.fetchval(
                "SELECT space_id FROM embedding_spaces WHERE name = $1", space.name
            )
            assert space_id is not None, f"space {space.name} was never loaded"
            parts = [p for p in work.list(folder) if is_part(p)]
            in_parts: dict[str, list[np.ndarray]] = defaultdict(list)
            for part in parts:
                rows = read_part(
                    work, part, space.dimension, has_twin=False
                )  # the CSV is the truth
                for locator, content_hash, vector in zip(
                    rows.locators, rows.content_hashes, rows.vectors, strict=False
                ):
                    in_parts[content_key(locator, content_hash or None)].append(vector)

            loaded = {
                r[0]
                for r in await conn.fetch(
                    "SELECT part FROM loaded_parts WHERE space_id = $1", space_id
                )
            }
            assert loaded == {work.describe(p) for p in parts}, "parts and loaded_parts disagree"

            for row in await conn.fetch(_STATE, space_id):
                where = f"{row['locator']!r} in space {space.name}"
                assert row["vectors"] <= 1, f"{where}: {row['vectors']} vectors"
                has_vector, has_failure = row["current"] is not None, row["failures"] == 1
                assert row["failures"] <= 1, f"{where}: {row['failures']} failure rows"
                assert has_vector != has_failure, (
                    f"{where}: {'both a vector and' if has_vector else 'neither a vector nor'} a failure "
                    f"({row['failure']})"
                )
                if has_failure:
                    assert row["failure"].strip(), f"{where}: a failure without a reason"
                    outcome["failed"] += 1
                    continue
                key = content_key(row["locator"], row["content_hash"])
                stored = row["current"].to_numpy()
                assert any(np.array_equal(stored, v) for v in in_parts.get(key, [])), (
                    f"{where}: the table's vector is in no part"
                )
                outcome["embedded"] += 1
    finally:
        await conn.close()
    return dict(outcome)
