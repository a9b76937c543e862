"""Database access: pick the server, make sure the schema is current, hand out connections."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg

from pipeline.db.connection import connect, mask_url, resolve_url
from pipeline.db.schema import ensure_schema
from pipeline.errors import DatabaseError, permission_problem, privilege_error
from pipeline.settings import Settings

MIN_SERVER_VERSION = 150000  # PostgreSQL 15: UNIQUE NULLS NOT DISTINCT
# What the schema uses: the `vector` type and HNSW indexes (pgvector 0.5.0). Newer features are
# checked where they are used: iterative index scans (0.8.0) by `imgvec search`, similar_images()
# and sql/filtered_search.sql, which do without them (with a note) on an older extension.
MIN_PGVECTOR = (0, 5)
ITERATIVE_SCANS = (0, 8)

GET_PGVECTOR = (
    "Debian/Ubuntu: PostgreSQL's own apt repository (PGDG, apt.postgresql.org) has "
    "postgresql-NN-pgvector (Debian 12 itself ships none); Cloud SQL and AlloyDB support "
    "CREATE EXTENSION vector; docker: the pgvector/pgvector:pg17 image; or unset DATABASE_URL "
    "to use the embedded server"
)


@dataclass(frozen=True)
class Pgvector:
    """The database's pgvector: `installed` (its extension, None if not created yet) and
    `available` (the newest the server offers, None if none)."""

    installed: str | None
    available: str | None

    @property
    def version(self) -> str | None:
        """The version imgvec will use: the installed one, or the one CREATE EXTENSION would get."""
        return self.installed or self.available

    @property
    def update_available(self) -> bool:
        return (
            self.installed is not None
            and self.available is not None
            and version_tuple(self.available) > version_tuple(self.installed)
        )

    @property
    def iterative_scans(self) -> bool:
        return self.version is not None and version_tuple(self.version) >= ITERATIVE_SCANS

    def problem(self, database: str) -> tuple[str, str] | None:
        """(what is wrong, what to do) when imgvec cannot use this pgvector, else None."""
        minimum = ".".join(map(str, MIN_PGVECTOR))
        if self.installed and version_tuple(self.installed) < MIN_PGVECTOR:
            if self.available and version_tuple(self.available) >= MIN_PGVECTOR:
                return (
                    f"database {database} has pgvector {self.installed} installed; imgvec needs "
                    f"{minimum} or newer, and the server offers {self.available}",
                    f"update the extension, as its owner or a superuser: psql -d {database} -c "
                    "'ALTER EXTENSION vector UPDATE;'",
                )
            return (
                f"database {database} has pgvector {self.installed}; imgvec needs {minimum} or "
                "newer, and the server offers no newer one",
                f"install a newer pgvector on the server ({GET_PGVECTOR}), then: psql -d "
                f"{database} -c 'ALTER EXTENSION vector UPDATE;'",
            )
        if self.installed is None and self.available is None:
            return (
                "the server has no pgvector",
                f"install pgvector on the server ({GET_PGVECTOR})",
            )
        if (
            self.installed is None
            and self.available is not None
            and version_tuple(self.available) < MIN_PGVECTOR
        ):
            return (
                f"the server offers pgvector {self.available}; imgvec needs {minimum} or newer",
                f"install a newer pgvector on the server ({GET_PGVECTOR})",
            )
        return None

    def notes(self, database: str) -> list[str]:
        """What works less well than it could, and the step that fixes it."""
        found: list[str] = []
        if self.version and not self.iterative_scans:
            found.append(
                f"pgvector {self.version} has no iterative index scans (0.8): filtered searches "
                "(imgvec search on a source, similar_images(), sql/filtered_search.sql) may "
                "return fewer than k rows"
            )
        if self.update_available:
            found.append(
                f"the server offers pgvector {self.available}: psql -d {database} -c 'ALTER "
                "EXTENSION vector UPDATE;' (as the extension's owner or a superuser) updates it"
            )
        return found


async def pgvector_of(conn: asyncpg.Connection) -> Pgvector:
    row = await conn.fetchrow(
        "SELECT installed_version, default_version FROM pg_available_extensions "
        "WHERE name = 'vector'"
    )
    # The newest version the server has scripts for (the default_version may lag behind).
    versions = await conn.fetch(
        "SELECT version FROM pg_available_extension_versions WHERE name = 'vector'"
    )
    candidates = [r["version"] for r in versions] + [row["default_version"] if row else None]
    newest = max((v for v in candidates if v), key=version_tuple, default=None)
    return Pgvector(installed=row["installed_version"] if row else None, available=newest)


@contextlib.asynccontextmanager
async def open_database(settings: Settings | None = None) -> AsyncIterator[asyncpg.Connection]:
    """A connection to imgvec's database, migrated to the latest schema, pgvector codec on."""
    settings = settings or Settings()
    url = await resolve_url(settings)
    # The codec is registered with the connection, retried as one with it (a server restarting can
    # cut either); on a database not yet migrated there is no vector type to register yet.
    conn = await connect(url, timeout=settings.connect_timeout, register_vector=True)
    try:
        pgvector = await check_server(conn, url)
        try:
            migrated = await ensure_schema(url, conn)
        except Exception as err:
            await raise_if_permission_denied(conn, err)
            raise
        if migrated:
            from pgvector.asyncpg import register_vector

            await register_vector(conn)  # again: the migration may have created the extension
            pgvector = await pgvector_of(conn)
        await pin_iterative_scans(conn, pgvector)
        yield conn
    finally:
        await conn.close()


