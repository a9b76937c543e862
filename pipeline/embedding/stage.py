"""The embed stage: a manifest in, parts of vectors out (`pipeline.checkpoints`). It knows nothing
of the database: what it needs from it — which bytes already have a vector in the space — is a
function passed in (`pipeline.runner` wires it), so the stage runs and is tested on its own.

Reader threads fetch and decode images (and run the model's preprocessing) while the backend
embeds, so the model never waits on I/O; results are grouped into parts as they arrive. From the
image a reader decoded, it also writes the content's thumbnail (`pipeline.embedding.thumbnails`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from pipeline import interrupt
from pipeline.checkpoints.failures import Failure
from pipeline.checkpoints.manifest import iter_entries
from pipeline.checkpoints.parts import (
    Embedded,
    PartIndex,
    PartWriter,
    read_index,
    space_folder,
)
from pipeline.core.objects import content_key
from pipeline.core.shards import Shard
from pipeline.embedding.backends.base import (
    EmbeddingBackend,
    ImageItem,
    ItemFailure,
    ordered_bounded,
    thread_pool,
)
from pipeline.embedding.images import BadImage
from pipeline.embedding.readers import ObjectReader
from pipeline.embedding.thumbnails import ThumbnailWriter
from pipeline.errors import EXIT_FINISHED_WITH_FAILURES
from pipeline.progress import Progress
from pipeline.workdir import WorkDir

#: which of some content hashes already have a vector in the space (called from a reader thread)
KnownContents = Callable[[list[str]], set[str]]


@dataclass
class EmbedResult:
    space: str
    manifest: str
    run_id: int | None = None
    counts: Counter = field(default_factory=Counter)
    parts: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return EXIT_FINISHED_WITH_FAILURES if self.counts["failed"] else 0

    def failures_note(self) -> str | None:
        """The line that goes with exit code 3: where the failures are, and what next."""
        if not self.counts["failed"]:
            return None
        return (
            f"imgvec: {self.counts['failed']} image(s) could not be embedded; the reasons are in "
            "the work dir's failures-NNNNN.csv files and, once loaded, the failures table "
            '(`imgvec psql -c "TABLE failures"`, or sql/recent_failures.sql in imgvec\'s '
            "repository); later runs skip them until --retry-failed"
        )

    def summary(self) -> str:
        c = self.counts
        others = f" ({c['other_shards']} left to other shards)" if c["other_shards"] else ""
        return (
            f"space {self.space}{others}: {c['embedded']} embedded, {c['failed']} failed, "
            f"{c['already_embedded']} already embedded, {c['in_database']} already in the "
            f"database, {c['duplicates']} duplicates reused, "
            f"{c['known_failures']} known failures skipped; {len(self.parts)} new parts"
        )


@dataclass
class EmbedOptions:
    force: bool = False  # re-embed everything, even what earlier parts hold
    retry_failed: bool = False  # try again what failed for good before
    part_size: int = 256  # images per part: the unit a crash can lose
    read_workers: int = 8  # threads reading and decoding images
    thumbnails: bool = True  # write a thumbnail per newly embedded content into the work dir
    shard: Shard | None = None  # embed only the contents this task of N owns


def embed_manifest(
    work: WorkDir,
    manifest: str,
    backend: EmbeddingBackend,
    reader: ObjectReader,
    result: EmbedResult,
    options: EmbedOptions,
    known_contents: KnownContents | None = None,
) -> None:
    """Embed what the manifest lists and no part holds yet, publishing parts as they fill;
    `result.counts` and `result.parts` grow as it goes (they stay right when it is stopped)."""
    space = backend.space
    folder = space_folder(space)
    index = read_index(work, folder)
    if options.force:  # re-embed everything; new parts are numbered after the old ones
        index.done.clear()
        index.failed_permanently.clear()
    writer = PartWriter(work, folder, space, index.next_number, options.shard)  # (and space.json)
    todo = _ToEmbed(work, manifest, index, options, None if options.force else known_contents)
    thumbnails = ThumbnailWriter(work) if options.thumbnails else None
    try:
        _embed_items(todo, backend, reader, writer, thumbnails, options, result.counts)
    finally:
        result.parts = writer.published


@dataclass
class _ToEmbed:
    """The manifest rows whose bytes this space has no vector for yet, each content once. Read
    twice: once to count them (the progress bar's total), once to embed them."""

    work: WorkDir
    manifest: str
    index: PartIndex
    options: EmbedOptions
    known_contents: KnownContents | None = None

    def count(self) -> int:
        return sum(1 for _ in self.items(Counter()))

    def items(self, counts: Counter) -> Iterator[ImageItem]:
        seen: set[str] = set()
        wanted: list[ImageItem] = []
        for entry in iter_entries(self.work, self.manifest):
            if not entry.present:
                continue
            key = content_key(entry.locator, entry.content_hash)
            if self.options.shard and not self.options.shard.owns(key):
                counts["other_shards"] += 1  # (identical bytes share a key, hence a shard)
            elif key in self.index.done:
                counts["already_embedded"] += 1
            elif key in seen:
                counts["duplicates"] += 1
            elif key in self.index.failed_permanently and not self.options.retry_failed:
                counts["known_failures"] += 1
            else:
                seen.add(key)
                wanted.append(
                    ImageItem(
                        entry.locator, None, entry.content_hash, entry.size, entry.content_type
                    )
                )
                if len(wanted) == 10_000:  # one database lookup per 10,000 candidates
                    yield from self._not_known(wanted, counts)
                    wanted = []
        yield from self._not_known(wanted, counts)

    def _not_known(self, wanted: list[ImageItem], counts: Counter) -> Iterator[ImageItem]:
        """Leave out what another work dir already embedded into the database."""
        known: set[str] = set()
        if self.known_contents is not None:
            hashes = [item.content_hash for item in wanted if item.content_hash]
            known = self.known_contents(hashes) if hashes else set()
        for item in wanted:
            if item.content_hash in known:
                counts["in_database"] += 1
            else:
                yield item


def _embed_items(
    todo: _ToEmbed,
    backend: EmbeddingBackend,
    reader: ObjectReader,
    writer: PartWriter,
    thumbnails: ThumbnailWriter | None,
    options: EmbedOptions,
    counts: Counter,
) -> None:
    vectors: list[Embedded] = []
    failed: list[Failure] = []
    total = todo.count()
    if total:
        # The model loads first, as a step of its own: the bar's rate and ETA then time the
        # images, not the model load (which would make the first ETA an hour).
        backend.check()
        interrupt.check()
    progress = Progress("embed", "images", total=total)

    def load(item: ImageItem) -> ImageItem:
        if thumbnails is not None:  # (one per content key: `todo` yields each key once)
            item.on_image = thumbnails.for_key(content_key(item.locator, item.content_hash))
        try:
            item.source = backend.load_source(item, reader)
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
        vectors, failed = [], []

    def new_work() -> Iterator[ImageItem]:
        for item in todo.items(counts):
            if interrupt.requested():
                return  # take no new work; what is in flight is dropped below
            yield item

    workers = options.read_workers
    try:
        with thread_pool(workers, "read") as pool:
            loaded = ordered_bounded(load, new_work(), pool, in_flight=workers * 4)
            for item, outcome in backend.embed_stream(loaded):
                if isinstance(outcome, ItemFailure):
                    failed.append(
                        Failure(item.locator, item.content_hash, outcome.reason, outcome.permanent)
                    )
                else:
                    vectors.append(Embedded(item.locator, item.content_hash, outcome))
                item.source = None  # let the decoded image go
                progress.advance(1, failed=counts["failed"] + len(failed))
                if len(vectors) + len(failed) >= options.part_size:
                    write_part()
            interrupt.check()  # the stream ended early because a stop was asked for
    finally:
        if vectors or failed:
            write_part()  # finished work is kept, also when stopped
        progress.close()
