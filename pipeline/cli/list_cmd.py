"""`imgvec list SOURCE`: the list stage."""

import asyncio
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from pipeline.settings import Settings


def list_command(
    ctx: typer.Context,
    source: Annotated[
        str,
        typer.Argument(
            help="gs://bucket/prefix, s3://bucket/prefix, a folder, or a file of locators."
        ),
    ],
    work_dir: Annotated[
        str | None,
        typer.Option(
            help="Folder or gs:// prefix for checkpoints. Default: $IMGVEC_WORK_DIR or ./imgvec-work."
        ),
    ] = None,
    include: Annotated[
        list[str] | None,
        typer.Option("--include", help="Keep only names matching this glob (repeatable)."),
    ] = None,
    exclude: Annotated[
        list[str] | None,
        typer.Option("--exclude", help="Skip names matching this glob (repeatable)."),
    ] = None,
    max_size: Annotated[
        int | None, typer.Option(help="Skip (and record) objects larger than this many bytes.")
    ] = None,
    all_types: Annotated[
        bool, typer.Option("--all-types", help="Do not filter by image extension.")
    ] = False,
    page_size: Annotated[
        int, typer.Option(help="Objects per listing request (GCS and S3 cap it at 1000).")
    ] = 1000,
    db_batch_size: Annotated[
        int, typer.Option(help="Objects per database batch and progress line.")
    ] = 5000,
) -> None:
    """List a source's images, noting what is new, changed or deleted since the last run.

    Example: imgvec list gs://photos/2026/ --work-dir gs://my-bucket/imgvec-work
    """
    result = run_listing(
        ctx.obj,
        source,
        work_dir=work_dir,
        include=include,
        exclude=exclude,
        max_size=max_size,
        all_types=all_types,
        page_size=page_size,
        db_batch_size=db_batch_size,
    )
    typer.echo(f"listed {source}: {result.summary()}")


def run_listing(
    settings: "Settings",
    source: str,
    *,
    work_dir,
    include,
    exclude,
    max_size,
    all_types,
    page_size,
    db_batch_size,
):
    from pipeline.listing import list_source
    from pipeline.listing.filters import IMAGE_EXTENSIONS, ObjectFilter

    object_filter = ObjectFilter(
        extensions=frozenset() if all_types else IMAGE_EXTENSIONS,
        include=tuple(include or ()),
        exclude=tuple(exclude or ()),
        max_size=max_size,
    )
    return asyncio.run(
        list_source(
            source,
            work_dir=work_dir or settings.work_dir,
            settings=settings,
            object_filter=object_filter,
            page_size=page_size,
            batch_size=db_batch_size,
        )
    )
