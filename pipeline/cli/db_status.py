"""`imgvec db status`: which database imgvec uses, whether it is up, and what is wrong with it."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Annotated

import typer

# The database modules are imported inside the command: `imgvec --help` must not pay for them.
if TYPE_CHECKING:
    from pipeline.settings import Settings

EXIT_NOT_RUNNING = 3


def status(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Say which database imgvec uses and whether it is up. Exit code 3: not running.

    Example: imgvec db status --json
    """
    from pipeline.db import mask_url, resolve_url
    from pipeline.db.embedded import EmbeddedPostgres

    settings: Settings = ctx.obj
    info: dict = {"embedded": settings.embedded}
    if settings.embedded:
        server = EmbeddedPostgres(settings.pgdata).status()
        info |= {"running": server.running, "pgdata": str(server.pgdata), "pid": server.pid}
        url = server.url(settings.database_name)
    else:
        url = asyncio.run(resolve_url(settings))
        info["running"] = True
    if url is not None:
        info |= {"url": mask_url(url)} | asyncio.run(_describe(url, settings.connect_timeout))
    if as_json:
        typer.echo(json.dumps(info))
    elif info["running"]:
        typer.echo(
            f"running: PostgreSQL {info['server_version']}, pgvector {info['pgvector']}, "
            f"schema {info['schema']} (latest {info['schema_head']})"
        )
        typer.echo(f"url: {info['url']}")
        if settings.embedded:
            typer.echo(f"data: {info['pgdata']} (postmaster pid {info['pid']})")
        for problem in info["problems"]:
            typer.echo(f"problem: {problem}")
        for note in info["notes"]:
            typer.echo(f"note: {note}")
    else:
        typer.echo(
            f"stopped: embedded PostgreSQL, data in {info['pgdata']}; `imgvec db start` starts it"
        )
    if not info["running"]:
        raise typer.Exit(EXIT_NOT_RUNNING)


async def _describe(url: str, timeout: float) -> dict:
    """The server's state, problems included (a too old pgvector, a schema the role may not
    read): `db status` reports them and exits 0; the commands that need the database refuse."""
    import asyncpg

    from pipeline.db import MIN_SERVER_VERSION, connect, pgvector_of
    from pipeline.db.schema import current_revision, head_revision

    conn = await connect(url, timeout=timeout, register_vector=False)
    try:
        database = await conn.fetchval("SELECT current_database()")
        pgvector = await pgvector_of(conn)
        problems, notes = [], pgvector.notes(database)
        if await conn.fetchval("SELECT current_setting('server_version_num')::int") < (
            MIN_SERVER_VERSION
        ):
            problems.append("imgvec needs PostgreSQL 15 or newer")
        if (problem := pgvector.problem(database)) is not None:
            problems.append(f"{problem[0]}; {problem[1]}")
            notes = []  # the problem says what to do
        try:
            schema = await current_revision(conn)
        except asyncpg.PostgresError as err:
            schema = None
            problems.append(f"the schema cannot be read: {err}")
        return {
            "server_version": await conn.fetchval("SHOW server_version"),
            "pgvector": pgvector.version,
            "pgvector_installed": pgvector.installed,
            "pgvector_available": pgvector.available,
            "iterative_scans": pgvector.iterative_scans,
            "schema": schema,
            "schema_head": head_revision(),
            "problems": problems,
            "notes": notes,
        }
    finally:
        await conn.close()
