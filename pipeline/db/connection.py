"""Which database, and how to reach it: DATABASE_URL, or the embedded server started on demand.

Every connection goes through `connect()`, which retries while the server says "not now" (starting,
or in the second after a crash when the postmaster is alive but recovering) and turns everything
else into one clear `ImgvecError` that never contains the password.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import ssl
from urllib.parse import parse_qs, unquote, urlsplit

import asyncpg
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential

from pipeline.db.embedded import EMBEDDED_DATABASE, EmbeddedPostgres
from pipeline.errors import DatabaseError, DatabaseUnavailable, first_line
from pipeline.settings import Settings

# The server is there but cannot take us yet (or cut us off while it resets): worth waiting for.
_NOT_NOW = (
    asyncpg.CannotConnectNowError,  # starting up / shutting down / recovery mode
    asyncpg.TooManyConnectionsError,
    asyncpg.ConnectionDoesNotExistError,  # accepted, then dropped by a postmaster resetting after a crash
    asyncpg.exceptions.CrashShutdownError,  # "terminating connection because of crash of another ..."
    ConnectionResetError,
)
# Nobody answers at the address. On a unix socket that is a local server still starting (the embedded
# one, or one a test restarts): worth waiting for. On a TCP host (a DATABASE_URL) it is a server that
# is down, a wrong host or a firewall: waiting IMGVEC_CONNECT_TIMEOUT for it only delays the error.
_NOBODY_THERE = (
    ConnectionRefusedError,
    FileNotFoundError,  # unix socket not there yet
    TimeoutError,  # (asyncio.TimeoutError is TimeoutError)
)
# One attempt on a TCP host: a reachable server (TLS and SCRAM included) answers well within this; a
# black-holed address (firewall dropping packets) would otherwise hang for the OS's minutes.
_TCP_ATTEMPT_TIMEOUT = 3.0


# URLs are read with urllib rather than SQLAlchemy's make_url, whose import (~0.15 s) every
# command would pay before its first query.


def mask_url(url: str) -> str:
    """The URL with any password (user:PASSWORD@ or ?password=) replaced by ***, for messages."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if parts.password is not None:
            userinfo, _, hostinfo = netloc.rpartition("@")
            netloc = f"{userinfo.split(':', 1)[0]}:***@{hostinfo}"
        query = re.sub(r"(?i)(^|&)(password=)[^&]*", r"\1\2***", parts.query)
        # (Not urlunsplit: it drops the empty host of postgresql:///db?host=/socket/dir.)
        return f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")
    except ValueError:  # not parseable: say nothing of it rather than leak it
        return "<unparseable database URL>"


def _url_parts(url: str) -> tuple[str | None, str | None, dict[str, list[str]]]:
    """(host, port, query) of a libpq-style URL; ValueError when it cannot be read."""
    parts = urlsplit(url)
    port = parts.port  # raises ValueError for a port that is not a number
    host = unquote(parts.hostname) if parts.hostname else None
    return host, None if port is None else str(port), parse_qs(parts.query)


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
    database = settings.database_name
    admin_url, database_url = status.url("postgres"), status.url(database)
    assert admin_url is not None and database_url is not None  # (the server was just started)
    await _ensure_embedded_database(admin_url, settings.connect_timeout, database)
    return database_url


async def connect(
    url: str, *, timeout: float = 15.0, register_vector: bool = True
) -> asyncpg.Connection:
    """A connection with pgvector's codec registered, retried while the server is not ready.

    The connection and the codec registration are retried as one: a server resetting after a crash
    can accept the login and then cut the connection during the registration's first query."""
    on_socket = _is_unix_socket(url)
    worth_waiting = _NOT_NOW + (_NOBODY_THERE if on_socket else ())
    attempt_timeout = min(timeout, 10.0 if on_socket else _TCP_ATTEMPT_TIMEOUT)
    try:
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(worth_waiting),
            stop=stop_after_delay(timeout),
            wait=wait_exponential(multiplier=0.05, max=1.0),
            reraise=True,
        ):
            with attempt:
                conn = await _connect_once(url, attempt_timeout, register_vector)
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
    except (ssl.SSLError, ValueError) as err:
        # A malformed URL, a certificate refused: no rerun helps. (SSLError is an OSError: first.)
        raise DatabaseError(
            f"cannot connect to PostgreSQL at {mask_url(url)}: {_describe(err)}",
            hint="check DATABASE_URL",
        ) from None
    except (*_NOT_NOW, *_NOBODY_THERE, OSError) as err:  # OSError: DNS, unreachable network, ...
        raise DatabaseUnavailable(
            f"cannot reach PostgreSQL at {_where(url)}: {_cause(err, attempt_timeout)}",
            hint=f"is the server running and reachable from here? ({mask_url(url)}; "
            "`imgvec db status` for the embedded one); rerun when it is",
        ) from None
    except asyncpg.PostgresError as err:
        raise DatabaseUnavailable(
            f"cannot connect to PostgreSQL at {mask_url(url)}: {_describe(err)}",
            hint="check DATABASE_URL; rerun when the server accepts connections",
        ) from None
    return conn


