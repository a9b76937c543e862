"""The `runs` rows of one sharded run (for `imgvec status`): every row its tasks wrote, each
naming its task — task 0's listing, every task's embeds and loads (reruns too), the last one's index.
"""

from __future__ import annotations

import json
from datetime import datetime

from pipeline.db import open_database
from pipeline.settings import Settings

RUN_COLUMNS = (
    "run_id", "shard", "stage", "status", "counts", "started_at", "finished_at", "exit_code",
)  # fmt: skip
_ROWS = f"""
SELECT r.{", r.".join(RUN_COLUMNS)}, r.error FROM runs r
LEFT JOIN embedding_spaces s ON s.space_id = r.space_id
-- (or its work-dir slug, `run_markers.run_slug`: status finds the newest run by its folder)
WHERE (r.sharded_run = $1 OR regexp_replace(r.sharded_run, '[^A-Za-z0-9._-]+', '_', 'g') = $1)
  AND (r.stage <> 'embed' OR s.name = $2)
ORDER BY r.started_at, r.run_id
"""


async def run_rows(settings: Settings, sharded_run: str, space: str) -> list[dict]:
    """The rows of the sharded run `sharded_run` (its embeds: those into `space`)."""
    # (migrated as for every command: a task may be the first to reach a new database, or an
    # older imgvec made its schema)
    async with open_database(settings) as conn:
        rows = await conn.fetch(_ROWS, sharded_run, space)
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
