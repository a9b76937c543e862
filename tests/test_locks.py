"""Advisory locks: the load lock of a space never meets another purpose's lock."""

from __future__ import annotations

import asyncio

import asyncpg

from pipeline.db import locks
from pipeline.loading.space_loader import space_load_lock

# The space whose load lock was the spaces lock when the load lock was "base + space_id".
SPACE_1804 = 1804


async def test_load_lock_of_space_1804_does_not_block_the_spaces_lock(server_url):
    ddl = await asyncpg.connect(server_url)
    loader = await asyncpg.connect(server_url)
    try:
        async with ddl.transaction():
            await ddl.execute("SELECT pg_advisory_xact_lock($1)", locks.SPACES_DDL)  # as spaces.py
            async with asyncio.timeout(5):  # blocked before: the same key
                async with space_load_lock(loader, SPACE_1804):
                    held = await ddl.fetchval(
                        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                        "AND pid = $1",
                        await loader.fetchval("SELECT pg_backend_pid()"),
                    )
        assert held == 1
        # Released when the load ends: a second loader gets it.
        assert await locks.try_acquire(ddl, locks.LOAD, SPACE_1804)
        await locks.release(ddl, locks.LOAD, SPACE_1804)
    finally:
        await ddl.close()
        await loader.close()


async def test_load_lock_still_serialises_loaders_of_one_space(server_url):
    first = await asyncpg.connect(server_url)
    second = await asyncpg.connect(server_url)
    try:
        async with space_load_lock(first, 7):
            assert not await locks.try_acquire(second, locks.LOAD, 7)
            assert await locks.try_acquire(second, locks.LOAD, 8)  # another space loads in parallel
            await locks.release(second, locks.LOAD, 8)
    finally:
        await first.close()
        await second.close()


async def test_two_key_locks_live_apart_from_one_key_locks(server_url):
    """The claim the namespaces rest on: a bigint key made of the same 64 bits as the pair
    (namespace, id) is another lock (pg_locks: objsubid 1 against 2)."""
    one_key = await asyncpg.connect(server_url)
    two_keys = await asyncpg.connect(server_url)
    try:
        same_bits = (locks.LOAD << 32) | SPACE_1804
        await one_key.execute("SELECT pg_advisory_lock($1)", same_bits)
        assert await locks.try_acquire(two_keys, locks.LOAD, SPACE_1804)
        rows = await one_key.fetch(
            "SELECT classid::bigint, objid::bigint, objsubid FROM pg_locks "
            "WHERE locktype = 'advisory' ORDER BY objsubid"
        )
        mine = [tuple(r) for r in rows if (r[0], r[1]) == (locks.LOAD, SPACE_1804)]
        assert mine == [(locks.LOAD, SPACE_1804, 1), (locks.LOAD, SPACE_1804, 2)]
    finally:
        await one_key.close()
        await two_keys.close()
