"""Rows of the runs table: one per stage run, opened at its start and closed at its end."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping

import asyncpg

from pipeline import interrupt
from pipeline.errors import ImgvecError


async def start_run(
    conn: asyncpg.Connection,
    stage: str,
    source: str,
    *,
    space_id: int | None = None,
    started_at=None,
) -> int:
    """Open a run on `conn`, the session the stage keeps to its end; close first the runs whose
    session is gone without closing them (their process was killed)."""
    await conn.execute(_CLOSE_ORPHANS)
    return await conn.fetchval(
        """
        INSERT INTO runs (stage, source, space_id, started_at, backend_pid, backend_start)
        SELECT $1, $2, $3, coalesce($4, now()), pid, backend_start
        FROM pg_stat_activity WHERE pid = pg_backend_pid()
        RETURNING run_id
        """,
        stage,
        source,
        space_id,
        started_at,
    )


# A run is orphaned when no session has its backend's pid, or the pid now belongs to a newer
# backend. (A role that may not see other users' backend_start sees NULL there: it never closes
# a live run, only, at worst, leaves a dead one open.)
_CLOSE_ORPHANS = """
UPDATE runs r SET status = 'interrupted', finished_at = now(),
       error = 'its process ended without closing the run (killed, or stopped twice)'
WHERE r.status = 'running' AND r.backend_pid IS NOT NULL
  AND NOT EXISTS (
      SELECT 1 FROM pg_stat_activity a
      WHERE a.pid = r.backend_pid
        AND (a.backend_start IS NULL OR a.backend_start = r.backend_start))
"""


async def finish_run(
    conn: asyncpg.Connection,
    run_id: int,
    counts: Mapping,
    status: str,
    error: BaseException | None = None,
) -> None:
    """Close a run. Best effort: if the connection itself is what failed, the run stays
    'running' with no finish time, which is the truth. A run ended by Ctrl-C or SIGTERM is
    'interrupted', not 'failed': nothing went wrong, and a rerun resumes it."""
    if error is not None and _is_interruption(error):
        status, error = "interrupted", interrupt.Interrupted(interrupt.describe())
    try:
        await conn.execute(
            "UPDATE runs SET finished_at = now(), status = $2, counts = $3::jsonb, error = $4 WHERE run_id = $1",
            run_id,
            status,
            json.dumps(dict(counts)),
            None if error is None else safe_error(error),
        )
    except Exception:
        pass


def _is_interruption(error: BaseException) -> bool:
    return isinstance(error, KeyboardInterrupt | asyncio.CancelledError | interrupt.Interrupted)


def safe_error(err: BaseException) -> str:
    """Our own errors are written for users (and never carry secrets); anything else may carry
    anything, so only its kind is kept."""
    return str(err) if isinstance(err, ImgvecError) else type(err).__name__
