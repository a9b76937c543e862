"""The small error hierarchy every stage raises and the CLI turns into one clear line.

Retryable and permanent errors are different classes: a scheduler may rerun a job that failed
with a `RetryableError` (exit code 75, EX_TEMPFAIL from sysexits.h, which schedulers and mail
systems read as "try again later"); a `PermanentError` needs a person (a wrong password, a missing
bucket) and exits 1.
"""

from __future__ import annotations

import errno

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_FINISHED_WITH_FAILURES = 3
EXIT_TEMPFAIL = 75


class ImgvecError(Exception):
    """Base class: `str(err)` is the one line the user sees; `hint` names the next step."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class PermanentError(ImgvecError):
    """Retrying the same command will fail the same way until something is fixed."""


class RetryableError(ImgvecError):
    """A passing condition (server starting, network blip, quota): rerunning may succeed."""

    exit_code = EXIT_TEMPFAIL


class ItemFailure(Exception):
    """One item (an object to read, an image to embed) failed; the run goes on, and the reason is
    recorded. `permanent`: retrying will not help (not an image, too large); a passing failure (a
    read that timed out) is tried again by the next run."""

    def __init__(self, reason: str, *, permanent: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


class ConfigError(PermanentError):
    """Settings or arguments are wrong or incomplete."""


class UsageError(ConfigError):
    """The command cannot do what was asked, as asked: exit code 2, like a bad option."""

    exit_code = EXIT_USAGE


class DatabaseUnavailable(RetryableError):
    """The database could not be reached in time."""


class DatabaseError(PermanentError):
    """The database answered, but refused (authentication, missing pgvector, too old)."""


class PermissionProblem(DatabaseError):
    """The database refused for lack of a privilege: someone with more rights has a step to take
    (the hint says which, naming the role and the database)."""


def first_line(err: BaseException | str | None, limit: int = 300) -> str:
    """The first line of an error's message (its kind when it has none), at most `limit`
    characters: client libraries put whole URLs, bodies and nested reprs into their messages."""
    text = (err if isinstance(err, str) else str(err or "")).strip()
    line = text.splitlines()[0] if text else type(err).__name__ if err is not None else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


# Errors of the storage, Vertex and database clients that mean "down or busy, not wrong", named by
# (module, class) so that the CLI need not import those clients to recognise them (`imgvec --help`
# stays light). A class matches its subclasses too, through the MRO.
_TRANSIENT_CLASSES = {
    ("builtins", "ConnectionError"),  # refused, reset, aborted, broken pipe
    ("builtins", "TimeoutError"),
    ("socket", "gaierror"),  # a name that does not resolve (DNS down, offline)
    ("google.api_core.exceptions", "TooManyRequests"),  # 429, and ResourceExhausted (gRPC)
    ("google.api_core.exceptions", "InternalServerError"),
    ("google.api_core.exceptions", "BadGateway"),
    ("google.api_core.exceptions", "ServiceUnavailable"),
    ("google.api_core.exceptions", "GatewayTimeout"),  # and DeadlineExceeded
    ("google.api_core.exceptions", "RetryError"),  # google's own retries ran out
    ("google.auth.exceptions", "TransportError"),  # the token endpoint unreachable
    ("requests.exceptions", "ConnectionError"),
    ("requests.exceptions", "Timeout"),
    ("urllib3.exceptions", "NewConnectionError"),
    ("urllib3.exceptions", "MaxRetryError"),
    ("urllib3.exceptions", "ProtocolError"),
    ("botocore.exceptions", "ConnectionError"),  # EndpointConnectionError, ConnectTimeoutError
    ("botocore.exceptions", "HTTPClientError"),  # ReadTimeoutError, ConnectionClosedError
    ("asyncpg.exceptions", "PostgresConnectionError"),  # the connection was lost mid-run
    ("asyncpg.exceptions", "CannotConnectNowError"),
    ("asyncpg.exceptions", "AdminShutdownError"),
    ("asyncpg.exceptions", "CrashShutdownError"),
    ("asyncpg.exceptions", "TooManyConnectionsError"),
    ("tenacity", "RetryError"),  # our own retries ran out: see the last attempt's error
}
_THROTTLING_CODES = {"Throttling", "ThrottlingException", "SlowDown", "RequestLimitExceeded"}


# Network errors the OS reports as a plain OSError (not one of ConnectionError's subclasses).
_TRANSIENT_ERRNOS = {
    errno.ENETDOWN,
    errno.ENETUNREACH,
    errno.EHOSTDOWN,
    errno.EHOSTUNREACH,
    errno.ETIMEDOUT,
}


def is_transient(err: BaseException, depth: int = 0) -> bool:
    if depth > 5:  # a cycle of causes
        return False
    if isinstance(err, BaseExceptionGroup):  # from a task group: retryable if every one is
        return all(is_transient(inner, depth + 1) for inner in err.exceptions)
    names = {(cls.__module__, cls.__name__) for cls in type(err).__mro__}
    if names & _TRANSIENT_CLASSES:
        return True
    if isinstance(err, OSError) and err.errno in _TRANSIENT_ERRNOS:
        return True
    if ("botocore.exceptions", "ClientError") in names:  # S3's "slow down", 5xx
        response = getattr(err, "response", None) or {}
        code = response.get("Error", {}).get("Code", "")
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return code in _THROTTLING_CODES or status in (429, 500, 502, 503, 504)
    # Raised *from* a transient error (an explicit cause, not one merely being handled).
    cause = err.__cause__
    return cause is not None and is_transient(cause, depth + 1)


def exit_code_of(err: BaseException) -> int:
    """The exit code a command that ended with `err` exits with (see pipeline/cli)."""
    from pipeline import interrupt

    if isinstance(err, interrupt.Interrupted):
        return err.exit_code
    if isinstance(err, KeyboardInterrupt):
        return interrupt.exit_code()
    if isinstance(err, ImgvecError):
        return err.exit_code
    return EXIT_TEMPFAIL if is_transient(err) else EXIT_FAILED


INSUFFICIENT_PRIVILEGE = "42501"  # SQLSTATE insufficient_privilege


def privilege_error(err: BaseException, depth: int = 0) -> BaseException | None:
    """The database's "permission denied" behind `err`, if that is what it is: asyncpg's
    InsufficientPrivilegeError, also as SQLAlchemy wraps it (`.orig`, whose cause is asyncpg's).
    Recognised by SQLSTATE and class name, so that nothing here imports a database client."""
    if err is None or depth > 6:
        return None
    names = {cls.__name__ for cls in type(err).__mro__}
    if "InsufficientPrivilegeError" in names or getattr(err, "sqlstate", None) == (
        INSUFFICIENT_PRIVILEGE
    ):
        return err
    for inner in (getattr(err, "orig", None), err.__cause__, err.__context__):
        if isinstance(inner, BaseException) and (found := privilege_error(inner, depth + 1)):
            return found
    return None


def permission_problem(
    err: BaseException, role: str | None = None, database: str | None = None
) -> PermissionProblem:
    """One clear error for a "permission denied", with the step that fixes it. `role` and
    `database` are named when known (never a password: they come from the server)."""
    text = first_line(err, limit=1000)
    who = f"role {role}" if role else "the role imgvec connects as"
    where = f"database {database}" if database else "the database"
    db = database or "DBNAME"
    grantee = _quote_ident(role) if role else "ROLE"
    if 'create extension "vector"' in text:
        return PermissionProblem(
            f"{who} may not create the pgvector extension in {where} ({text})",
            hint=f"a superuser must run, once: psql -d {db} -c 'CREATE EXTENSION vector;' "
            "(on Cloud SQL / AlloyDB: as a cloudsqlsuperuser / alloydbsuperuser member), then "
            "rerun",
        )
    if "permission denied for schema" in text:
        schema = text.split("permission denied for schema", 1)[1].strip().split()[0]
        return PermissionProblem(
            f"{who} may not create tables in schema {schema} of {where} ({text})",
            hint=f"since PostgreSQL 15 only the database owner may create in schema public: as "
            f"its owner or a superuser run: psql -d {db} -c 'GRANT CREATE ON SCHEMA {schema} TO "
            f"{grantee};', or give the role a schema of its own (found first on the default "
            f"search_path): psql -d {db} -c 'CREATE SCHEMA AUTHORIZATION {grantee};'; then rerun",
        )
    if "permission denied to create role" in text:
        return PermissionProblem(
            f"{who} may not create roles ({text})",
            hint="a role with CREATEROLE (or a superuser) must create it first: "
            f"psql -d {db} -c 'CREATE ROLE READER LOGIN;'; then rerun grant-reader, which only "
            "grants (that needs no more than owning imgvec's tables)",
        )
    if "permission denied for table" in text or "must be owner of" in text:
        reader = role or "ROLE"
        return PermissionProblem(
            f"{who} may not use imgvec's tables in {where} ({text})",
            hint="imgvec's tables there belong to another role (psql -d "
            f"{db} -c '\\dt alembic_version' names it): run imgvec as that role, or, for "
            f"read-only use (search, psql), have it run: imgvec db grant-reader {reader}",
        )
    return PermissionProblem(
        f"permission denied to {who} in {where}: {text}",
        hint="ask the database owner or a superuser for the privilege named, then rerun",
    )


def _quote_ident(name: str) -> str:
    return name if name.isidentifier() and name.islower() else '"' + name.replace('"', '""') + '"'
