"""`imgvec search` and `imgvec text-embed`: both need the backend of the space they search."""

import asyncio
from datetime import datetime
from typing import Annotated

import typer

from pipeline.cli.answers import echo_answer
from pipeline.cli.backend_options import backend_from_context


def search_command(
    ctx: typer.Context,
    text: Annotated[str | None, typer.Argument(help='Words to search for, e.g. "red car".')] = None,
    image: Annotated[
        list[str] | None,
        typer.Option(
            help="An image to search by: a listed name or full locator, or a file. Repeatable: "
            "the images' vectors are combined, and the listed ones left out of the answer."
        ),
    ] = None,
    k: Annotated[int, typer.Option(min=1, help="How many images.")] = 10,
    min_score: Annotated[
        float | None,
        typer.Option(min=0.0, max=1.0, help="Leave out matches scoring below this (0-1)."),
    ] = None,
    source: Annotated[
        str | None,
        typer.Option(
            help="Search one listed source only (its id, root, or the folder/URI listed); "
            "names are then that source's. Default: every source."
        ),
    ] = None,
    where: Annotated[
        list[str] | None,
        typer.Option(
            help="Keep images meeting a condition, e.g. class=cat, year>=2025, "
            "'class in (cat, dog)', size<500000; on an attribute or on name, locator, size, "
            "content_type, updated_at. Repeatable: all must hold."
        ),
    ] = None,
    prefix: Annotated[str | None, typer.Option(help="Keep images whose name starts so.")] = None,
    content_type: Annotated[
        str | None, typer.Option(help="Keep images of this type, e.g. image/png, or image/*.")
    ] = None,
    since: Annotated[
        datetime | None,
        typer.Option(help="Keep images updated at or after this date or time (UTC)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """The images nearest to a text, an image, or both (hybrid), with distance and a 0-1 score.

    Example: imgvec search "red car" --k 5 --where class=car --pretrained none
    """
    if not text and not image:
        # Checked before the backend is built: a usage error loads no model.
        raise typer.BadParameter(
            "give a text to search for, an --image, or both", ctx=ctx, param_hint="TEXT / --image"
        )
    from pipeline.db import open_database
    from pipeline.search import search
    from pipeline.search.filters import Filters

    Filters(where or []).sql(first_parameter=1)  # an unreadable --where loads no model either
    model = backend_from_context(ctx)

    async def run():
        async with open_database(ctx.obj) as conn:
            return await search(
                conn,
                model,
                text=text,
                images=image,
                k=k,
                min_score=min_score,
                source=source,
                where=where,
                prefix=prefix,
                content_type=content_type,
                since=since,
            )

    matches = asyncio.run(run())
    echo_answer(
        matches,
        matches.why_empty,
        as_json=as_json,
        header=f"{'distance':>8}  {'score':>6}  locator",
        text=lambda match: f"{match.distance:8.4f}  {match.score:6.4f}  {match.locator}",
    )


def text_embed_command(
    ctx: typer.Context,
    texts: Annotated[
        list[str] | None, typer.Argument(help="Texts to save; with none, embed the pending ones.")
    ] = None,
) -> None:
    """Save texts for SQL search (table text_embeddings, view text_queries) and embed pending ones.

    Example: imgvec text-embed "damaged package" "red car"
    """
    from pipeline.db import open_database
    from pipeline.search import save_text_queries

    settings = ctx.obj
    model = backend_from_context(ctx)

    async def run():
        async with open_database(settings) as conn:
            return await save_text_queries(conn, model, texts or [])

    done = asyncio.run(run())
    if done:
        typer.echo(f"embedded {len(done)} text(s) in space {model.space.name}")
    elif texts:
        typer.echo(
            f"nothing to embed: the text(s) given were already embedded in space {model.space.name}"
        )
    else:
        typer.echo(f"nothing to embed: no texts are queued for space {model.space.name}")
