"""A read-only role for analysts: everything in imgvec's schema can be read and every analyst
function run; nothing can be written (text_queries included: saving texts is `imgvec text-embed`)."""

from __future__ import annotations

import asyncpg


async def grant_reader(conn: asyncpg.Connection, role: str) -> bool:
    """Create `role` (LOGIN, no password: set one with psql's \\password) unless it exists, and grant
    it read access, also to tables created later (new spaces' partitions). True if created."""
    ident = await conn.fetchval("SELECT quote_ident($1)", role)
    database = await conn.fetchval("SELECT quote_ident(current_database())")
    async with conn.transaction():
        created = not await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", role
        )
        if created:
            await conn.execute(f"CREATE ROLE {ident} LOGIN")
        for statement in (
            f"GRANT CONNECT ON DATABASE {database} TO {ident}",
            f"GRANT USAGE ON SCHEMA public TO {ident}",
            f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {ident}",
            f"GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO {ident}",
            # Tables this (owning) role creates later — partitions of new spaces — are readable too.
            f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO {ident}",
        ):
            await conn.execute(statement)
    return created
