"""`imgvec thumbnails`: the missing thumbnails of a space's loaded images, for what was embedded
before the embed stage made them (or by a run that could not write them). Rerun to resume."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from pipeline.cli.backend_options import space_from_context
from pipeline.cli.options import CheckpointsDir, ReadWorkers

SHOWN_FAILURES = 5


def thumbnails_command(
    ctx: typer.Context,
    space: Annotated[
        str | None,
        typer.Option(
            help="The space by name (e.g. clip/ViT-B-32/openai/512). Default: the space the "
            "backend options select, as for search."
        ),
    ] = None,
    work_dir: CheckpointsDir = None,
    read_workers: ReadWorkers = 8,
) -> None:
    """Make the thumbnails the work dir lacks for every loaded image of a space; rerun to resume.

    Originals that cannot be read or are not images are counted and named, not fatal.

    Example: imgvec thumbnails --work-dir gs://bucket/imgvec-work --backend vertex --dimension 512
    """
    from pipeline import interrupt
    from pipeline.embedding.readers import ObjectReader
    from pipeline.embedding.thumbnails import make_missing
    from pipeline.workdir import WorkDir

    settings = ctx.obj
    name = (
        space or space_from_context(ctx).name
    )  # (from the flags: loads no model, needs no credentials)
    work = WorkDir(work_dir or settings.work_dir)
    originals = asyncio.run(_loaded_originals(settings, name))
    reader = ObjectReader(s3_endpoint_url=settings.s3_endpoint_url)
    with interrupt.graceful():  # a first Ctrl-C keeps what is written: the rerun makes the rest
        done = make_missing(work, originals, reader, workers=read_workers)
    typer.echo(
        f"space {name}: {done.made} thumbnails made, {done.present} already in "
        f"{work.describe('thumbnails/')}, {len(done.failed)} originals could not be made into one"
    )
    for locator, reason in done.failed[:SHOWN_FAILURES]:
        typer.echo(f"imgvec: no thumbnail for {locator}: {reason}", err=True)
    if len(done.failed) > SHOWN_FAILURES:
        typer.echo(f"imgvec: ... and {len(done.failed) - SHOWN_FAILURES} more", err=True)


async def _loaded_originals(settings, name: str) -> list:
    """Every listed, not deleted object with a vector in the space `name`, by content key."""
    from pipeline.core.objects import content_key
    from pipeline.db import open_database
    from pipeline.embedding.thumbnails import Original
    from pipeline.errors import UsageError

    async with open_database(settings) as conn:
        space_id = await conn.fetchval(
            "SELECT space_id FROM embedding_spaces WHERE name = $1", name
        )
        if space_id is None:
            names = await conn.fetch("SELECT name FROM embedding_spaces ORDER BY name")
            known = ", ".join(row["name"] for row in names) or "none yet"
            raise UsageError(f"no space named {name!r} in the database (spaces: {known})")
        rows = await conn.fetch(
            """
            SELECT o.locator, o.content_hash, o.size
            FROM embeddings e JOIN objects o ON o.object_id = e.object_id
            WHERE e.space_id = $1 AND o.deleted_at IS NULL
            ORDER BY o.object_id
            """,
            space_id,
        )
    return [
        Original(content_key(row["locator"], row["content_hash"]), row["locator"], row["size"])
        for row in rows
    ]
