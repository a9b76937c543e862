"""One embed run per work dir and space at a time.

Two runs on one work dir would both embed everything (the database stays right, the work is
doubled). The lock is a PostgreSQL session advisory lock rather than a file: it works the same for
a local folder and a gs:// work dir, and it dies with its holder — a killed run's lock is taken
over by the next run with nothing to clean up. The holder names itself in `application_name`, so
the run that finds the lock taken can say who holds it. The key includes the shard, so later
sharded runs lock per shard.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import zlib
from collections.abc import AsyncIterator

from pipeline.errors import RetryableError

# Two-key advisory locks (namespace, key) never meet the one-key (bigint) locks used elsewhere.
WORK_DIR_LOCK_NAMESPACE = 0x696D7764  # "imwd"


class WorkDirBusy(RetryableError):
    """Another run holds the work dir and space."""


def lock_key(work_dir: str, space: str, shard: str = "") -> int:
    return zlib.crc32(f"{work_dir}\0{space}\0{shard}".encode()) & 0x7FFFFFFF


@contextlib.asynccontextmanager
async def work_dir_lock(conn, work_dir: str, space: str, shard: str = "") -> AsyncIterator[None]:
    """Hold the (work dir, space, shard) lock on `conn` for the block, or raise WorkDirBusy."""
    key = lock_key(work_dir, space, shard)
    command = sys.argv[1] if sys.argv[1:2] in (["run"], ["embed"]) else "embed"
    me = f"imgvec {command} on {socket.gethostname()} pid {os.getpid()}"
    await conn.execute("SELECT set_config('application_name', $1, false)", me[:63])
    if not await conn.fetchval("SELECT pg_try_advisory_lock($1, $2)", WORK_DIR_LOCK_NAMESPACE, key):
        holder = await conn.fetchrow(
            """
            SELECT a.application_name, a.backend_start FROM pg_locks l
            JOIN pg_stat_activity a ON a.pid = l.pid
            WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
              AND l.classid = $1 AND l.objid = $2
            """,
            WORK_DIR_LOCK_NAMESPACE,
            key,
        )
        who = (
            f"{holder['application_name'] or 'another imgvec run'} (since "
            f"{holder['backend_start']:%Y-%m-%d %H:%M:%S %Z})"
            if holder
            else "another imgvec run"
        )
        raise WorkDirBusy(
            f"work dir {work_dir} is being embedded for space {space} by {who}",
            hint="wait for that run to finish (or stop it), then rerun; it resumes where it stopped",
        )
    try:
        yield
    finally:
        with contextlib.suppress(Exception):  # a lost connection has released it already
            await conn.execute("SELECT pg_advisory_unlock($1, $2)", WORK_DIR_LOCK_NAMESPACE, key)


async def check_work_dir_free(conn, work_dir: str, space: str, shard: str = "") -> None:
    """Raise WorkDirBusy now if another run holds the lock: `imgvec run` asks before it lists,
    so a second run does not write a manifest into a busy work dir."""
    async with work_dir_lock(conn, work_dir, space, shard):
        pass
