"""The embed stage: the latest manifest in, CSV parts of vectors out. Entry point: `embed_work_dir`.

Reader threads fetch and decode images (and run the model's preprocessing) while the backend
embeds, so the model never waits on I/O; results are grouped into parts as they arrive.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pandas as pd

from pipeline import interrupt
from pipeline.db import open_database
from pipeline.db.runs import finish_run, start_run
from pipeline.db.spaces import register_space
from pipeline.embedding.backends.base import (
    EmbeddingBackend,
    ImageItem,
    ItemFailure,
    ordered_bounded,
    thread_pool,
)
from pipeline.embedding.checkpoints import (
    PartIndex,
    PartWriter,
    content_key,
    read_index,
    space_folder,
)
from pipeline.embedding.images import BadImage, decode_image
from pipeline.embedding.lock import work_dir_lock
from pipeline.embedding.readers import ObjectReader
from pipeline.errors import ConfigError
from pipeline.progress import Progress
from pipeline.settings import Settings
from pipeline.workdir import WorkDir

EXIT_WITH_FAILURES = 3


@dataclass
class EmbedResult:
    run_id: int
    space: str
    manifest: str
    counts: Counter = field(default_factory=Counter)
    parts: list[str] = field(default_factory=list)
    backend: EmbeddingBackend | None = None

    @property
    def exit_code(self) -> int:
        return EXIT_WITH_FAILURES if self.counts["failed"] else 0

    def failures_note(self) -> str | None:
        """The line that goes with exit code 3: where the failures are, and what next."""
        if not self.counts["failed"]:
            return None
        return (
            f"imgvec: {self.counts['failed']} image(s) could not be embedded; the reasons are in "
            "the failures table (`imgvec psql -f sql/recent_failures.sql`) and the work dir's "
            "failures-NNNNN.csv files; later runs skip them until --retry-failed"
        )

    def summary(self) -> str:
        c = self.counts
        return (
            f"space {self.space}: {c['embedded']} embedded, {c['failed']} failed, "
            f"{c['already_embedded']} already embedded, {c['in_database']} already in the "
            f"database, {c['duplicates']} duplicates reused, "
            f"{c['known_failures']} known failures skipped; {len(self.parts)} new parts"
        )


def latest_manifest(work: WorkDir) -> str:
    manifests = [p for p in work.list("manifests") if p.endswith(".csv")]
    if not manifests:
        raise ConfigError(
            f"no manifest in {work.spec}",
            hint=f"run `imgvec list SOURCE --work-dir {work.spec}` first",
        )
    return manifests[-1]  # names carry a sortable UTC time


async def embed_work_dir(
    *,
    work_dir: str,
    backend: EmbeddingBackend,
    settings: Settings | None = None,
    force: bool = False,
    retry_failed: bool = False,
    part_size: int = 256,
    read_workers: int = 8,
) -> EmbedResult:
    settings = settings or Settings()
    work = WorkDir(work_dir)
    manifest = latest_manifest(work)
    with interrupt.graceful():  # a signal stops the work below, which then winds down itself
        return await _embed(
            work, manifest, backend, settings, force, retry_failed, part_size, read_workers
        )


async def _embed(
    work: WorkDir,
    manifest: str,
    backend: EmbeddingBackend,
    settings: Settings,
    force: bool,
    retry_failed: bool,
    part_size: int,
    read_workers: int,
) -> EmbedResult:
    space = backend.space
    folder = space_folder(space)
    async with open_database(settings) as conn, work_dir_lock(conn, work.spec, space.name):
        if not await conn.fetchval("SELECT 1 FROM embedding_spaces WHERE name = $1", space.name):
            await asyncio.to_thread(backend.check)  # a mistyped option must not create a space
            interrupt.check()
        space_id = await register_space(conn, space)
        run_id = await start_run(conn, "embed", work.describe(manifest), space_id=space_id)
        result = EmbedResult(run_id, space.name, work.describe(manifest), backend=backend)
        failures: list[tuple[str, str | None, str]] = []
        writer = None
        try:
            index = await asyncio.to_thread(read_index, work, folder)
            if force:  # re-embed everything; new parts are numbered after the old ones
                index.done.clear()
                index.failed_permanently.clear()
            writer = PartWriter(work, folder, space, index.next_number)
            # Always: the load then visits this space and links listed objects to vectors the
            # database already holds for their bytes, even when nothing new was embedded here.
            await asyncio.to_thread(writer.write_space)
            in_database = _in_database_lookup(conn, space_id, asyncio.get_running_loop())
            todo = _ToEmbed(work, manifest, index, retry_failed, force, in_database)
            reader = ObjectReader(s3_endpoint_url=settings.s3_endpoint_url)
            await asyncio.to_thread(
                _embed_items,
                todo,
                backend,
                reader,
                writer,
                part_size,
                read_workers,
                result.counts,
                failures,
            )
        except BaseException as err:
            result.parts = writer.published if writer else []
            with contextlib.suppress(Exception):
                await _record_failures(conn, failures, space_id, run_id)
            await finish_run(conn, run_id, result.counts, "failed", err)  # or "interrupted"
            if isinstance(err, interrupt.Interrupted):
                raise interrupt.Interrupted(
                    f"{err}: {result.counts['embedded']} images embedded in this run are kept in "
                    f"{len(result.parts)} parts (searchable once loaded: the rerun, or `imgvec load`)"
                ) from None
            raise
        result.parts = writer.published
        await _record_failures(conn, failures, space_id, run_id)
        await finish_run(
            conn, run_id, result.counts, "partial" if result.counts["failed"] else "succeeded"
        )
    return result


def _in_database_lookup(
    conn, space_id: int, loop: asyncio.AbstractEventLoop
) -> Callable[[list[str]], set[str]]:
    """A function, for the reader thread, that tells which of some content hashes already have a
    current vector in the space: bytes embedded through another work dir are not embedded again
    (the load links their objects to the stored vector)."""

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

    def in_database(hashes: list[str]) -> set[str]:
        if not hashes:
            return set()
        return asyncio.run_coroutine_threadsafe(lookup(hashes), loop).result()

    return in_database


@dataclass
class _ToEmbed:
    """The manifest rows whose bytes this space has no vector for yet, each content once. Read
    twice: once to count them (the progress bar's total), once to embed them."""

    work: WorkDir
    manifest: str
    index: PartIndex
    retry_failed: bool
    force: bool
    in_database: Callable[[list[str]], set[str]] | None = None

    def count(self) -> int:
        return sum(1 for _ in self.items(Counter()))

    def items(self, counts: Counter) -> Iterator[ImageItem]:
        seen: set[str] = set()
        with self.work.open_text(self.manifest) as fh:
            names = ["locator", "content_hash", "status", "size", "content_type"]
            chunks = pd.read_csv(
                fh,
                # (a manifest of an older imgvec may lack content_type)
                usecols=lambda column: column in names,
                dtype="string",
                keep_default_na=False,
                chunksize=10_000,
            )
            for chunk in chunks:
                wanted = []
                if "content_type" not in chunk:
                    chunk["content_type"] = ""
                # (usecols keeps the file's column order: name the order wanted)
                columns = chunk[names]
                for row in columns.itertuples(index=False):
                    locator, content_hash, status, size, content_type = row
                    if status in ("deleted", "skipped"):
                        continue
                    key = content_key(locator, content_hash or None)
                    if key in self.index.done:
                        counts["already_embedded"] += 1
                    elif key in seen:
                        counts["duplicates"] += 1
                    elif key in self.index.failed_permanently and not self.retry_failed:
                        counts["known_failures"] += 1
                    else:
                        seen.add(key)
                        wanted.append(
                            ImageItem(
                                locator,
                                content_hash=content_hash or None,
                                size=int(size) if size else None,
                                content_type=content_type or None,
                            )
                        )
                stored = set()
                if not self.force and self.in_database is not None:
                    stored = self.in_database([i.content_hash for i in wanted if i.content_hash])
                for item in wanted:
                    if item.content_hash in stored:
                        counts["in_database"] += 1
                    else:
                        yield item


def _embed_items(
    todo: _ToEmbed,
    backend: EmbeddingBackend,
    reader: ObjectReader,
    writer: PartWriter,
    part_size: int,
    read_workers: int,
    counts: Counter,
    all_failures: list[tuple[str, str | None, str]],
) -> None:
    vectors: list = []
    failed: list = []
    total = todo.count()
    if total:
        # The model loads first, as a step of its own: the bar's rate and ETA then time the
        # images, not the model load (which would make the first ETA an hour).
        backend.check()
        interrupt.check()
    progress = Progress("embed", "images", total=total)

    load_source = getattr(backend, "load_source", None)

    def load(item: ImageItem) -> ImageItem:
        try:
            if backend.input_kind == "locator_or_bytes" and load_source is not None:
                # The backend decides what goes as a locator and what is read, checked and
                # sent as bytes (Vertex: a gcsUri only for what it takes as stored).
                item.source = load_source(item, reader)
                return item
            data = reader.read(item.locator, size=item.size)
            image = decode_image(data)
            item.source = backend.prepare(image) if backend.input_kind == "image" else data
        except BadImage as err:
            item.source = ItemFailure(str(err))
        except ItemFailure as err:
            item.source = err
        return item

    def write_part() -> None:
        nonlocal vectors, failed
        writer.write(vectors, failed)
        counts["embedded"] += len(vectors)
        counts["failed"] += len(failed)
        all_failures.extend((loc, h, reason) for loc, h, reason, _ in failed)
        vectors, failed = [], []

    def new_work() -> Iterator[ImageItem]:
        for item in todo.items(counts):
            if interrupt.requested():
                return  # take no new work; what is in flight is dropped below
            yield item

    try:
        with thread_pool(read_workers, "read") as pool:
            loaded = ordered_bounded(load, new_work(), pool, in_flight=read_workers * 4)
            for item, outcome in backend.embed_stream(loaded):
                if isinstance(outcome, ItemFailure):
                    failed.append(
                        (item.locator, item.content_hash, outcome.reason, outcome.permanent)
                    )
                else:
                    vectors.append((item.locator, item.content_hash, outcome))
                item.source = None  # let the decoded image go
                progress.advance(1, failed=counts["failed"] + len(failed))
                if len(vectors) + len(failed) >= part_size:
                    write_part()
            interrupt.check()  # the stream ended early because a stop was asked for
    finally:
        if vectors or failed:
            write_part()  # finished work is kept, also when stopped
        progress.close()


async def _record_failures(conn, failures, space_id: int, run_id: int) -> None:
    if failures:
        await conn.executemany(
            """
            INSERT INTO failures (locator, stage, space_id, reason, run_id)
            VALUES ($1, 'embed', $2, $3, $4)
            ON CONFLICT ON CONSTRAINT uq_failures_locator_stage_space_id DO UPDATE
            SET reason = EXCLUDED.reason, attempts = failures.attempts + 1,
                last_failed_at = now(), run_id = EXCLUDED.run_id
            """,
            [(locator, space_id, reason, run_id) for locator, _, reason in failures],
        )
