"""Which database, and how to reach it: DATABASE_URL, or the embedded server started on demand.

Every connection goes through `connect()`, which retries while the server says "not now" (starting,
or in the second after a crash when the postmaster is alive but recovering) and turns everything
else into one clear `ImgvecError` that never contains the password.
"""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg
from sqlalchemy.engine import make_url
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential

from pipeline.db.embedded import EMBEDDED_DATABASE, EmbeddedPostgres
from pipeline.errors import DatabaseError, DatabaseUnavailable
from pipeline.settings import Settings

# The server is there but cannot take us yet; anything else is reported at once.
_NOT_NOW = (
    asyncpg.CannotConnectNowError,  # starting up / shutting down / recovery mode
    asyncpg.TooManyConnectionsError,
    asyncpg.ConnectionDoesNotExistError,  # accepted, then dropped by a postmaster resetting after a crash
    ConnectionRefusedError,
    ConnectionResetError,
    FileNotFoundError,  # unix socket not there yet
    asyncio.TimeoutError,
)


def mask_url(url: str) -> str:
    """The URL with any password replaced by ***, for logs and messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not parseable: say nothing of it rather than leak it
        return "<unparseable database URL>"


async def resolve_url(settings: Settings) -> str:
    """The URL imgvec uses: DATABASE_URL, else the embedded server, started if it is not running."""
    if settings.database_url is not None:
        url = settings.database_url.get_secret_value()
        # SQLAlchemy-style (postgresql+asyncpg://) and Heroku-style (postgres://) URLs work too.
        scheme, sep, rest = url.partition("://")
        if sep and (scheme.startswith("postgresql+") or scheme == "postgres"):
            url = "postgresql://" + rest
        return url
    status = await asyncio.to_thread(EmbeddedPostgres(settings.pgdata).start)
    await _ensure_embedded_database(status.url("postgres"), settings.connect_timeout)
    url = status.url()
    assert url is not None
    return url


async def connect(
    url: str, *, timeout: float = 15.0, register_vector: bool = True
) -> asyncpg.Connection:
    """A connection, retried while the server is not ready; pgvector's codec registered."""
    try:
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(_NOT_NOW),
            stop=stop_after_delay(timeout),
            wait=wait_exponential(multiplier=0.05, max=1.0),
            reraise=True,
        ):
            with attempt:
                conn = await asyncpg.connect(url, timeout=min(timeout, 10.0))
    except _NOT_NOW as err:
        raise DatabaseUnavailable(
            f"cannot reach PostgreSQL at {mask_url(url)}: {_describe(err)}",
            hint="is the server running? check DATABASE_URL, or `imgvec db status` for the embedded one",
        ) from None
    except (asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError) as err:
        raise DatabaseError(
            f"PostgreSQL at {mask_url(url)} refused the login: {_describe(err)}",
            hint="check the user and password in DATABASE_URL",
        ) from None
    except asyncpg.InvalidCatalogNameError as err:
        raise DatabaseError(
            f"PostgreSQL at {mask_url(url)}: {_describe(err)}",
            hint="create the database first, or point DATABASE_URL at an existing one",
        ) from None
    except (OSError, asyncpg.PostgresError, ValueError) as err:
        raise DatabaseUnavailable(
            f"cannot connect to PostgreSQL at {mask_url(url)}: {_describe(err)}",
            hint="check DATABASE_URL",
        ) from None
    if register_vector:
        from pgvector.asyncpg import register_vector as _register

        try:
            await _register(conn)
        except ValueError:
            # The extension does not exist yet (a fresh database before its first migration).
            pass
    return conn


async def _ensure_embedded_database(admin_url: str | None, timeout: float) -> None:
    """The embedded server keeps imgvec's tables in their own database, created on first use."""
    assert admin_url is not None
    conn = await connect(admin_url, timeout=timeout, register_vector=False)
    try:
        exists = await conn.fetchval(
            "SELECT 1 FROM pg_database WHERE datname = $1", EMBEDDED_DATABASE
        )
        if not exists:
            with contextlib.suppress(asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError):
                await conn.execute(f'CREATE DATABASE "{EMBEDDED_DATABASE}"')
    finally:
        await conn.close()


def _describe(err: BaseException) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return text or type(err).__name__
