"""The `imgvec` command. Every failure becomes one line on stderr and a non-zero exit code.

Exit codes: 0 done; 1 the stage failed (message says why and what to do); 2 bad usage;
3 finished with failures (some objects recorded in the failures table), or for `db status`:
the embedded server is not running.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from pipeline import __version__
from pipeline.errors import ImgvecError
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
    ctx.obj = Settings(**overrides)


from pipeline.cli import db as _db  # noqa: E402
from pipeline.cli.embed_cmd import embed_command  # noqa: E402
from pipeline.cli.list_cmd import list_command  # noqa: E402
from pipeline.cli.load_cmd import index_command, load_command, run_command  # noqa: E402
from pipeline.cli.search_cmd import search_command, text_embed_command  # noqa: E402

app.command("list")(list_command)
app.command("embed")(embed_command)
app.command("load")(load_command)
app.command("index")(index_command)
app.command("run")(run_command)
app.command("search")(search_command)
app.command("text-embed")(text_embed_command)
app.add_typer(_db.db_app, name="db")
app.command("psql", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(
    _db.psql
)


def main() -> None:
    try:
        app()
    except ImgvecError as err:
        print(f"imgvec: error: {err}", file=sys.stderr)
        if err.hint:
            print(f"imgvec: hint: {err.hint}", file=sys.stderr)
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        print("imgvec: interrupted; rerun the same command to resume", file=sys.stderr)
        sys.exit(130)
    except Exception as err:  # a bug or an unforeseen condition: still one line, no traceback
        if os.environ.get("IMGVEC_DEBUG"):
            raise
        print(f"imgvec: error: unexpected {type(err).__name__}: {_one_line(err)}", file=sys.stderr)
        print(
            "imgvec: hint: rerun with IMGVEC_DEBUG=1 for the traceback, and report it",
            file=sys.stderr,
        )
        sys.exit(1)


def _one_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else ""
