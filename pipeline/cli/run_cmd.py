"""`imgvec run SOURCE`: list, embed, load and index in one command (`pipeline.runner.run_source`).
It takes `list`'s options and `embed`'s, declared once in `pipeline/cli/options.py`."""

import asyncio
import functools

import typer

from pipeline.cli.backend_options import backend_from_context
from pipeline.cli.list_cmd import listing_options
from pipeline.cli.options import (
    AllTypes,
    AttributeFromPath,
    AttributesFile,
    AttributesKey,
    CheckpointsDir,
    DbBatchSize,
    Exclude,
    Force,
    Include,
    MaxSize,
    PageSize,
    PartSize,
    ReadWorkers,
    RetryFailed,
    Source,
)


def run_command(
    ctx: typer.Context,
    source: Source,
    work_dir: CheckpointsDir = None,
    include: Include = None,
    exclude: Exclude = None,
    max_size: MaxSize = None,
    all_types: AllTypes = False,
    page_size: PageSize = 1000,
    db_batch_size: DbBatchSize = 5000,
    attributes: AttributesFile = None,
    attributes_key: AttributesKey = None,
    attribute_from_path: AttributeFromPath = None,
    force: Force = False,
    retry_failed: RetryFailed = False,
    part_size: PartSize = 256,
    read_workers: ReadWorkers = 8,
) -> None:
    """List SOURCE, embed what is new or changed, load and index: the nightly job's one command.

    Idempotent and resumable: rerun it after any failure. Exit code 3: finished with failures.

    Example: imgvec run gs://photos/2026/ --backend vertex --dimension 512
    """
    from pipeline.runner import run_source

    backend = backend_from_context(ctx)  # a wrong option fails before the listing
    result = asyncio.run(
        run_source(
            ctx.obj,
            source,
            backend,
            work_dir=work_dir,
            list_options=listing_options(
                include,
                exclude,
                max_size,
                all_types,
                page_size,
                db_batch_size,
                attributes,
                attributes_key,
                attribute_from_path,
            ),
            embed_options={
                "force": force,
                "retry_failed": retry_failed,
                "part_size": part_size,
                "read_workers": read_workers,
            },
            on_stage=functools.partial(_print_stage, source),
        )
    )
    if note := result.embedding.failures_note():
        typer.echo(note, err=True)
    raise typer.Exit(result.embedding.exit_code)


def _print_stage(source: str, stage: str, result) -> None:
    if stage == "list":
        typer.echo(f"listed {source}: {result.summary()}")
        if note := result.unmatched_note():
            typer.echo(note, err=True)
    elif stage == "embed":
        typer.echo(f"embedded: {result.summary()}")
    elif stage == "load":
        typer.echo(f"loaded: {result.summary()}")
    elif stage == "texts" and result:
        typer.echo(f"embedded {len(result)} pending text quer{'y' if len(result) == 1 else 'ies'}")
