"""A read-only role for analysts: everything in imgvec's schema can be read and every analyst
function run; nothing can be written (text_queries included: saving texts is `imgvec text-embed`)."""

from __future__ import annotations

import asyncpg

from pipeline.errors import PermissionProblem, permission_problem, privilege_error


async def grant_reader(conn: asyncpg.Connection, role: str) -> bool:
    """Create `role` (LOGIN, no password: set one with psql's \\password) unless it exists, and grant
    it read access, also to tables created later (new spaces' partitions). True if created."""
    ident = await conn.fetchval("SELECT quote_ident($1)", role)
    database = await conn.fetchval("SELECT quote_ident(current_database())")
    try:
        return await _grant(conn, role, ident, database)
    except asyncpg.InsufficientPrivilegeError as err:
        me, db = await conn.fetchrow("SELECT current_user, current_database()")
        if "permission denied to create role" in str(err):
            raise PermissionProblem(
                f"role {me} may not create roles, so it cannot create {role}",
                hint=f"a role with CREATEROLE (or a superuser) must create it: psql -d {db} -c "
                f"'CREATE ROLE {ident} LOGIN;' (or give {me} CREATEROLE); then rerun "
                "grant-reader: granting needs no more than owning imgvec's tables",
            ) from err
        raise permission_problem(privilege_error(err) or err, me, db) from err


async def _grant(conn: asyncpg.Connection, role: str, ident: str, database: str) -> bool:
    async with conn.transaction():
        created = not await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", role
        )
        if created:
            await conn.execute(f"CREATE ROLE {ident} LOGIN")
        # imgvec's schema: public, or the role's own schema when it has one ("$user" on the path).
        schema = await conn.fetchval("SELECT quote_ident(current_schema())")
        for statement in (
            f"GRANT CONNECT ON DATABASE {database} TO {ident}",
            f"GRANT USAGE ON SCHEMA {schema} TO {ident}",
            f"GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {ident}",
            f"GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA {schema} TO {ident}",
            # Tables this (owning) role creates later — partitions of new spaces — are readable too.
            f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT SELECT ON TABLES TO {ident}",
        ):
            await conn.execute(statement)
    return created
