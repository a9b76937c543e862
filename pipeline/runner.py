"""Jobs: a stage run against the database. The embed stage knows nothing of the database
(`pipeline.embedding.stage`); here it gets what it needs from it — the work-dir lock, its space
registered, its run tracked, the contents already embedded elsewhere — and `run_source` chains
list → embed → load, the nightly job's one command."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pipeline import interrupt
from pipeline.checkpoints.manifest import iter_entries, latest_manifest
from pipeline.checkpoints.run_markers import (
    listed_manifest,
    publish_listed,
    publish_shard_done,
    shards_done,
)
from pipeline.core.objects import content_key
from pipeline.core.shards import Shard
from pipeline.db import connect, open_database, resolve_url
from pipeline.db.runs import RunTask, tracked_run
from pipeline.db.spaces import register_space
from pipeline.db.work_dir_lock import check_work_dir_free, work_dir_lock
from pipeline.embedding.backends.base import EmbeddingBackend
from pipeline.embedding.readers import ObjectReader
from pipeline.embedding.stage import EmbedOptions, EmbedResult, KnownContents, embed_manifest
from pipeline.errors import RetryableError
from pipeline.listing import ListingResult, list_source
from pipeline.loading import LoadResult, load_work_dir
from pipeline.search import save_text_queries
from pipeline.settings import Settings
from pipeline.workdir import WorkDir


async def embed_work_dir(
    *,
    work_dir: str,
    backend: EmbeddingBackend,
    settings: Settings | None = None,
    force: bool = False,
    retry_failed: bool = False,
    part_size: int = 256,
    read_workers: int = 8,
    shard: Shard | None = None,
    manifest: str | None = None,
    sharded_run: str | None = None,
) -> EmbedResult:
    """Embed the work dir's latest manifest (or `manifest`) with `backend` into parts — with
    `shard`, only the contents that task owns (`sharded_run`: the id of the run it is a task of,
    for its `runs` row); rerun to resume."""
    settings = settings or Settings()
    work = WorkDir(work_dir)
    manifest = manifest or latest_manifest(work)
    options = EmbedOptions(force, retry_failed, part_size, read_workers, shard=shard)
    space = backend.space
    if shard is not None:  # N tasks together keep to the project's quota
        backend.share_quota(quota_share(work, manifest, shard))
    lock = work_dir_lock_of(work, space.name, shard)
    with interrupt.graceful():  # a signal stops the work below, which then winds down itself
        async with open_database(settings) as conn, work_dir_lock(conn, *lock):
            if not await conn.fetchval(
                "SELECT 1 FROM embedding_spaces WHERE name = $1", space.name
            ):
                await asyncio.to_thread(backend.check)  # a mistyped option must not create a space
                interrupt.check()
            space_id = await register_space(conn, space)
            source = work.describe(manifest)
            task = RunTask(sharded_run, shard)
            async with tracked_run(conn, "embed", source, space_id=space_id, task=task) as run:
                result = EmbedResult(space.name, source, run.run_id, run.counts)
                reader = ObjectReader(s3_endpoint_url=settings.s3_endpoint_url)
                known = _known_contents(conn, space_id, asyncio.get_running_loop())
                try:
                    await asyncio.to_thread(
                        embed_manifest, work, manifest, backend, reader, result, options, known
                    )
                except interrupt.Interrupted as err:
                    raise interrupt.Interrupted(
                        f"{err}: {result.counts['embedded']} images embedded in this run are "
                        f"kept in {len(result.parts)} part(s) (searchable once loaded: the rerun, "
                        "or `imgvec load`)",
                        # (the same command with --force would embed them all again)
                        hint="rerun without --force to resume" if force else err.hint or "",
                    ) from None
    return result


def work_dir_lock_of(work: WorkDir, space: str, shard: Shard | None) -> tuple[str, str, str]:
    """The work-dir lock's key: one embed per work dir, space and shard at a time."""
    return work.spec, space, str(shard) if shard else ""


def quota_share(work: WorkDir, manifest: str, shard: Shard) -> float:
    """How many tasks' worth of work there is per this task's: each paces at rate x own / total,
    so that every task ends together. Hash shares are balanced only statistically (8 shards of
    20,000 objects: the largest +4.6 % over an even share), and paced at rate / N the largest one
    would end the run last (bench_scale: +6.0 % over the quota's ideal, +1.1 % this way)."""
    total = own = 0
    for entry in iter_entries(work, manifest):
        if entry.present:
            total += 1
            own += shard.owns(content_key(entry.locator, entry.content_hash))
    return total / max(own, 1) if total else float(shard.count)


