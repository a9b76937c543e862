"""Namespaces of imgvec's advisory locks on one thing of many (a space, later a shard, ...).

PostgreSQL's advisory locks take one bigint key or two int4 keys, and the two forms never meet:
the lock tag carries which form it is (pg_locks shows `objsubid` 1 for a bigint key, 2 for a pair
of int4 keys; see "pg_locks" in the PostgreSQL manual), so `pg_advisory_lock(k)` and
`pg_advisory_lock(a, b)` are different locks whatever the numbers. Locks on one thing of many use
the pair (namespace, id) with a namespace per purpose below: no id can run into another purpose's
key, as "base + space_id" did (the load lock, a bigint, met the spaces lock at space 1804). The
one-key locks (migrations in db/schema.py, SPACES_DDL below) are fixed bigints, so they cannot
collide with these either.
"""

from __future__ import annotations

import asyncpg

# int4 namespaces, four ASCII letters each so that pg_locks' `classid` is recognisable.
LOAD = 0x696D6C64  # "imld": one loader per embedding space; id = space_id

# One-key (bigint) transaction lock, "imgsp": serialises registering spaces (their partition DDL)
# and switching the default space between processes.
SPACES_DDL = 0x696D677370


async def acquire(conn: asyncpg.Connection, namespace: int, key: int) -> None:
    """Wait for the session-level lock (namespace, key)."""
    await conn.execute("SELECT pg_advisory_lock($1::int4, $2::int4)", namespace, key)


async def try_acquire(conn: asyncpg.Connection, namespace: int, key: int) -> bool:
    """Take the session-level lock (namespace, key) if it is free; True if taken."""
    return await conn.fetchval("SELECT pg_try_advisory_lock($1::int4, $2::int4)", namespace, key)


async def release(conn: asyncpg.Connection, namespace: int, key: int) -> None:
    await conn.execute("SELECT pg_advisory_unlock($1::int4, $2::int4)", namespace, key)
