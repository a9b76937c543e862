"""The objects table side of a listing: batches go in through COPY into a staging table, then one
upsert; the status of each object (new / changed / unchanged) comes from comparing with its row.
Attributes are not content: an unchanged object whose attributes differ is only relabeled."""

from __future__ import annotations

import json

import asyncpg

from pipeline.core.objects import OBJECT_COLUMNS, ObjectInfo

_STAGING = "listing_batch"

# "Changed" means the bytes differ: by content hash where both sides know it, else by the store's
# generation / etag / size (a GCS composite object has no MD5, say).
_STATUS_SQL = f"""
SELECT b.locator,
       CASE
         WHEN o.object_id IS NULL OR o.deleted_at IS NOT NULL THEN 'new'
         WHEN CASE WHEN o.content_hash IS NOT NULL AND b.content_hash IS NOT NULL
                   THEN o.content_hash <> b.content_hash
                   ELSE (o.generation, o.etag, o.size) IS DISTINCT FROM (b.generation, b.etag, b.size)
              END THEN 'changed'
         ELSE 'unchanged'
       END AS status,
       o.attributes IS DISTINCT FROM b.attributes AS attributes_differ
FROM {_STAGING} b LEFT JOIN objects o ON o.locator = b.locator
"""

_COLUMNS = ", ".join(OBJECT_COLUMNS)
_UPDATES = ", ".join(f"{c} = EXCLUDED.{c}" for c in OBJECT_COLUMNS if c != "locator")
_UPSERT_SQL = f"""
INSERT INTO objects ({_COLUMNS}, source_id, first_seen, last_seen)
SELECT DISTINCT ON (locator) {_COLUMNS}, $2::integer, $1::timestamptz, $1::timestamptz FROM {_STAGING}
ON CONFLICT (locator) DO UPDATE SET {_UPDATES}, source_id = EXCLUDED.source_id,
    last_seen = EXCLUDED.last_seen, deleted_at = NULL
-- (never another source's live object unless taking over: one committed by a listing running
-- beside this one, after this one's check, stays where it is)
WHERE $3 OR objects.source_id = EXCLUDED.source_id OR objects.deleted_at IS NOT NULL
"""

# A live name is unique within a source (one name, one image). Below a prefix that holds by
# construction; a file of locators can name two files x.jpg in different folders or buckets: the
# one that did not have the name first is named by its full locator instead.
_RENAME_CLASHES_SQL = f"""
UPDATE {_STAGING} b SET name = b.locator
WHERE EXISTS (SELECT 1 FROM objects o
              WHERE o.source_id = $1 AND o.name = b.name AND o.deleted_at IS NULL
                AND o.locator <> b.locator)
   OR EXISTS (SELECT 1 FROM {_STAGING} first
              WHERE first.name = b.name AND first.locator < b.locator)
RETURNING b.locator, b.name
"""

_DELETE_SQL = f"""
UPDATE objects SET deleted_at = $2
WHERE starts_with(locator, $1) AND last_seen < $2 AND deleted_at IS NULL AND source_id = $3
RETURNING {_COLUMNS}
"""


# Objects of this batch that another source holds (live) leave the batch: each object belongs to
# one source, and moving it here would rename it and replace its attributes (and that source's
# next listing would move it back).
_HELD_ELSEWHERE_SQL = f"""
DELETE FROM {_STAGING} b USING objects o JOIN sources s USING (source_id)
WHERE o.locator = b.locator AND o.source_id <> $1 AND o.deleted_at IS NULL
RETURNING b.locator, s.root
"""


class ObjectStore:
    """Use inside one transaction: an interrupted listing then changes nothing at all."""

    def __init__(
        self,
        conn: asyncpg.Connection,
        listed_at,
        source_id: int,
        *,
        names_may_clash: bool,
        take_over: bool = False,
    ) -> None:
        self.conn = conn
        self.take_over = take_over
        self.listed_at = listed_at
        self.source_id = source_id
        self.names_may_clash = names_may_clash
        #: locator -> name, for the last batch's objects whose name was taken (see _RENAME_CLASHES_SQL)
        self.renamed: dict[str, str] = {}
        #: the last batch's unchanged objects whose attributes are new
        self.relabeled: set[str] = set()
        #: locator -> the root of the source that holds it, for the last batch's objects another
        #: source holds (left out of the listing unless `take_over`)
        self.held_elsewhere: dict[str, str] = {}
        self._staging_ready = False

    async def upsert(self, batch: list[ObjectInfo]) -> dict[str, str]:
        """Record a batch as seen now; returns locator -> new / changed / unchanged."""
        if not self._staging_ready:
            await self.conn.execute(
                f"CREATE TEMP TABLE {_STAGING} ON COMMIT DROP AS SELECT {_COLUMNS} FROM objects WITH NO DATA"
            )
            self._staging_ready = True
        else:
            await self.conn.execute(f"TRUNCATE {_STAGING}")
        await self.conn.copy_records_to_table(
            _STAGING,
            records=[_record(o) for o in batch],
            columns=OBJECT_COLUMNS,
        )
        if not self.take_over:
            self.held_elsewhere = dict(await self.conn.fetch(_HELD_ELSEWHERE_SQL, self.source_id))
        if self.names_may_clash:
            self.renamed = dict(await self.conn.fetch(_RENAME_CLASHES_SQL, self.source_id))
        rows = await self.conn.fetch(_STATUS_SQL)
        self.relabeled = {
            r["locator"] for r in rows if r["status"] == "unchanged" and r["attributes_differ"]
        }
        await self.conn.execute(_UPSERT_SQL, self.listed_at, self.source_id, self.take_over)
        return {r["locator"]: r["status"] for r in rows}

    async def mark_deleted(self, root: str) -> list[ObjectInfo]:
        """Objects below the listed root this listing did not see: marked deleted (their vectors
        stay)."""
        # (this source's only: another's objects below this root were left out, not unseen)
        rows = await self.conn.fetch(_DELETE_SQL, root, self.listed_at, self.source_id)
        return [
            # (no attributes, {} in the table, are None as in a listing)
            ObjectInfo(**(dict(row) | {"attributes": json.loads(row["attributes"]) or None}))
            for row in rows
        ]


def _record(obj: ObjectInfo) -> tuple:
    """The object as a staging row: its attributes as jsonb text, none being {}."""
    values = {c: getattr(obj, c) for c in OBJECT_COLUMNS}
    values["attributes"] = json.dumps(obj.attributes or {})
    return tuple(values.values())
