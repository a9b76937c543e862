"""Rows of the runs table: one per stage run, opened at its start and closed at its end."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import asyncpg

from pipeline import interrupt
from pipeline.core.shards import Shard
from pipeline.errors import EXIT_FINISHED_WITH_FAILURES, ImgvecError, exit_code_of, first_line


async def start_run(
    conn: asyncpg.Connection,
    stage: str,
    source: str,
    *,
    space_id: int | None = None,
    started_at=None,
    task: RunTask | None = None,
) -> int:
    """Open a run on `conn`, the session the stage keeps to its end; close first the runs whose
    session is gone without closing them (their process was killed)."""
    await conn.execute(_CLOSE_ORPHANS)
    task = task or RunTask()
    return await conn.fetchval(
        """
        INSERT INTO runs (stage, source, space_id, started_at, backend_pid, backend_start,
                          sharded_run, shard)
        SELECT $1, $2, $3, coalesce($4, now()), pid, backend_start, $5, $6
        FROM pg_stat_activity WHERE pid = pg_backend_pid()
        RETURNING run_id
        """,
        stage,
        source,
        space_id,
        started_at,
        task.sharded_run,
        str(task.shard) if task.shard else None,
    )


@dataclass(frozen=True)
class RunTask:
    """Which task of a sharded run a stage runs for (both None: an unsharded run; a shard alone:
    `imgvec embed --shard I/N` run by hand). Written to the row's `sharded_run` and `shard`."""

    sharded_run: str | None = None
    shard: Shard | None = None


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


@dataclass
class Run:
    """A run being tracked: its row's id and the counts the stage keeps as it goes."""

    run_id: int
    counts: Counter = field(default_factory=Counter)
    status: str = "running"
    exit_code: int | None = None


@contextlib.asynccontextmanager
async def tracked_run(
    conn: asyncpg.Connection,
    stage: str,
    source: str,
    *,
    space_id: int | None = None,
    started_at=None,
    task: RunTask | None = None,
) -> AsyncIterator[Run]:
    """The one run lifecycle: open the `runs` row, let the block count into `run.counts`, then
    close it as succeeded (or partial, when something was counted as failed), interrupted (a
    signal) or failed with the first line of the error, with the exit code the command ends
    with. The error is re-raised: the CLI turns it into its message and that same exit code."""
    run = Run(
        await start_run(conn, stage, source, space_id=space_id, started_at=started_at, task=task)
    )
    try:
        yield run
    except BaseException as err:
        await _finish(conn, run, err)
        raise
    await _finish(conn, run, None)


async def _finish(conn: asyncpg.Connection, run: Run, error: BaseException | None) -> None:
    """Close a run. Best effort: if the connection itself is what failed, the run stays
    'running' with no finish time, which is the truth (the next run closes it as interrupted).
    A run ended by Ctrl-C or SIGTERM is 'interrupted', not 'failed': nothing went wrong, and a
    rerun resumes it."""
    if error is None:
        failed = run.counts["failed"]
        run.status = "partial" if failed else "succeeded"
        run.exit_code = EXIT_FINISHED_WITH_FAILURES if failed else 0
        text = None
    elif _is_interruption(error):
        run.status, run.exit_code = "interrupted", exit_code_of(error)
        text = interrupt.describe()
    else:
        run.status, run.exit_code = "failed", exit_code_of(error)
        text = safe_error(error)
    try:
        await conn.execute(
            "UPDATE runs SET finished_at = now(), status = $2, counts = $3::jsonb, error = $4, "
            "exit_code = $5 WHERE run_id = $1",
            run.run_id,
            run.status,
            json.dumps(dict(run.counts)),
            text,
            run.exit_code,
        )
    except Exception:
        pass


def _is_interruption(error: BaseException) -> bool:
    return isinstance(error, KeyboardInterrupt | asyncio.CancelledError | interrupt.Interrupted)


def safe_error(err: BaseException) -> str:
    """Our own errors are written for users (and never carry secrets): their first line; anything
    else may carry anything, so only its kind is kept."""
    return first_line(err, limit=1000) if isinstance(err, ImgvecError) else type(err).__name__
