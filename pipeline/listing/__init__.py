"""The list stage: which image objects a source has, and what is new, changed or gone since the
last run. Entry point: `list_source`. Output: a manifest CSV in the work dir and the objects table.

The whole listing is one database transaction and the manifest is published just before it
commits: a listing that dies part-way changes nothing (in particular marks nothing deleted), and
rerunning it reports the same new and changed objects again.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from itertools import batched

from pipeline.checkpoints.manifest import ManifestWriter, manifest_path
from pipeline.core.objects import ObjectInfo
from pipeline.core.shards import Shard
from pipeline.db import open_database
from pipeline.db.runs import RunTask, tracked_run
from pipeline.listing.attributes import ObjectAttributes
from pipeline.listing.filters import ObjectFilter
from pipeline.listing.registry import register_source, settle_source
from pipeline.listing.store import ObjectStore
from pipeline.progress import Progress
from pipeline.settings import Settings
from pipeline.sources import Source, SourceOptions, open_source
from pipeline.sources.base import MissingObject
from pipeline.workdir import WorkDir


@dataclass
class ListingResult:
    run_id: int
    manifest: str
    counts: Counter = field(default_factory=Counter)
    #: the sidecar's keys that matched no listed object
    unmatched_attributes: list[str] = field(default_factory=list)
    #: more notes for stderr: path rules that labelled nothing, objects another source holds
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        c = self.counts
        relabeled = f" ({c['relabeled']} relabeled)" if c["relabeled"] else ""
        missing = f" ({c['missing']} missing)" if c["missing"] else ""
        return (
            f"{c['listed']} objects: {c['new']} new, {c['changed']} changed, "
            f"{c['unchanged']} unchanged{relabeled}, {c['deleted']} deleted, "
            f"{c['skipped']} skipped{missing}; manifest {self.manifest}"
        )

    def unmatched_note(self) -> str | None:
        """A line naming (up to 5 of) the sidecar's keys no listed object has, and one naming the
        path rules that gave no object a value, if any."""
        keys = self.unmatched_attributes
        notes = list(self.notes)
        if keys:
            more = f" and {len(keys) - 5} more" if len(keys) > 5 else ""
            notes.insert(
                0,
                f"note: {len(keys)} key(s) of --attributes match no listed object's name or "
                f"locator: {', '.join(repr(k) for k in keys[:5])}{more}",
            )
        return "\n".join(notes) or None


async def list_source(
    spec: str,
    *,
    work_dir: str,
    settings: Settings | None = None,
    object_filter: ObjectFilter | None = None,
    attributes: ObjectAttributes | None = None,
    page_size: int = 1000,
    batch_size: int = 5000,
    source: Source | None = None,
    run_id: str | None = None,
    shard: Shard | None = None,
    take_over: bool = False,
) -> ListingResult:
    settings = settings or Settings()
    object_filter = object_filter or ObjectFilter()
    attributes = attributes or ObjectAttributes()
    source = source or open_source(
        spec,
        SourceOptions(
            page_size=page_size,
            timeout=settings.storage_timeout,
            endpoint_url=settings.s3_endpoint_url,
            wanted=lambda name, size: object_filter.wanted_name(name),
        ),
    )
    listed_at = datetime.now(UTC)
    work = WorkDir(work_dir)

    async with (
        open_database(settings) as conn,
        tracked_run(conn, "list", spec, started_at=listed_at, task=RunTask(run_id, shard)) as run,
    ):
        counts = run.counts
        held_by: Counter[str] = Counter()  # source root -> its objects left out of this listing
        manifest = ManifestWriter(work, manifest_path(listed_at, run_id))
        progress = Progress("list", "objects")
        try:
            async with conn.transaction():
                # Inside the listing's transaction: a listing that fails registers no source
                # (its row would show in every "listed sources" hint, and could become the default).
                source_id = await register_source(conn, source)
                store = ObjectStore(
                    conn,
                    listed_at,
                    source_id,
                    names_may_clash=source.names_may_clash,
                    take_over=take_over,
                )
                for batch in batched(map(attributes.label, source.list()), batch_size):
                    await _record_batch(batch, object_filter, store, manifest, counts, held_by)
                    progress.advance(len(batch), new=counts["new"], changed=counts["changed"])
                if source.complete_listing:
                    deleted = await store.mark_deleted(source.root())
                    manifest.write((obj, "deleted", None) for obj in deleted)
                    counts["deleted"] += len(deleted)
                unmatched = attributes.unmatched()
                counts["unmatched_attributes"] += len(unmatched)
                await settle_source(conn, source_id, source)
                published = manifest.publish()
        except BaseException:
            manifest.discard()
            raise
        finally:
            progress.close()
    notes = [attributes.unused_path_note()] if counts["listed"] else []
    if held_by:
        root, _ = held_by.most_common(1)[0]
        notes.append(
            f"note: {counts['held_elsewhere']} listed object(s) belong to another listed source "
            f"({root}{' and others' if len(held_by) > 1 else ''}): left out, as an object belongs "
            "to one source; search them there (--source), or list with --take-over to move them "
            "here (renamed, with this listing's attributes)"
        )
    return ListingResult(run.run_id, published, counts, unmatched, [n for n in notes if n])


async def _record_batch(batch, object_filter, store, manifest, counts, held_by) -> None:
    images: list[tuple[ObjectInfo, None]] = []
    skipped: list[tuple[ObjectInfo, str]] = []
    for obj in batch:
        # A locator of a list that names nothing is skipped, whatever the filters would say.
        missing = isinstance(obj, MissingObject)
        reason = obj.reason if missing else object_filter.skip_reason(obj)
        (skipped if reason else images).append((obj, reason))
        if missing:  # (only then: a run's counts name what happened)
            counts["missing"] += 1
    statuses = await store.upsert([obj for obj, _ in images]) if images else {}
    held = store.held_elsewhere  # (left out of the upsert: skipped rows here)
    rows: list[tuple[ObjectInfo, str, str | None]] = []
    for obj, _ in images:
        if obj.locator in held:
            skipped.append((obj, f"held by source {held[obj.locator]}"))
        else:
            rows.append((_as_stored(obj, store), statuses[obj.locator], None))
    counts["held_elsewhere"] += len(held)
    held_by.update(held.values())
    rows += [(obj, "skipped", reason) for obj, reason in skipped]
    manifest.write(rows)
    counts["listed"] += len(batch)
    counts["skipped"] += len(skipped)
    counts.update(status for _, status, _ in rows if status != "skipped")
    counts["relabeled"] += len(store.relabeled)


def _as_stored(obj, store):
    """The object under the name it was stored with (a clashing name becomes the locator)."""
    name = store.renamed.get(obj.locator)
    return obj if name is None else replace(obj, name=name)
