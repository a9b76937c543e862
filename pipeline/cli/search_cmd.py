"""`imgvec search` and `imgvec text-embed`: both need the backend of the space they search."""

import asyncio
import functools
import inspect
import json
from typing import Annotated

import typer

from pipeline.cli.embed_cmd import build_backend, embed_command
from pipeline.settings import Settings

_BACKEND_OPTIONS = set(inspect.signature(build_backend).parameters) | {"backend"}
BACKEND_PARAMS = [
    p for p in inspect.signature(embed_command).parameters.values() if p.name in _BACKEND_OPTIONS
]


def with_backend_options(fn):
    """Give a command every backend option of `embed` (one declaration, shared), handed to it as
    a ready backend in the `model` argument."""
    own = [p for p in inspect.signature(fn).parameters.values() if p.name != "model"]

    @functools.wraps(fn)
    def command(**kwargs):
        options = {name: kwargs.pop(name) for name in list(kwargs) if name in _BACKEND_OPTIONS}
        return fn(**kwargs, model=build_backend(options.pop("backend"), **options))

    command.__signature__ = inspect.Signature(own + BACKEND_PARAMS)
    command.__annotations__ = {
        p.name: p.annotation for p in command.__signature__.parameters.values()
    }
    del command.__wrapped__  # typer must read the joined signature, not fn's
    return command


@with_backend_options
def search_command(
    ctx: typer.Context,
    text: Annotated[str | None, typer.Argument(help='Words to search for, e.g. "red car".')] = None,
    image: Annotated[
        str | None, typer.Option(help="An image to search by: a listed locator or name, or a file.")
    ] = None,
    k: Annotated[int, typer.Option(help="How many images.")] = 10,
    min_score: Annotated[
        float | None, typer.Option(help="Leave out matches scoring below this (0-1).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    model=None,
) -> None:
    """The images nearest to a text, an image, or both (hybrid), with distance and a 0-1 score."""
    from pipeline.db import open_database
    from pipeline.search import search

    async def run():
        async with open_database(ctx.obj) as conn:
            return await search(conn, model, text=text, image=image, k=k, min_score=min_score)

    for match in asyncio.run(run()):
        if as_json:
            typer.echo(json.dumps(match.as_dict(), ensure_ascii=False))
        else:
            typer.echo(f"{match.distance:8.4f}  {match.score:6.4f}  {match.locator}")


@with_backend_options
def text_embed_command(
    ctx: typer.Context,
    texts: Annotated[
        list[str] | None, typer.Argument(help="Texts to save; with none, embed the pending ones.")
    ] = None,
    model=None,
) -> None:
    """Save texts for SQL search (table text_embeddings, view text_queries) and embed pending ones."""
    from pipeline.db import open_database
    from pipeline.search import save_text_queries

    settings: Settings = ctx.obj

    async def run():
        async with open_database(settings) as conn:
            return await save_text_queries(conn, model, texts or [])

    done = asyncio.run(run())
    typer.echo(f"embedded {len(done)} text(s) in space {model.space.name}")