def _known_contents(conn, space_id: int, loop: asyncio.AbstractEventLoop) -> KnownContents:
    """Which of some content hashes already have a current vector in the space, for the stage's
    reader thread: bytes embedded through another work dir are not embedded again (the load
    links their objects to the stored vector)."""

    async def lookup(hashes: list[str]) -> set[str]:
        rows = await conn.fetch(
            """
            SELECT DISTINCT o.content_hash FROM objects o
            JOIN embeddings e ON e.object_id = o.object_id AND e.space_id = $1
                             AND e.content_hash = o.content_hash
            WHERE o.content_hash = ANY($2::text[])
            """,
            space_id,
            hashes,
        )
        return {r[0] for r in rows}

    def known(hashes: list[str]) -> set[str]:
        return asyncio.run_coroutine_threadsafe(lookup(hashes), loop).result()

    return known


@dataclass
class SourceRun:
    """What `run_source` did, stage by stage; `texts` are the pending text queries it embedded."""

    listing: ListingResult | None  # None: another task of a sharded run listed
    embedding: EmbedResult
    loading: LoadResult
    texts: list[str]


async def run_source(
    settings: Settings,
    source: str,
    backend: EmbeddingBackend,
    *,
    work_dir: str | None = None,
    list_options: dict[str, Any] | None = None,
    embed_options: dict[str, Any] | None = None,
    on_stage: Callable[[str, Any], None] | None = None,
    task: ShardTask | None = None,
) -> SourceRun:
    """List `source`, embed what is new or changed with `backend`, load and index, then embed the
    text queries analysts queued: the nightly job. Idempotent and resumable: rerun it after any
    failure. `list_options` go to `list_source`, `embed_options` to `embed_work_dir`;
    `on_stage(stage, result)` hears of each stage ("list", "embed", "load", "texts") as it ends.
    With `task`, this is one task of a sharded run (`ShardTask`)."""
    work_dir = work_dir or settings.work_dir
    report = on_stage or (lambda stage, result: None)
    work = WorkDir(work_dir)
    shard = task.shard if task else None
    # Before the listing: another run embedding into this work dir would be waited for only
    # after the whole source was listed.
    conn = await connect(
        await resolve_url(settings), timeout=settings.connect_timeout, register_vector=False
    )
    try:
        await check_work_dir_free(conn, *work_dir_lock_of(work, backend.space.name, shard))
    finally:
        await conn.close()
    manifest = listed_manifest(work, task.run_id) if task else None
    listing = None
    if task is None or (manifest is None and task.shard.index == 0):
        run_id = task.run_id if task else None
        listing = await list_source(
            source,
            work_dir=work_dir,
            settings=settings,
            run_id=run_id,
            shard=shard,
            **(list_options or {}),
        )
        if task:  # (after the listing's commit: the others may now load against its objects)
            publish_listed(work, task.run_id, listing.manifest)
            manifest = listed_manifest(work, task.run_id)
    elif manifest is None:
        manifest = await _wait_for_listing(work, task)
    report("list", listing)
    embedding = await embed_work_dir(
        work_dir=work_dir,
        backend=backend,
        settings=settings,
        shard=shard,
        manifest=manifest,
        sharded_run=task.run_id if task else None,
        **(embed_options or {}),
    )
    report("embed", embedding)
    run_task = RunTask(task.run_id, shard) if task else None
    loading = await load_work_dir(
        work_dir=work_dir, settings=settings, index=task is None, task=run_task
    )
    if task:
        # The index is built once, after every shard is loaded (a graph built over all the rows
        # beats one grown row by row): by the task that finds the others done.
        publish_shard_done(work, task.run_id, task.shard)
        if len(shards_done(work, task.run_id, task.shard.count)) < task.shard.count:
            report("load", loading)
            return SourceRun(listing, embedding, loading, [])
        final = await load_work_dir(work_dir=work_dir, settings=settings, task=run_task)
        loading = loading.then(final)  # (its summary said "0 parts loaded": the second pass's)
    report("load", loading)
    async with open_database(settings) as conn:
        texts = await save_text_queries(conn, backend, [])
    report("texts", texts)
    return SourceRun(listing, embedding, loading, texts)


@dataclass(frozen=True)
class ShardTask:
    """One task of a sharded run: `run_id` is shared by the run's N tasks (and differs between
    runs); task 0 lists, every task embeds its shard and loads, the last one done indexes."""

    shard: Shard
    run_id: str
    wait: float = 600.0  # seconds a task waits for task 0's listing


class ListingNotReady(RetryableError):
    """Task 0 has not listed the run's source yet (exit 75: the engine retries the task)."""


async def _wait_for_listing(work: WorkDir, task: ShardTask) -> str:
    deadline = time.monotonic() + task.wait
    while (manifest := listed_manifest(work, task.run_id)) is None:
        if time.monotonic() > deadline:
            raise ListingNotReady(
                f"task {task.shard} waited {task.wait:g} s for run {task.run_id}'s listing by "
                f"task 0 in {work.spec}",
                hint="check that task 0 of the run is running (it lists the source), or raise "
                "--wait; the engine may retry this task",
            )
        await asyncio.sleep(0.5)
    return manifest
