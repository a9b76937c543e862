"""Options more than one command takes, declared once: each command writes the alias in its own
signature (typer's way to share an option), so `run` has `list`'s and `embed`'s by name."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from pipeline.core.shards import Shard, shard_from_environment
from pipeline.errors import UsageError

Source = Annotated[
    str,
    typer.Argument(help="gs://bucket/prefix, s3://bucket/prefix, a folder, or a file of locators."),
]
CheckpointsDir = Annotated[
    str | None,
    typer.Option(
        help="Folder or gs:// prefix for checkpoints. Default: $IMGVEC_WORK_DIR or ./imgvec-work."
    ),
]
Include = Annotated[
    list[str] | None,
    typer.Option("--include", help="Keep only names matching this glob (repeatable)."),
]
Exclude = Annotated[
    list[str] | None,
    typer.Option("--exclude", help="Skip names matching this glob (repeatable)."),
]
MaxSize = Annotated[
    int | None, typer.Option(help="Skip (and record) objects larger than this many bytes.")
]
AllTypes = Annotated[bool, typer.Option("--all-types", help="Do not filter by image extension.")]
PageSize = Annotated[
    int, typer.Option(help="Objects per listing request (GCS and S3 cap it at 1000).")
]
DbBatchSize = Annotated[int, typer.Option(help="Objects per database batch and progress line.")]

Force = Annotated[
    bool, typer.Option("--force", help="Re-embed everything, even what earlier parts hold.")
]
RetryFailed = Annotated[
    bool, typer.Option("--retry-failed", help="Try again the images that failed for good before.")
]
PartSize = Annotated[int, typer.Option(help="Images per CSV part (the unit a crash can lose).")]
ReadWorkers = Annotated[int, typer.Option(help="Threads reading and decoding images.")]
ShardOption = Annotated[
    str | None,
    typer.Option(
        "--shard",
        help="I/N: be task I (0-based) of N, embedding only the images that task owns. Default: "
        "$IMGVEC_SHARD, else the batch engine's task index and count (Cloud Run Jobs, Slurm "
        "arrays; Kubernetes Indexed Jobs and AWS Batch arrays need $IMGVEC_SHARDS, the count).",
    ),
]
AttributesFile = Annotated[
    str | None,
    typer.Option(
        "--attributes",
        help="A table of per-image attributes (CSV or Parquet): a key column matching the name or "
        "the locator (named name, locator, file, filename, path or image), every other column an "
        "attribute. Changed values relabel, never re-embed.",
    ),
]
AttributesKey = Annotated[
    str | None,
    typer.Option("--attributes-key", help="The key column of --attributes, when named otherwise."),
]
AttributeFromPath = Annotated[
    list[str] | None,
    typer.Option(
        "--attribute-from-path",
        help="An attribute from the name's folders, {N} the Nth from 0: 'class={1}' gives "
        "train/n01443537/x.JPEG class=n01443537 (repeatable).",
    ),
]


def shard_of_task(option: str | None) -> Shard | None:
    """The task's shard: `--shard`, else the batch engine's variables. None: not sharded, also
    for one task of one (Cloud Run sets 0 of 1 in every job), which works as it always did."""
    try:
        shard = Shard.parse(option) if option else shard_from_environment(os.environ)
    except ValueError as err:
        raise UsageError(str(err), hint="pass --shard I/N (task I of N, 0-based)") from None
    return shard if shard is not None and shard.count > 1 else None


TakeOver = Annotated[
    bool,
    typer.Option(
        "--take-over",
        help="Move here objects another listed source holds (a folder inside a listed one, a "
        "list naming its files): new names, this listing's attributes. Without it they stay "
        "there: skipped rows, and a note names that source.",
    ),
]
