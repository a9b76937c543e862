"""The `imgvec` command. Every failure becomes one line on stderr and a non-zero exit code.

Exit codes: 0 done; 1 the stage failed (message says why and what to do); 2 bad usage;
3 finished with failures (some objects recorded in the failures table), or for `db status`:
the embedded server is not running; 75 (EX_TEMPFAIL) a service was down or out of quota: rerun
later, the rerun resumes.
"""

from __future__ import annotations

import errno
import os
import sys
import traceback
from typing import Annotated, NoReturn

import typer

from pipeline import __version__, interrupt
from pipeline.errors import EXIT_FAILED, EXIT_TEMPFAIL, ImgvecError

app = typer.Typer(
    name="imgvec",
    help="Turn a bucket of images into something SQL analysts can search.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"imgvec {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            help="PostgreSQL (>= 15 with pgvector) to use instead of the embedded server. "
            "Default: $DATABASE_URL.",
            show_default=False,
        ),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    overrides = {"database_url": database_url} if database_url else {}
    ctx.obj = LazySettings(overrides)


class LazySettings:
    """The Settings, read on first use: pydantic-settings alone takes ~0.15 s to import, and
    `imgvec --help` or a usage error needs no settings at all."""

    def __init__(self, overrides: dict) -> None:
        self._overrides = overrides
        self._settings = None

    def __getattr__(self, name: str):
        if self._settings is None:
            from pipeline.settings import Settings

            self._settings = Settings(**self._overrides)
        return getattr(self._settings, name)


from pipeline.cli import db as _db  # noqa: E402
from pipeline.cli.embed_cmd import embed_command  # noqa: E402
from pipeline.cli.help import plain_help  # noqa: E402
from pipeline.cli.list_cmd import list_command  # noqa: E402
from pipeline.cli.load_cmd import index_command, load_command, run_command  # noqa: E402
from pipeline.cli.models_cmd import models_command  # noqa: E402
from pipeline.cli.search_cmd import search_command, text_embed_command  # noqa: E402

app.command("list")(list_command)
app.command("embed")(embed_command)
app.command("load")(load_command)
app.command("index")(index_command)
app.command("run")(run_command)
app.command("search")(search_command)
app.command("text-embed")(text_embed_command)
app.command("models")(models_command)
app.add_typer(_db.db_app, name="db")
app.command("psql", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(
    _db.psql
)
plain_help(app)  # last: it rewrites the help of every command registered above


def main() -> None:
    interrupt.install()  # Ctrl-C / SIGTERM: stop cleanly, exit 130 / 143 (pipeline/interrupt.py)
    try:
        app()
    except interrupt.Interrupted as err:
        print(f"imgvec: {err}", file=sys.stderr)
        print(f"imgvec: hint: {err.hint}", file=sys.stderr, flush=True)
        sys.stdout.flush()
        # At once: a normal exit would wait for the batch still in the model, which is dropped.
        os._exit(err.exit_code)
    except ImgvecError as err:
        _fail(str(err), err.hint, err.exit_code)
    except KeyboardInterrupt:
        print(f"imgvec: {interrupt.describe()}; rerun the same command to resume", file=sys.stderr)
        sys.exit(interrupt.exit_code())
    except Exception as err:
        if _is_transient(err):
            # A service or the network that was down (or out of quota) when the job gave up: a
            # scheduler may rerun it later (EX_TEMPFAIL), and the rerun resumes.
            if os.environ.get("IMGVEC_DEBUG"):
                traceback.print_exc()
            shown = _last_attempt(err)
            _fail(
                f"temporarily unavailable: {type(shown).__name__}: {_one_line(shown)}",
                "rerun the same command later; it resumes where it stopped",
                EXIT_TEMPFAIL,
            )
        foreseen = _foreseen(err)
        if foreseen is not None:  # a step for the user, not a bug to report
            if os.environ.get("IMGVEC_DEBUG"):
                traceback.print_exc()
            _fail(str(foreseen), foreseen.hint, foreseen.exit_code)
        if os.environ.get("IMGVEC_DEBUG"):  # a bug or an unforeseen condition: still one line
            raise
        _fail(
            f"unexpected {type(err).__name__}: {_one_line(err)}",
            "rerun with IMGVEC_DEBUG=1 for the traceback, and report it",
            EXIT_FAILED,
        )


# A module of an extra missing from a plain install: (its import name) -> (what, the extra).
_EXTRAS = {
    "PIL": ("Pillow (to read images)", "pip install 'imgvec[clip]' (or just: pip install pillow)"),
    "open_clip": ("open_clip (the clip backend)", "pip install 'imgvec[clip]'"),
    "torch": ("torch (the clip backend)", "pip install 'imgvec[clip]'"),
    "google.cloud.aiplatform": (
        "google-cloud-aiplatform (the vertex backend)",
        "pip install 'imgvec[vertex]'",
    ),
    "boto3": ("boto3 (s3:// sources)", "pip install 'imgvec[s3]'"),
    "botocore": ("boto3 (s3:// sources)", "pip install 'imgvec[s3]'"),
}


def _foreseen(err: BaseException) -> ImgvecError | None:
    """Errors that are not bugs although no stage caught them: a "permission denied" from the
    database, a module of an extra that is not installed. None for anything else."""
    from pipeline.errors import ConfigError, permission_problem, privilege_error

    denied = privilege_error(err)
    if denied is not None:
        return permission_problem(denied)
    missing = err if isinstance(err, ModuleNotFoundError) else None
    missing = missing or (err.__cause__ if isinstance(err.__cause__, ModuleNotFoundError) else None)
    if missing is not None and missing.name:
        for module, (what, install) in _EXTRAS.items():
            if missing.name == module or missing.name.startswith(module + "."):
                return ConfigError(
                    f"{what} is not installed: {missing}", hint=f"{install}, then rerun"
                )
    return None


def _fail(message: str, hint: str | None, exit_code: int) -> NoReturn:
    print(f"imgvec: error: {message}", file=sys.stderr)
    if hint:
        print(f"imgvec: hint: {hint}", file=sys.stderr)
    sys.exit(exit_code)


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


def _is_transient(err: BaseException, depth: int = 0) -> bool:
    if depth > 5:  # a cycle of causes
        return False
    if isinstance(err, BaseExceptionGroup):  # from a task group: retryable if every one is
        return all(_is_transient(inner, depth + 1) for inner in err.exceptions)
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
    return cause is not None and _is_transient(cause, depth + 1)


def _last_attempt(err: BaseException) -> BaseException:
    """The error behind tenacity's RetryError, which says only that retries ran out."""
    last = getattr(err, "last_attempt", None)
    inner = last.exception() if last is not None and hasattr(last, "exception") else None
    return inner if isinstance(inner, BaseException) else err


_MAX_DETAIL = 300  # client libraries put whole URLs and nested reprs into their messages


def _one_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    line = lines[0] if lines else ""
    return line if len(line) <= _MAX_DETAIL else line[: _MAX_DETAIL - 1] + "…"
