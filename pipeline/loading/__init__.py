"""The load stage: embed-stage CSV parts into PostgreSQL + pgvector. Entry point: `load_work_dir`.

Each part goes in with one transaction: binary COPY (pgvector's codec) into a staging table, an
upsert into the space's embeddings, and a row in loaded_parts. A crash anywhere — mid-COPY,
before or after the commit — followed by a rerun neither loses nor duplicates a row, and parts
already loaded are skipped. The HNSW index is built after the first bulk load of a space (far
faster than inserting into an existing index) and maintained by PostgreSQL after that.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from pipeline.db import open_database, resolve_url
from pipeline.db.runs import finish_run, start_run
from pipeline.db.spaces import EmbeddingSpace, register_space
from pipeline.embedding.checkpoints import SPACE_FILE
from pipeline.loading.indexing import build_index
from pipeline.errors import ConfigError
from pipeline.progress import Progress
from pipeline.settings import Settings
from pipeline.workdir import WorkDir

_PART = re.compile(r"part-\d+\.csv$")

_UPSERT_BY_HASH = """
INSERT INTO embeddings (space_id, object_id, embedding, content_hash)
SELECT DISTINCT ON (o.object_id) $1, o.object_id, s.embedding, s.content_hash
FROM load_batch s JOIN objects o ON o.content_hash = s.content_hash
WHERE s.content_hash <> ''
ON CONFLICT (space_id, object_id) DO UPDATE
SET embedding = EXCLUDED.embedding, content_hash = EXCLUDED.content_hash, created_at = now()
"""
# Objects whose store gives no content hash are matched by locator.
_UPSERT_BY_LOCATOR = """
INSERT INTO embeddings (space_id, object_id, embedding, content_hash)
SELECT $1, o.object_id, s.embedding, NULL
FROM load_batch s JOIN objects o ON o.locator = s.locator
WHERE s.content_hash = ''
ON CONFLICT (space_id, object_id) DO UPDATE
SET embedding = EXCLUDED.embedding, content_hash = NULL, created_at = now()
"""
# Identical bytes listed under a new locator after their part was loaded: reuse the vector.
_REUSE_BY_HASH = """
INSERT INTO embeddings (space_id, object_id, embedding, content_hash)
SELECT DISTINCT ON (o.object_id) $1, o.object_id, e.embedding, e.content_hash
FROM objects o JOIN embeddings e ON e.space_id = $1 AND e.content_hash = o.content_hash
WHERE o.deleted_at IS NULL
  AND NOT EXISTS (SELECT 1 FROM embeddings x
                  WHERE x.space_id = $1 AND x.object_id = o.object_id AND x.content_hash = o.content_hash)
