"""Options more than one command takes, declared once: each command writes the alias in its own
signature (typer's way to share an option), so `run` has `list`'s and `embed`'s by name."""

from __future__ import annotations

from typing import Annotated

import typer

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
