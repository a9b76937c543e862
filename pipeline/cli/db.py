"""`imgvec db start|stop|url|upgrade|downgrade|default-source|grant-reader` and `imgvec psql`;
`imgvec db status` is in pipeline.cli.db_status."""

from __future__ import annotations

import asyncio
import os
import shutil
from typing import TYPE_CHECKING, Annotated

import typer

from pipeline.cli.db_status import status
from pipeline.errors import ConfigError, UsageError

# The database modules (asyncpg, SQLAlchemy, Alembic) are imported inside the commands that use
# them: together they take ~0.5 s, which `imgvec --help` and every other command would pay.
if TYPE_CHECKING:
    from pipeline.settings import Settings

db_app = typer.Typer(
    help="Manage imgvec's database (embedded unless DATABASE_URL is set).", no_args_is_help=True
)


class EmbeddedServerIsPrivate(UsageError):
    """A command meant for a shared server was run against the embedded one."""


@db_app.command()
def start(ctx: typer.Context) -> None:
    """Start the embedded PostgreSQL (if needed) and bring the schema up to date.

    Example: imgvec db start
    """
    settings: Settings = ctx.obj
    revision = asyncio.run(_migrated_revision(settings))
    where = "DATABASE_URL" if not settings.embedded else f"embedded, data in {settings.pgdata}"
    typer.echo(f"database ready ({where}), schema at {revision}")


@db_app.command()
def stop(ctx: typer.Context) -> None:
    """Stop the embedded PostgreSQL.

    Example: imgvec db stop
    """
    from pipeline.db.embedded import EmbeddedPostgres

    settings: Settings = ctx.obj
    if not settings.embedded:
        typer.echo("DATABASE_URL is set: imgvec does not stop servers it did not start")
        return
    stopped = EmbeddedPostgres(settings.pgdata).stop()
    typer.echo("stopped" if stopped else "not running")


db_app.command()(status)  # registered here: `imgvec db --help` lists the commands in order


@db_app.command()
def url(
    ctx: typer.Context,
    show_password: Annotated[
        bool, typer.Option("--show-password", help="Print the password too.")
    ] = False,
) -> None:
    """Print the database URL (password masked), starting the embedded server if needed.

    Example: psql "$(imgvec db url --show-password)"
    """
    from pipeline.db import mask_url, resolve_url

    resolved = asyncio.run(resolve_url(ctx.obj))
    typer.echo(resolved if show_password else mask_url(resolved))


@db_app.command()
def upgrade(ctx: typer.Context) -> None:
    """Apply pending schema migrations (imgvec also does this on first use).

    Example: DATABASE_URL=postgresql://imgvec@db.internal/imgvec imgvec db upgrade
    """
    typer.echo(f"schema at {asyncio.run(_migrated_revision(ctx.obj))}")


@db_app.command(context_settings={"ignore_unknown_options": True})  # `-1` is a revision
def downgrade(
    ctx: typer.Context,
    revision: Annotated[str, typer.Argument(help="the revision to go back to, e.g. 0007 or -1")],
) -> None:
    """Undo schema migrations down to REVISION (Alembic's downgrade; data of what it drops is lost).

    Example: imgvec db downgrade -1
    """
    typer.echo(f"schema at {asyncio.run(_downgraded_revision(ctx.obj, revision))}")


async def _downgraded_revision(settings: Settings, revision: str) -> str | None:
    from pipeline.db import check_server, connect, raise_if_permission_denied, resolve_url
    from pipeline.db.schema import current_revision, downgrade

    url = await resolve_url(settings)
    conn = await connect(url, timeout=settings.connect_timeout, register_vector=False)
    try:
        await check_server(conn, url)
        from alembic.util.exc import CommandError

        try:
            await downgrade(url, revision)
        except CommandError as err:  # no such revision, or not below the current one
            raise UsageError(
                f"cannot downgrade to {revision!r}: {err}",
                hint="give a revision below the current one (`imgvec db status` names it), "
                "e.g. -1 for one step, or base for none",
            ) from err
        except Exception as err:
            await raise_if_permission_denied(conn, err)
            raise
        return await current_revision(conn)
    finally:
        await conn.close()


@db_app.command("default-source")
def default_source(
    ctx: typer.Context,
    source: Annotated[str, typer.Argument(help="the source: its id, its root, or as listed")],
) -> None:
    """Show SOURCE's images behind the view image_embeddings (names are unique per source).

    Example: imgvec db default-source gs://photos/2026/
    """
    root = asyncio.run(_set_default_source(ctx.obj, source))
    typer.echo(f"image_embeddings now shows {root}")


async def _set_default_source(settings: Settings, source: str) -> str:
    from pipeline.db import open_database
    from pipeline.listing.registry import set_default_source

    async with open_database(settings) as conn:
        return await set_default_source(conn, source)


@db_app.command("grant-reader")
def grant_reader(
    ctx: typer.Context,
    role: Annotated[str, typer.Argument(help="the analysts' role (created if missing)")],
) -> None:
    """Give ROLE read-only access: every table, view and sql/ query, and no writes.

    For a shared server (DATABASE_URL): the embedded one admits only the OS user who started it.

    Example: DATABASE_URL=postgresql://admin@db.internal/imgvec imgvec db grant-reader analysts
    """
    if ctx.obj.embedded:
        raise EmbeddedServerIsPrivate(
            "the embedded server is private: only the OS user who started it can connect (a unix "
            "socket in a private folder, no passwords), so a role there would serve no one else",
            hint="for analysts who share a database, run the compose server (`docker compose up "
            "-d db`) or any PostgreSQL with pgvector, set DATABASE_URL to it, and grant there",
        )
    created = asyncio.run(_grant_reader(ctx.obj, role))
    typer.echo(
        f"{'created role' if created else 'role'} {role}: read-only access to imgvec's tables, views "
        "and functions" + ("; set its password in psql with \\password" if created else "")
    )


async def _grant_reader(settings: Settings, role: str) -> bool:
    from pipeline.db import open_database
    from pipeline.db.roles import grant_reader

    async with open_database(settings) as conn:
        return await grant_reader(conn, role)


def psql(ctx: typer.Context) -> None:
    """Run the system `psql` on imgvec's database; extra arguments go to psql.

    Example: imgvec psql -v image=IMG001.jpg -f sql/similar_images.sql
    """
    from sqlalchemy.engine import make_url

    executable = shutil.which("psql")
    if executable is None:
        raise ConfigError(
            "psql is not installed",
            hint="install the PostgreSQL client: apt-get install postgresql-client (Debian/Ubuntu), "
            "brew install libpq (macOS)",
        )
    settings: Settings = ctx.obj
    target = asyncio.run(_migrated_url(settings))
    parsed = make_url(target)
    env = dict(os.environ)
    if parsed.password:
        # Through the environment, not argv: argv is visible to every user in `ps`.
        env["PGPASSWORD"] = parsed.password
        target = parsed.set(password=None).render_as_string(hide_password=False)
    # Stop at the first error, so that a failing `-f` file exits non-zero (3) instead of running on
    # and exiting 0; a `-v ON_ERROR_STOP=0` of the user's comes later on the line and wins.
    os.execvpe(executable, [executable, "-v", "ON_ERROR_STOP=1", target, *ctx.args], env)


async def _migrated_url(settings: Settings) -> str:
    from pipeline.db import open_database, resolve_url

    async with open_database(settings):
        pass
    return await resolve_url(settings)


async def _migrated_revision(settings: Settings) -> str | None:
    from pipeline.db import open_database
    from pipeline.db.schema import current_revision

    async with open_database(settings) as conn:
        return await current_revision(conn)
