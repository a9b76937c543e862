"""`imgvec embed`: the embed stage. Its backend flags come from the installed backends
(`pipeline/cli/backend_options.py`)."""

import asyncio
import os
from typing import Annotated

import typer

from pipeline.cli.backend_options import backend_from_context
from pipeline.cli.options import (
    Force,
    PartSize,
    ReadWorkers,
    RetryFailed,
    ShardOption,
    shard_of_task,
)
from pipeline.core.shards import run_id_from_environment


def embed_command(
    ctx: typer.Context,
    work_dir: Annotated[
        str | None,
        typer.Option(
            help="Folder or gs:// prefix holding the list stage's manifest. "
            "Default: $IMGVEC_WORK_DIR or ./imgvec-work."
        ),
    ] = None,
    force: Force = False,
    retry_failed: RetryFailed = False,
    part_size: PartSize = 256,
    read_workers: ReadWorkers = 8,
    shard: ShardOption = None,
) -> None:
    """Embed the images of the latest manifest, writing CSV parts; rerun to resume.

    Exit code 3: finished, but some images failed (see the failures table). With --shard I/N,
    N tasks share the work (run `imgvec load` once they are done).

    Example: imgvec embed --backend vertex --dimension 512 --project my-project
    """
    from pipeline.checkpoints.manifest import latest_manifest
    from pipeline.runner import embed_work_dir
    from pipeline.workdir import WorkDir

    settings = ctx.obj
    work_dir = work_dir or settings.work_dir
    task_shard = shard_of_task(shard)
    backend = backend_from_context(ctx)  # checks the configuration; loads no model
    latest_manifest(WorkDir(work_dir))  # fail fast, before any work
    result = asyncio.run(
        embed_work_dir(
            work_dir=work_dir,
            backend=backend,
            settings=settings,
            force=force,
            retry_failed=retry_failed,
            part_size=part_size,
            read_workers=read_workers,
            shard=task_shard,
            # (its runs row names the engine's run when one is set: the steps run apart on N tasks)
            sharded_run=run_id_from_environment(os.environ) if task_shard else None,
        )
    )
    typer.echo(f"embedded {result.manifest}: {result.summary()}")
    if note := result.failures_note():
        typer.echo(note, err=True)
    raise typer.Exit(result.exit_code)
