"""The `runs` rows of one sharded run, as far as the table can tell them (for `imgvec status`).

The table records a stage run by its stage, source and start, not by task or run id, so:
- the listing is the `list` row started at the time its manifest's name carries (exact);
- the embeds are the `embed` rows whose source is that manifest, in the space: every task's, and
  every rerun's, with no shard to tell them apart;
- the loads are the `load` rows of the work dir started since the listing: the run's tasks', but
  any other load of that work dir meanwhile too.
"""

from __future__ import annotations

import json
import posixpath
import re
from datetime import UTC, datetime

from pipeline.db import connect, resolve_url
from pipeline.settings import Settings
from pipeline.workdir import WorkDir

_LISTED_AT = re.compile(r"^manifest-(\d{8}T\d{12})Z")

RUN_COLUMNS = ("run_id", "stage", "status", "counts", "started_at", "finished_at", "exit_code")
_ROWS = f"""
SELECT r.{", r.".join(RUN_COLUMNS)}, r.error FROM runs r
LEFT JOIN embedding_spaces s ON s.space_id = r.space_id
WHERE (r.stage = 'list' AND r.started_at = $1)
   OR (r.stage = 'embed' AND r.source = $2 AND s.name = $3)
   OR (r.stage = 'load' AND r.source = $4 AND r.started_at >= $1)
ORDER BY r.started_at, r.run_id
"""


def listed_at(manifest: str) -> datetime | None:
    """When a manifest's listing started (its name says, to the microsecond)."""
    match = _LISTED_AT.match(posixpath.basename(manifest))
    if match is None:
        return None
    return datetime.strptime(match.group(1), "%Y%m%dT%H%M%S%f").replace(tzinfo=UTC)


async def run_rows(settings: Settings, work: WorkDir, manifest: str, space: str) -> list[dict]:
    """The run's rows (see the module's note on what each stage's rows can and cannot say)."""
    started = listed_at(manifest)
    if started is None:
        return []
    conn = await connect(
        await resolve_url(settings), timeout=settings.connect_timeout, register_vector=False
    )
    try:
        rows = await conn.fetch(_ROWS, started, work.describe(manifest), space, work.spec)
    finally:
        await conn.close()
    return [
        {
            **{column: row[column] for column in RUN_COLUMNS},
            "counts": json.loads(row["counts"]) if row["counts"] else {},
            "started_at": _iso(row["started_at"]),
            "finished_at": _iso(row["finished_at"]),
            "error": row["error"],
        }
        for row in rows
    ]


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat(timespec="seconds") if moment else None