SIMILAR_IMAGES = "similar_images(text, integer, integer, jsonb)"


async def pin_iterative_scans(conn: asyncpg.Connection, pgvector: Pgvector) -> bool:
    """similar_images() reads the index on until k rows pass its filters with pgvector >= 0.8
    (migrations 0006 and 0010 pin hnsw.iterative_scan on it). A database migrated on an older extension
    and updated since (ALTER EXTENSION vector UPDATE) gets the pin here, by the function's owner.
    True when it pinned."""
    if pgvector.installed is None or version_tuple(pgvector.installed) < ITERATIVE_SCANS:
        return False
    row = await conn.fetchrow(
        "SELECT proconfig, pg_has_role(proowner, 'USAGE') AS mine FROM pg_proc "
        "WHERE oid = to_regprocedure($1)",
        SIMILAR_IMAGES,
    )
    if row is None or not row["mine"]:
        return False
    if any(entry.startswith("hnsw.iterative_scan=") for entry in row["proconfig"] or ()):
        return False
    try:
        await conn.execute(
            f"ALTER FUNCTION {SIMILAR_IMAGES} SET hnsw.iterative_scan = strict_order"
        )
    except asyncpg.PostgresError:  # another process pinning at the same moment: it is done
        return False
    return True


async def raise_if_permission_denied(conn: asyncpg.Connection, err: BaseException) -> None:
    """Raise the clear PermissionProblem for `err` when it is a "permission denied" (naming the
    role and the database it was refused in); return otherwise."""
    denied = privilege_error(err)
    if denied is None:
        return
    try:
        role, database = await conn.fetchrow("SELECT current_user, current_database()")
    except Exception:  # the connection went with the error: say it without the names
        role = database = None
    raise permission_problem(denied, role, database) from err


async def check_server(conn: asyncpg.Connection, url: str) -> Pgvector:
    """PostgreSQL >= 15 with a pgvector imgvec can use, or one clear error."""
    version = await conn.fetchval("SELECT current_setting('server_version_num')::int")
    if version < MIN_SERVER_VERSION:
        raise DatabaseError(
            f"PostgreSQL at {mask_url(url)} is version {version // 10000}; imgvec needs 15 or newer",
        )
    pgvector = await pgvector_of(conn)
    problem = pgvector.problem(await conn.fetchval("SELECT current_database()"))
    if problem is not None:
        message, hint = problem
        raise DatabaseError(f"PostgreSQL at {mask_url(url)}: {message}", hint=hint)
    return pgvector


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".") if part.isdigit())


__all__ = [
    "open_database",
    "check_server",
    "connect",
    "resolve_url",
    "mask_url",
    "pgvector_of",
    "Pgvector",
]
