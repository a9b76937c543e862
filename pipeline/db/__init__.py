"""Database access: pick the server, make sure the schema is current, hand out connections."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import asyncpg

from pipeline.db.connection import connect, mask_url, resolve_url
from pipeline.db.schema import ensure_schema
from pipeline.errors import DatabaseError
from pipeline.settings import Settings

MIN_SERVER_VERSION = 150000  # PostgreSQL 15: UNIQUE NULLS NOT DISTINCT
MIN_PGVECTOR = (0, 7)


@contextlib.asynccontextmanager
async def open_database(settings: Settings | None = None) -> AsyncIterator[asyncpg.Connection]:
    """A connection to imgvec's database, migrated to the latest schema, pgvector codec on."""
    settings = settings or Settings()
    url = await resolve_url(settings)
    # The codec is registered with the connection, retried as one with it (a server restarting can
    # cut either); on a database not yet migrated there is no vector type to register yet.
    conn = await connect(url, timeout=settings.connect_timeout, register_vector=True)
    try:
        await check_server(conn, url)
        if await ensure_schema(url, conn):
            from pgvector.asyncpg import register_vector

            await register_vector(conn)  # again: the migration may have created the extension
        yield conn
    finally:
        await conn.close()


async def check_server(conn: asyncpg.Connection, url: str) -> None:
    """PostgreSQL >= 15 with pgvector >= 0.7 available, or one clear error."""
    version = await conn.fetchval("SELECT current_setting('server_version_num')::int")
    if version < MIN_SERVER_VERSION:
        raise DatabaseError(
            f"PostgreSQL at {mask_url(url)} is version {version // 10000}; imgvec needs 15 or newer",
        )
    available = await conn.fetchval(
        "SELECT coalesce(installed_version, default_version) FROM pg_available_extensions WHERE name = 'vector'"
    )
    if available is None or _version_tuple(available) < MIN_PGVECTOR:
        found = f"pgvector {available}" if available else "no pgvector"
        raise DatabaseError(
            f"PostgreSQL at {mask_url(url)} has {found}; imgvec needs pgvector 0.7 or newer",
            hint="install pgvector on the server (e.g. the pgvector/pgvector:pg17 image), or unset "
            "DATABASE_URL to use the embedded server",
        )


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".") if part.isdigit())


__all__ = ["open_database", "check_server", "connect", "resolve_url", "mask_url"]
