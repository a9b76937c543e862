"""`imgvec load` (the load stage) and `imgvec run` (list, embed, load and index in one command)."""

import asyncio
import inspect
from typing import TYPE_CHECKING, Annotated

import typer

from pipeline.cli.embed_cmd import (
    backend_from_options,
    embed_command,
    run_embedding,
    stage_options,
)
from pipeline.cli.list_cmd import list_command, run_listing
from pipeline.errors import ConfigError

if TYPE_CHECKING:
    from pipeline.settings import Settings


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
    result = run_loading(ctx.obj, work_dir=work_dir, index=index)
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
    m: Annotated[int, typer.Option(help="HNSW links per node (recall vs size).")] = 16,
    ef_construction: Annotated[
        int, typer.Option(help="HNSW build-time candidate list (recall vs build time).")
    ] = 64,
    maintenance_work_mem: Annotated[
        str, typer.Option(help="Memory for the build, e.g. 1GB.")
    ] = "1GB",
) -> None:
    """Build (or with --rebuild, rebuild) HNSW indexes, e.g. to tune m and ef_construction.

    Example: imgvec index --rebuild --m 24 --ef-construction 128
    """
    from pipeline.db import open_database, resolve_url
    from pipeline.loading.indexing import build_index

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


def run_loading(settings: "Settings", *, work_dir: str | None, index: bool = True):
    from pipeline.loading import load_work_dir

    return asyncio.run(
        load_work_dir(work_dir=work_dir or settings.work_dir, settings=settings, index=index)
    )


def run_command(ctx: typer.Context, **options) -> None:
    """List SOURCE, embed what is new or changed, load and index: the nightly job's one command.

    Idempotent and resumable: rerun it after any failure. Exit code 3: finished with failures.

    Example: imgvec run gs://photos/2026/ --backend vertex --dimension 512
    """
    settings: Settings = ctx.obj
    options["work_dir"] = options["work_dir"] or settings.work_dir
    model_backend = backend_from_options(options)  # a wrong option fails before the listing
    _check_work_dir_free(settings, options["work_dir"], model_backend.space.name)
    listing = run_listing(settings, options["source"], **{k: options[k] for k in _LIST_OPTIONS})
    typer.echo(f"listed {options['source']}: {listing.summary()}")
    embedding = run_embedding(settings, model_backend, **stage_options(options))
    typer.echo(f"embedded: {embedding.summary()}")
    loading = run_loading(settings, work_dir=options["work_dir"])
    typer.echo(f"loaded: {loading.summary()}")
    texts = _embed_pending_texts(settings, embedding.backend)
    if texts:
        typer.echo(f"embedded {len(texts)} pending text quer{'y' if len(texts) == 1 else 'ies'}")
    if note := embedding.failures_note():
        typer.echo(note, err=True)
    raise typer.Exit(embedding.exit_code)


def _check_work_dir_free(settings: "Settings", work_dir: str, space: str) -> None:
    from pipeline.db import connect, resolve_url
    from pipeline.db.work_dir_lock import check_work_dir_free
    from pipeline.workdir import WorkDir

    async def check():
        url = await resolve_url(settings)
        conn = await connect(url, timeout=settings.connect_timeout, register_vector=False)
        try:
            await check_work_dir_free(conn, WorkDir(work_dir).spec, space)
        finally:
            await conn.close()

    asyncio.run(check())


def _embed_pending_texts(settings: "Settings", backend) -> list[str]:
    """Texts analysts queued with INSERT INTO text_queries get their vectors with the nightly run."""
    from pipeline.db import open_database
    from pipeline.search import save_text_queries

    async def run():
        async with open_database(settings) as conn:
            return await save_text_queries(conn, backend, [])

    return asyncio.run(run())


# `run` takes every option of `list` and of `embed`: its signature is theirs, joined, so the two
# stay in step with no copy of their declarations.
def _params(command) -> list[inspect.Parameter]:
    return [p for p in inspect.signature(command).parameters.values() if p.name != "ctx"]


_list_params = _params(list_command)
_LIST_OPTIONS = [p.name for p in _list_params if p.name != "source"]
_embed_params = [p for p in _params(embed_command) if p.name not in {q.name for q in _list_params}]
_EMBED_OPTIONS = [p.name for p in _params(embed_command)]
run_command.__signature__ = inspect.Signature(
    [inspect.signature(list_command).parameters["ctx"], *_list_params, *_embed_params]
)
run_command.__annotations__ = {
    p.name: p.annotation for p in run_command.__signature__.parameters.values()
}