ON CONFLICT (space_id, object_id) DO UPDATE
SET embedding = EXCLUDED.embedding, content_hash = EXCLUDED.content_hash, created_at = now()
"""


@dataclass
class LoadResult:
    run_id: int
    counts: Counter = field(default_factory=Counter)
    indexes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        c = self.counts
        return (f"{c['parts_loaded']} parts loaded ({c['rows']} vectors), {c['parts_skipped']} already loaded, "
                f"{c['reused']} vectors reused for identical bytes; indexes: {', '.join(self.indexes) or 'none'}")


async def load_work_dir(*, work_dir: str, settings: Settings | None = None, index: bool = True,
                        maintenance_work_mem: str = "1GB") -> LoadResult:
    settings = settings or Settings()
    work = WorkDir(work_dir)
    folders = sorted({p.rsplit("/", 1)[0] for p in work.list_tree("embeddings") if p.endswith(SPACE_FILE)})
    if not folders:
        raise ConfigError(f"no embeddings in {work.spec}", hint=f"run `imgvec embed --work-dir {work.spec}` first")
    url = await resolve_url(settings)
    async with open_database(settings) as conn:
        run_id = await start_run(conn, "load", work.spec)
        result = LoadResult(run_id)
        try:
            for folder in folders:
                await _load_space(conn, work, folder, run_id, result)
                if index:
                    result.indexes.append(await _ensure_index(conn, work, folder, maintenance_work_mem, url))
        except BaseException as err:
            await finish_run(conn, run_id, result.counts, "failed", err)
            raise
        await finish_run(conn, run_id, result.counts, "succeeded")
    return result


def read_space(work: WorkDir, folder: str) -> EmbeddingSpace:
    with work.open_text(f"{folder}/{SPACE_FILE}") as fh:
        return EmbeddingSpace(**json.load(fh))


async def _load_space(conn, work: WorkDir, folder: str, run_id: int, result: LoadResult,
                      parts_per_transaction: int = 16) -> None:
    space = read_space(work, folder)
    space_id = await register_space(conn, space)
    done = {r[0] for r in await conn.fetch("SELECT part FROM loaded_parts WHERE space_id = $1", space_id)}
    # A part's identity is where it lives: two work dirs may both have a part-00000.
    parts = [p for p in work.list(folder) if _PART.search(p)]
    todo = [p for p in parts if work.describe(p) not in done]
    result.counts["parts_skipped"] += len(parts) - len(todo)
    groups = [todo[i:i + parts_per_transaction] for i in range(0, len(todo), parts_per_transaction)]
    # Created once per connection and emptied at each commit: no catalog churn per part.
    await conn.execute("CREATE TEMP TABLE IF NOT EXISTS load_batch "
                       "(locator text, content_hash text, embedding vector) ON COMMIT DELETE ROWS")
    progress = Progress("load", "vectors")
    try:
        # Parsing the next group (CPU, in a thread) overlaps loading this one (in the server).
        pending = asyncio.create_task(asyncio.to_thread(_read_group, work, groups[0], space.dimension)) if groups else None
        for index in range(len(groups)):
            locators, hashes, vectors, sizes = await pending
            if index + 1 < len(groups):
                pending = asyncio.create_task(asyncio.to_thread(_read_group, work, groups[index + 1], space.dimension))
            async with conn.transaction():
                await conn.copy_records_to_table(
                    "load_batch", records=zip(locators, hashes, vectors), columns=["locator", "content_hash", "embedding"]
                )
                await conn.execute(_UPSERT_BY_HASH, space_id)
                await conn.execute(_UPSERT_BY_LOCATOR, space_id)
                await conn.executemany(
                    "INSERT INTO loaded_parts (space_id, part, rows, run_id) VALUES ($1, $2, $3, $4)",
                    [(space_id, work.describe(path), rows, run_id) for path, rows in sizes],
                )
            result.counts["parts_loaded"] += len(sizes)
            result.counts["rows"] += len(locators)
            progress.advance(len(locators), space=space.name)
        reused = await conn.execute(_REUSE_BY_HASH, space_id)
        result.counts["reused"] += int(reused.split()[-1])
    finally:
        progress.close()


def _read_group(work: WorkDir, paths: list[str], dimension: int):
    locators: list[str] = []
    hashes: list[str] = []
    vectors, sizes = [], []
    for path in paths:
        part_locators, part_hashes, part_vectors = read_part(work, path, dimension)
        locators += part_locators
        hashes += part_hashes
        vectors.append(part_vectors)
        sizes.append((path, len(part_locators)))
    return locators, hashes, np.concatenate(vectors) if vectors else np.zeros((0, dimension), np.float32), sizes


def read_part(work: WorkDir, path: str, dimension: int) -> tuple[list[str], list[str], np.ndarray]:
    with work.open_text(path) as fh:
        frame = pd.read_csv(fh, usecols=["locator", "content_hash", "embedding"], dtype="string", keep_default_na=False)
    if frame.empty:
        return [], [], np.zeros((0, dimension), dtype=np.float32)
    # One C-level parse of all the part's vectors instead of one per row.
    flat = np.fromstring(",".join(text[1:-1] for text in frame["embedding"]), dtype=np.float32, sep=",")
    if flat.size != len(frame) * dimension:
        raise ConfigError(f"{work.describe(path)}: vectors are not all of dimension {dimension}",
                          hint="the part is damaged: delete it and rerun `imgvec embed` to recompute it")
    return frame["locator"].tolist(), frame["content_hash"].tolist(), flat.reshape(len(frame), dimension)


async def _ensure_index(conn, work: WorkDir, folder: str, maintenance_work_mem: str, url: str) -> str:
    space_id = await register_space(conn, read_space(work, folder))
    index = await build_index(conn, space_id, maintenance_work_mem=maintenance_work_mem, progress_url=url)
    await conn.execute("ANALYZE objects")
    return index
