"""`imgvec load` (the load stage) and `imgvec run` (list, embed, load and index in one command)."""

import asyncio
import inspect
from typing import Annotated

import typer

from pipeline.cli.embed_cmd import embed_command, run_embedding
from pipeline.cli.list_cmd import list_command, run_listing
from pipeline.settings import Settings


def load_command(
    ctx: typer.Context,
    work_dir: Annotated[str | None, typer.Option(help="Folder or gs:// prefix holding the embed stage's parts. Default: $IMGVEC_WORK_DIR or ./imgvec-work.")] = None,
    index: Annotated[bool, typer.Option("--index/--no-index", help="Build each space's HNSW index after loading.")] = True,
) -> None:
    """Load the CSV parts of every space into PostgreSQL (exactly once), then index and ANALYZE."""
    result = run_loading(ctx.obj, work_dir=work_dir, index=index)
    typer.echo(f"loaded: {result.summary()}")


def run_loading(settings: Settings, *, work_dir: str | None, index: bool = True):
    from pipeline.loading import load_work_dir

    return asyncio.run(load_work_dir(work_dir=work_dir or settings.work_dir, settings=settings, index=index))


def run_command(ctx: typer.Context, **options) -> None:
    """List SOURCE, embed what is new or changed, load and index: the nightly job's one command.
    Idempotent and resumable: rerun it after any failure. Exit code 3: finished with failures."""
    settings: Settings = ctx.obj
    options["work_dir"] = options["work_dir"] or settings.work_dir
    listing = run_listing(settings, options["source"], **{k: options[k] for k in _LIST_OPTIONS})
    typer.echo(f"listed {options['source']}: {listing.summary()}")
    embedding = run_embedding(settings, **{k: options[k] for k in _EMBED_OPTIONS})
    typer.echo(f"embedded: {embedding.summary()}")
    loading = run_loading(settings, work_dir=options["work_dir"])
    typer.echo(f"loaded: {loading.summary()}")
    raise typer.Exit(embedding.exit_code)


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
run_command.__annotations__ = {p.name: p.annotation for p in run_command.__signature__.parameters.values()}
