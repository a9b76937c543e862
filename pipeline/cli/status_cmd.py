"""`imgvec status --run-id ID`: how far each task of a sharded run has got — its listing, every
shard's contents embedded / to do / failed and done-marker (`pipeline.checkpoints.shard_progress`,
from the work dir), and the run's rows of the `runs` table (`pipeline.run_history`)."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Annotated

import typer

from pipeline.cli.backend_options import backend_flags_given, space_from_context
from pipeline.core.shards import run_id_from_environment
from pipeline.errors import UsageError


def status_command(
    ctx: typer.Context,
    run_id: Annotated[
        str | None,
        typer.Option(
            help="The sharded run's id (as given to `imgvec run --run-id`). Default: "
            "$IMGVEC_RUN_ID, else the engine's, else the work dir's newest run.",
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
    runs table. The backend flags select the space, as for embed; given none, the space is the
    only one holding the run's parts, if one does (else the default), and spaces holding them
    are named when the chosen one does not.

    Example: imgvec status --run-id nightly-7 --backend clip --work-dir gs://bucket/work
    """
    from pipeline.checkpoints.shard_progress import run_progress, spaces_with_run_parts
    from pipeline.checkpoints.space_file import space_folder
    from pipeline.run_history import run_rows
    from pipeline.search.empty import options_for
    from pipeline.workdir import WorkDir

    settings = ctx.obj
    work = WorkDir(work_dir or settings.work_dir)
    run_id = run_id or run_id_from_environment(os.environ)
    newest = not run_id
    if not run_id:
        run_id = _newest_run(work)
    space = space_from_context(ctx)
    # Parts carry no run id, but their task count and folder tell which spaces the run embedded
    # into: a run made with other backend flags must not look like it embedded nothing.
    with_parts = spaces_with_run_parts(work, run_id, shards)
    picked = False
    if (
        space_folder(space) not in with_parts
        and len(with_parts) == 1
        and not backend_flags_given(ctx)
    ):
        (space,) = with_parts.values()
        picked = True
    progress = run_progress(work, run_id, space_folder(space), shards)
    rows = asyncio.run(run_rows(settings, run_id, space.name))
    others = [] if space_folder(space) in with_parts else list(with_parts.values())
    report = {
        "run_id": run_id,
        "newest_run": newest,  # no run id given: the work dir's newest run
        "work_dir": work.spec,
        "space": space.name,
        "space_from_parts": picked,  # no backend flag given: the one space with the run's parts
        "space_options": options_for(space),
        # The chosen space has no part of the run's shards, these spaces have.
        "other_spaces": [{"space": o.name, "options": options_for(o)} for o in others],
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


def _newest_run(work) -> str:
    from pipeline.checkpoints.run_markers import newest_run

    if run_id := newest_run(work):
        return run_id
    raise UsageError(
        f"no sharded run in {work.spec} (no run has published its listing there)",
        hint="pass --run-id ID (as given to `imgvec run`) and --work-dir, the run's work dir",
    )


def _print(report: dict) -> None:
    run = f"run {report['run_id']}" + (
        f" (the newest in {report['work_dir']}; --run-id to choose)"
        if report["newest_run"]
        else f" in {report['work_dir']}"
    )
    space = f"space {report['space']}" + (
        f" (the only space with this run's parts; {report['space_options']} selects it)"
        if report["space_from_parts"]
        else ""
    )
    typer.echo(f"{run}, {space}")
    if report["other_spaces"]:
        found = "; ".join(f"{o['space']} ({o['options']})" for o in report["other_spaces"])
        typer.echo(f"no part of this run in this space; spaces with its parts: {found}")
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
