"""`imgvec status --run-id ID`: how far each task of a sharded run has got — its listing, every
shard's contents embedded / to do / failed and done-marker (`pipeline.checkpoints.shard_progress`,
from the work dir), and the run's rows of the `runs` table (`pipeline.run_history`)."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Annotated

import typer

from pipeline.cli.backend_options import space_from_context
from pipeline.core.shards import run_id_from_environment
from pipeline.errors import UsageError


def status_command(
    ctx: typer.Context,
    run_id: Annotated[
        str | None,
        typer.Option(
            help="The sharded run's id (as given to `imgvec run --run-id`). Default: "
            "$IMGVEC_RUN_ID, else the engine's.",
        ),
    ] = None,
    work_dir: Annotated[
        str | None,
        typer.Option(help="The run's work dir. Default: $IMGVEC_WORK_DIR or ./imgvec-work."),
    ] = None,
    shards: Annotated[
        int | None,
        typer.Option(
            help="The run's task count N. Default: read from its done-markers or shard parts.",
            min=1,
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Show how far each task of a sharded run has got.

    Per shard: the contents it has embedded out of those it has to (its manifest rows, less what
    other parts already hold), its failures and whether it is done; then the run's rows of the
    runs table. The backend flags select the space, as for embed.

    Example: imgvec status --run-id nightly-7 --backend clip --work-dir gs://bucket/work
    """
    from pipeline.checkpoints.shard_progress import run_progress
    from pipeline.checkpoints.space_file import space_folder
    from pipeline.run_history import run_rows
    from pipeline.workdir import WorkDir

    settings = ctx.obj
    run_id = run_id or run_id_from_environment(os.environ)
    if not run_id:
        raise UsageError(
            "status needs the run's id", hint="pass --run-id ID (as given to `imgvec run`)"
        )
    work = WorkDir(work_dir or settings.work_dir)
    space = space_from_context(ctx)
    progress = run_progress(work, run_id, space_folder(space), shards)
    rows = asyncio.run(run_rows(settings, run_id, space.name))
    report = {
        "run_id": run_id,
        "work_dir": work.spec,
        "space": space.name,
        "listing": "found" if progress.manifest else "waiting",
        "manifest": progress.manifest,
        "shards": [shard.as_dict() for shard in progress.shards],
        "all_done": all(shard.done_marker for shard in progress.shards),
        "runs": rows,
    }
    if as_json:
        typer.echo(json.dumps(report))
    else:
        _print(report)


def _print(report: dict) -> None:
    typer.echo(f"run {report['run_id']} in {report['work_dir']}, space {report['space']}")
    if report["manifest"] is None:
        typer.echo("listing: waiting (task 0 has not published its listing yet)")
    else:
        typer.echo(f"listing: found, {report['manifest']}")
    for shard in report["shards"]:
        done = "done" if shard["done_marker"] else "not done"
        if report["manifest"] is None:
            typer.echo(f"shard {shard['shard']}: {done}")
            continue
        typer.echo(
            f"shard {shard['shard']}: {done}, {shard['embedded']}/{shard['to_do']} embedded, "
            f"{shard['remaining']} remaining, {shard['failed']} failed "
            f"({shard['failed_permanently']} permanently); owns {shard['owned']} of the "
            f"manifest's contents, {shard['covered_elsewhere']} already in other parts; "
            f"parts written: {shard['parts']}"
        )
    if not report["runs"]:
        return
    typer.echo("runs (the runs table's rows of this run, each with its task):")
    for row in report["runs"]:
        counts = ", ".join(f"{name} {value}" for name, value in sorted(row["counts"].items()))
        finished = row["finished_at"] or "-"
        typer.echo(
            f"  {row['run_id']} {row['stage']} by task {row['shard'] or '-'}: {row['status']}, "
            f"{row['started_at']} -> {finished}, exit {row['exit_code']}; {counts or 'no counts'}"
            + (f"; error: {row['error']}" if row["error"] else "")
        )