async def _connect_once(url: str, timeout: float, register_vector: bool) -> asyncpg.Connection:
    """Connect and register the codec, or leave nothing open."""
    conn = await asyncpg.connect(url, timeout=timeout)
    try:
        if register_vector:
            await prepare_session(conn)
    except BaseException:
        conn.terminate()  # half-made: a server cutting us off may not answer a polite close
        raise
    return conn


async def prepare_session(conn: asyncpg.Connection) -> None:
    """What every imgvec connection needs: pgvector's codec, and iterative index scans.

    Searches filter the index's candidates (deleted objects, the query's own images, --where):
    with iterative scans (pgvector >= 0.8) the index reads on until k rows pass. relaxed_order
    keeps the near rows found late, which strict_order drops: better recall at the same cost
    (sql/README.md); the searches put the rows back in order. Set once for the session rather
    than per search: a SET LOCAL needs a transaction, four round trips per search where the
    search itself is one (bench_serve)."""
    from pgvector.asyncpg import register_vector

    try:
        await register_vector(conn)
    except ValueError:
        # The extension does not exist yet (a fresh database before its first migration).
        return
    from pipeline.db import ITERATIVE_SCANS, version_tuple  # (pipeline.db imports this module)

    version = await conn.fetchval("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
    if version is not None and version_tuple(version) >= ITERATIVE_SCANS:
        await conn.execute("SET hnsw.iterative_scan = relaxed_order")


def _is_unix_socket(url: str) -> bool:
    """Whether the URL reaches its server by a unix socket (as libpq decides: a host starting with
    '/', or no host at all, which asyncpg tries as the default socket directories first)."""
    host = _host(url)
    return host is None or host.startswith("/")


def _host(url: str) -> str | None:
    try:
        host, _, query = _url_parts(url)
    except ValueError:
        return None
    found = host or next(iter(query.get("host") or []), None) or os.environ.get("PGHOST")
    return found or None  # (?host=a&host=b: the first)


def _where(url: str) -> str:
    """Where the connection went, for the message: host and port, or the socket's folder."""
    try:
        _, port, query = _url_parts(url)
    except ValueError:
        return mask_url(url)
    host = _host(url)
    port = port or next(iter(query.get("port") or []), None) or os.environ.get("PGPORT") or "5432"
    if host is None:
        return f"the default socket directory, port {port}"
    if host.startswith("/"):
        return f"socket {host}/.s.PGSQL.{port}"
    return f"host {host}:{port}"


def _cause(err: BaseException, attempt_timeout: float) -> str:
    """The reason in a few words, not the errno and address dump of the exception's text."""
    if isinstance(err, ConnectionRefusedError):
        return "connection refused (nothing listens there)"
    if isinstance(err, FileNotFoundError):
        return "no socket there (server not running)"
    if isinstance(err, socket.gaierror):
        return f"name does not resolve ({err.strerror})"
    if isinstance(err, TimeoutError):
        return f"timed out after {attempt_timeout:g} s"
    return _describe(err)


async def _ensure_embedded_database(
    admin_url: str | None, timeout: float, database: str = EMBEDDED_DATABASE
) -> None:
    """The embedded server keeps imgvec's tables in their own database, created on first use."""
    assert admin_url is not None
    conn = await connect(admin_url, timeout=timeout, register_vector=False)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database)
        if not exists:
            with contextlib.suppress(asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError):
                ident = '"' + database.replace('"', '""') + '"'
                await conn.execute(f"CREATE DATABASE {ident}")
    finally:
        await conn.close()


def _describe(err: BaseException) -> str:
    return first_line(err)
