"""The embed stage: the latest manifest in, CSV parts of vectors out. Entry point: `embed_work_dir`.

Reader threads fetch and decode images (and run the model's preprocessing) while the backend
embeds, so the model never waits on I/O; results are grouped into parts as they arrive.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pandas as pd

from pipeline.db import open_database
from pipeline.db.runs import finish_run, start_run
from pipeline.db.spaces import register_space
from pipeline.embedding.backends.base import (
    EmbeddingBackend,
    ImageItem,
    ItemFailure,
    ordered_bounded,
)
from pipeline.embedding.checkpoints import (
    PartIndex,
    PartWriter,
    content_key,
    read_index,
    space_folder,
)
from pipeline.embedding.images import BadImage, decode_image
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

    def summary(self) -> str:
        c = self.counts
        return (
            f"space {self.space}: {c['embedded']} embedded, {c['failed']} failed, "
            f"{c['already_embedded']} already embedded, {c['duplicates']} duplicates reused, "
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
    space = backend.space
    folder = space_folder(space)
    async with open_database(settings) as conn:
        space_id = await register_space(conn, space)
        run_id = await start_run(conn, "embed", work.describe(manifest), space_id=space_id)
        result = EmbedResult(run_id, space.name, work.describe(manifest), backend=backend)
        try:
            index = await asyncio.to_thread(read_index, work, folder)
            if force:  # re-embed everything; new parts are numbered after the old ones
                index.done.clear()
                index.failed_permanently.clear()
            items = _items_to_embed(work, manifest, index, retry_failed, result.counts)
            writer = PartWriter(work, folder, space, index.next_number)
            reader = ObjectReader(s3_endpoint_url=settings.s3_endpoint_url)
            failures = await asyncio.to_thread(
                _embed_items, items, backend, reader, writer, part_size, read_workers, result.counts
            )
            result.parts = writer.published
            await _record_failures(conn, failures, space_id, run_id)
        except BaseException as err:
            await finish_run(conn, run_id, result.counts, "failed", err)
            raise
        await finish_run(
            conn, run_id, result.counts, "partial" if result.counts["failed"] else "succeeded"
        )
    return result


def _items_to_embed(
    work: WorkDir, manifest: str, index: PartIndex, retry_failed: bool, counts: Counter
) -> Iterator[ImageItem]:
    """Manifest rows whose bytes this space has not embedded yet, each content once."""
    seen: set[str] = set()
    with work.open_text(manifest) as fh:
        chunks = pd.read_csv(
            fh,
            usecols=["locator", "content_hash", "status"],
            dtype="string",
            keep_default_na=False,
            chunksize=10_000,
        )
        for chunk in chunks:
            for locator, content_hash, status in chunk.itertuples(index=False):
                if status in ("deleted", "skipped"):
                    continue
                key = content_key(locator, content_hash or None)
                if key in index.done:
                    counts["already_embedded"] += 1
                elif key in seen:
                    counts["duplicates"] += 1
                elif key in index.failed_permanently and not retry_failed:
                    counts["known_failures"] += 1
                else:
                    seen.add(key)
                    yield ImageItem(locator, content_hash=content_hash or None)


def _embed_items(
    items,
    backend: EmbeddingBackend,
    reader: ObjectReader,
    writer: PartWriter,
    part_size: int,
    read_workers: int,
    counts: Counter,
) -> list[tuple[str, str | None, str]]:
    vectors: list = []
    failed: list = []
    all_failures: list[tuple[str, str | None, str]] = []
    progress = Progress("embed", "images")

    def load(item: ImageItem) -> ImageItem:
        if backend.input_kind == "locator_or_bytes" and item.locator.startswith("gs://"):
            item.source = item.locator  # the service reads it from GCS itself
            return item
        try:
            data = reader.read(item.locator)
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
        progress.advance(len(vectors) + len(failed), failed=counts["failed"])
        vectors, failed = [], []

    try:
        with ThreadPoolExecutor(max_workers=read_workers, thread_name_prefix="read") as pool:
            loaded = ordered_bounded(load, items, pool, in_flight=read_workers * 4)
            for item, outcome in backend.embed_stream(loaded):
                if isinstance(outcome, ItemFailure):
                    failed.append(
                        (item.locator, item.content_hash, outcome.reason, outcome.permanent)
                    )
                else:
                    vectors.append((item.locator, item.content_hash, outcome))
                item.source = None  # let the decoded image go
                if len(vectors) + len(failed) >= part_size:
                    write_part()
        if vectors or failed:
            write_part()
    finally:
        progress.close()
    return all_failures


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
