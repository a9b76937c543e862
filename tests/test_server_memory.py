"""The embedded server's shared_buffers: a quarter of the memory, within 128MB and 2GB."""

from __future__ import annotations

from pipeline.db import connect
from pipeline.db.server_memory import shared_buffers_for, usable_memory

GB = 1024**3


def test_a_quarter_of_the_memory_within_bounds():
    assert shared_buffers_for(2 * GB) == GB // 2
    assert shared_buffers_for(24 * GB) == 2 * GB  # the daemon shares the machine: 2GB at most
    assert shared_buffers_for(GB // 4) == 128 * 1024**2  # never below PostgreSQL's default


async def test_the_embedded_server_starts_with_it(server_url):
    conn = await connect(server_url, register_vector=False)
    try:
        # pg_settings gives shared_buffers in 8 kB blocks
        blocks = await conn.fetchval(
            "SELECT setting::bigint FROM pg_settings WHERE name = $1", "shared_buffers"
        )
    finally:
        await conn.close()
    assert blocks * 8192 == shared_buffers_for(usable_memory())
