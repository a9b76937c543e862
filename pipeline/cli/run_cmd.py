"""`imgvec run SOURCE`: list, embed, load and index in one command (`pipeline.runner.run_source`).
It takes `list`'s options and `embed`'s, declared once in `pipeline/cli/options.py`."""

import asyncio
import functools
import os
from typing import Annotated

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
    ShardOption,
    Source,
    TakeOver,
    shard_of_task,
)
from pipeline.core.shards import run_id_from_environment
from pipeline.errors import UsageError

RunId = Annotated[
    str | None,
    typer.Option(
        help="The id the N tasks of one sharded run share (a new run, a new id). Default: "
        "$IMGVEC_RUN_ID, else the engine's (Cloud Run's execution, Slurm's array job id, AWS "
        "Batch's job id; for a Kubernetes Job pass its name as $IMGVEC_RUN_ID).",
    ),
]
Wait = Annotated[
    float,
    typer.Option(help="Seconds a task other than 0 waits for task 0's listing (then exit 75)."),
]


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
    take_over: TakeOver = False,
    force: Force = False,
    retry_failed: RetryFailed = False,
    part_size: PartSize = 256,
    read_workers: ReadWorkers = 8,
    shard: ShardOption = None,
    run_id: RunId = None,
    wait: Wait = 600,
) -> None:
    """List SOURCE, embed what is new or changed, load and index: the nightly job's one command.

    Idempotent and resumable: rerun it after any failure. Exit code 3: finished with failures.
    On N tasks of a batch engine, each task runs the same command with --shard I/N and --run-id
    (both read from the engine by default): task 0 lists, each embeds and loads its share, and
    the last one done builds the index.

    Example: imgvec run gs://photos/2026/ --backend vertex --dimension 512
    """
    from pipeline.runner import ShardTask, run_source

    task_shard = shard_of_task(shard)
    run_id = run_id or run_id_from_environment(os.environ)
    if task_shard is not None and not run_id:
        raise UsageError(
            f"task {task_shard} of a sharded run needs the run's id, which the tasks share",
            hint="pass --run-id ID (the same in every task of the run) or set IMGVEC_RUN_ID",
        )
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
                take_over,
            ),
            embed_options={
                "force": force,
                "retry_failed": retry_failed,
                "part_size": part_size,
                "read_workers": read_workers,
            },
            on_stage=functools.partial(_print_stage, source),
            task=ShardTask(task_shard, run_id, wait) if task_shard and run_id else None,
        )
    )
    if note := result.embedding.failures_note():
        typer.echo(note, err=True)
    raise typer.Exit(result.embedding.exit_code)


def _print_stage(source: str, stage: str, result) -> None:
    if stage == "list" and result is None:
        typer.echo(f"listed {source}: by task 0 of the run")
    elif stage == "list":
        typer.echo(f"listed {source}: {result.summary()}")
        if note := result.unmatched_note():
            typer.echo(note, err=True)
    elif stage == "embed":
        typer.echo(f"embedded: {result.summary()}")
    elif stage == "load":
        typer.echo(f"loaded: {result.summary()}")
    elif stage == "texts" and result:
        typer.echo(f"embedded {len(result)} pending text quer{'y' if len(result) == 1 else 'ies'}")
