"""The `imgvec` command. Every failure becomes one line on stderr and a non-zero exit code.

Exit codes: 0 done; 1 the stage failed (message says why and what to do); 2 bad usage;
3 finished with failures (some objects recorded in the failures table), or for `db status`:
the embedded server is not running; 75 (EX_TEMPFAIL) a service was down or out of quota: rerun
later, the rerun resumes; 141 the reader of its output went away (`| head`), as for any Unix tool.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from pipeline import __version__, interrupt
from pipeline.errors import EXIT_FAILED, EXIT_TEMPFAIL, ImgvecError, first_line, is_transient

if TYPE_CHECKING:  # (read lazily: see LazySettings)
    from pipeline.settings import Settings

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
        self._settings: Settings | None = None

    def __getattr__(self, name: str):
        if self._settings is None:
            from pipeline.settings import Settings

            self._settings = Settings(**self._overrides)
        return getattr(self._settings, name)


from pipeline.cli import db as _db  # noqa: E402
from pipeline.cli.backend_options import BackendOptionsCommand  # noqa: E402
from pipeline.cli.diverse_cmd import diverse_command  # noqa: E402
from pipeline.cli.embed_cmd import embed_command  # noqa: E402
from pipeline.cli.help import plain_help  # noqa: E402
from pipeline.cli.list_cmd import list_command  # noqa: E402
from pipeline.cli.load_cmd import index_command, load_command  # noqa: E402
from pipeline.cli.models_cmd import models_command  # noqa: E402
from pipeline.cli.run_cmd import run_command  # noqa: E402
from pipeline.cli.search_cmd import search_command, text_embed_command  # noqa: E402
from pipeline.cli.serve_cmd import serve_command  # noqa: E402
from pipeline.cli.status_cmd import status_command  # noqa: E402
from pipeline.cli.thumbnails_cmd import thumbnails_command  # noqa: E402

# The commands that embed take the installed backends' flags (pipeline/cli/backend_options.py).
app.command("list")(list_command)
app.command("embed", cls=BackendOptionsCommand)(embed_command)
app.command("load")(load_command)
app.command("index")(index_command)
app.command("run", cls=BackendOptionsCommand)(run_command)
app.command("search", cls=BackendOptionsCommand)(search_command)
app.command("text-embed", cls=BackendOptionsCommand)(text_embed_command)
app.command("diverse", cls=BackendOptionsCommand)(diverse_command)
app.command("serve", cls=BackendOptionsCommand)(serve_command)
app.command("thumbnails", cls=BackendOptionsCommand)(thumbnails_command)
app.command("status", cls=BackendOptionsCommand)(status_command)
app.command("models")(models_command)
app.add_typer(_db.db_app, name="db")
app.command("psql", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(
    _db.psql
)
plain_help(app)  # last: it rewrites the help of every command registered above


def main() -> None:
    interrupt.install()  # Ctrl-C / SIGTERM: stop cleanly, exit 130 / 143 (pipeline/interrupt.py)
    output = _output_device()
    try:
        app()
    except SystemExit as done:
        # click and rich end a write to a closed pipe (`imgvec models | head -1`) with a silent
        # exit 1, which README's table calls a failure: exit as a Unix tool killed by SIGPIPE.
        if done.code == 1 and isinstance(done.__context__, BrokenPipeError):
            if _reader_gone() or _output_device() != output:
                os._exit(EXIT_PIPE)
        raise
    except interrupt.Interrupted as err:
        print(f"imgvec: {err}", file=sys.stderr)
        print(f"imgvec: hint: {err.hint}", file=sys.stderr, flush=True)
        sys.stdout.flush()
        # At once: a normal exit would wait for the batch still in the model, which is dropped.
        os._exit(err.exit_code)
    except ImgvecError as err:
        # (a plug-in that cannot load for lack of one of our extras: say which to install)
        cause = err.__cause__
        missing = _foreseen(cause) if isinstance(cause, ModuleNotFoundError) else None
        told = missing or err
        _fail(str(told), told.hint, told.exit_code)
    except KeyboardInterrupt:
        print(f"imgvec: {interrupt.describe()}; rerun the same command to resume", file=sys.stderr)
        sys.exit(interrupt.exit_code())
    except Exception as err:
        if is_transient(err):
            # A service or the network that was down (or out of quota) when the job gave up: a
            # scheduler may rerun it later (EX_TEMPFAIL), and the rerun resumes.
            if os.environ.get("IMGVEC_DEBUG"):
                traceback.print_exc()
            shown = _last_attempt(err)
            _fail(
                f"temporarily unavailable: {type(shown).__name__}: {first_line(shown)}",
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
            f"unexpected {type(err).__name__}: {first_line(err)}",
            "rerun with IMGVEC_DEBUG=1 for the traceback, and report it",
            EXIT_FAILED,
        )


EXIT_PIPE = 141  # 128 + SIGPIPE


def _reader_gone() -> bool:
    """Whether stdout (fd 1) is a pipe whose reading end was closed: poll reports an error."""
    import select

    poller = select.poll()
    poller.register(1, select.POLLOUT)
    return any(events & select.POLLERR for _, events in poller.poll(0))


def _output_device() -> tuple[int, int] | None:
    """What fd 1 is: rich, on a broken pipe, points it at /dev/null before it exits."""
    try:
        found = os.fstat(1)
    except OSError:
        return None
    return found.st_dev, found.st_ino


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


def _last_attempt(err: BaseException) -> BaseException:
    """The error behind tenacity's RetryError, which says only that retries ran out."""
    last = getattr(err, "last_attempt", None)
    inner = last.exception() if last is not None and hasattr(last, "exception") else None
    return inner if isinstance(inner, BaseException) else err
