"""`imgvec load` (the load stage) and `imgvec index` (its HNSW indexes, tuned or rebuilt)."""

import asyncio
from typing import Annotated

import typer

from pipeline.errors import ConfigError


def load_command(
    ctx: typer.Context,
    work_dir: Annotated[
        str | None,
        typer.Option(
            help="Folder or gs:// prefix holding the embed stage's parts. Default: $IMGVEC_WORK_DIR or ./imgvec-work."
        ),
    ] = None,
    index: Annotated[
        bool,
        typer.Option("--index/--no-index", help="Build each space's HNSW index after loading."),
    ] = True,
) -> None:
    """Load the CSV parts of every space into PostgreSQL (exactly once), then index and ANALYZE.

    Example: imgvec load --work-dir ./imgvec-work
    """
    from pipeline.loading import load_work_dir

    settings = ctx.obj
    result = asyncio.run(
        load_work_dir(work_dir=work_dir or settings.work_dir, settings=settings, index=index)
    )
    typer.echo(f"loaded: {result.summary()}")


def index_command(
    ctx: typer.Context,
    space: Annotated[
        str | None, typer.Option(help="Space id or name. Default: every space.")
    ] = None,
    rebuild: Annotated[
        bool, typer.Option("--rebuild", help="Drop the space's HNSW index and build it again.")
    ] = False,
    opclass: Annotated[
        str,
        typer.Option(
            help="vector_l2_ops (for <->), vector_cosine_ops (<=>) or vector_ip_ops (<#>)."
        ),
    ] = "vector_l2_ops",
    m: Annotated[int, typer.Option(help="HNSW links per node, 2 to 100 (recall vs size).")] = 16,
    ef_construction: Annotated[
        int,
        typer.Option(
            help="HNSW build-time candidate list, 4 to 1000 and at least 2 x --m "
            "(recall vs build time)."
        ),
    ] = 64,
    maintenance_work_mem: Annotated[
        str, typer.Option(help="Memory for the build, e.g. 1GB.")
    ] = "1GB",
) -> None:
    """Build (or with --rebuild, rebuild) HNSW indexes, e.g. to tune m and ef_construction.

    Example: imgvec index --rebuild --m 24 --ef-construction 128
    """
    from pipeline.db import open_database, resolve_url
    from pipeline.loading.indexing import build_index, check_index_options

    # Before the database is opened (or the embedded server started): a usage error is exit 2.
    check_index_options(opclass, m, ef_construction, maintenance_work_mem)

    async def run():
        url = await resolve_url(ctx.obj)
        async with open_database(ctx.obj) as conn:
            spaces = await conn.fetch(
                "SELECT space_id, name FROM embedding_spaces WHERE $1::text IS NULL OR name = $1 OR space_id::text = $1 "
                "ORDER BY space_id",
                space,
            )
            if not spaces:
                raise ConfigError(
                    f"no embedding space {space!r}",
                    hint="imgvec psql -c 'SELECT * FROM embedding_spaces'",
                )
            return [
                (
                    row["name"],
                    await build_index(
                        conn,
                        row["space_id"],
                        rebuild=rebuild,
                        opclass=opclass,
                        m=m,
                        ef_construction=ef_construction,
                        maintenance_work_mem=maintenance_work_mem,
                        progress_url=url,
                    ),
                )
                for row in spaces
            ]

    for name, index in asyncio.run(run()):
        typer.echo(f"{name}: {index}")
