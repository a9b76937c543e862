"""`imgvec list SOURCE`: the list stage."""

import asyncio

import typer

from pipeline.cli.options import (
    AllTypes,
    AttributeFromPath,
    AttributesFile,
    AttributesKey,
    CheckpointsDir,
    DbBatchSize,
    Exclude,
    Include,
    MaxSize,
    PageSize,
    Source,
    TakeOver,
)


def list_command(
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
) -> None:
    """List a source's images, noting what is new, changed or deleted since the last run.

    Example: imgvec list gs://photos/2026/ --work-dir gs://my-bucket/imgvec-work
    """
    from pipeline.listing import list_source

    options = listing_options(
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
    )
    settings = ctx.obj
    result = asyncio.run(
        list_source(source, work_dir=work_dir or settings.work_dir, settings=settings, **options)
    )
    typer.echo(f"listed {source}: {result.summary()}")
    if note := result.unmatched_note():
        typer.echo(note, err=True)


def listing_options(
    include,
    exclude,
    max_size,
    all_types,
    page_size,
    db_batch_size,
    attributes,
    attributes_key,
    attribute_from_path,
    take_over=False,
) -> dict:
    """`list_source`'s keyword arguments for the list options (of `list` and `run`). The sidecar
    table is read here: a wrong one fails before anything is listed."""
    from pipeline.listing.attributes import ObjectAttributes
    from pipeline.listing.filters import IMAGE_EXTENSIONS, ObjectFilter

    object_filter = ObjectFilter(
        extensions=frozenset() if all_types else IMAGE_EXTENSIONS,
        include=tuple(include or ()),
        exclude=tuple(exclude or ()),
        max_size=max_size,
    )
    return {
        "object_filter": object_filter,
        "attributes": ObjectAttributes.build(attributes, attributes_key, attribute_from_path or ()),
        "page_size": page_size,
        "batch_size": db_batch_size,
        "take_over": take_over,
    }
