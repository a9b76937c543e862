"""`imgvec diverse`: a sample spread over a space (k-means), or a random one."""

import asyncio
from typing import Annotated

import typer

from pipeline.cli.answers import echo_answer
from pipeline.cli.backend_options import space_from_context


def diverse_command(
    ctx: typer.Context,
    n: Annotated[int, typer.Option(min=1, help="How many images.")] = 20,
    method: Annotated[
        str,
        typer.Option(
            help="kmeans: the image nearest each of n clusters' centres; random: n at random."
        ),
    ] = "kmeans",
    prefix: Annotated[str | None, typer.Option(help="Only images whose name starts so.")] = None,
    where: Annotated[
        list[str] | None,
        typer.Option(help="Only images meeting a condition, as for `imgvec search`. Repeatable."),
    ] = None,
    sample: Annotated[
        int, typer.Option(min=1, help="Vectors clustered, drawn at random from bigger spaces.")
    ] = 20_000,
    seed: Annotated[int, typer.Option(help="Seed of the sample and the clustering.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """n images spread over a space: one per cluster of its vectors, with the cluster's size.

    The backend options select the space (no model is loaded).
    Example: imgvec diverse --n 12 --pretrained none
    """
    if method not in ("kmeans", "random"):
        raise typer.BadParameter("kmeans or random", ctx=ctx, param_hint="--method")
    from pipeline.db import open_database
    from pipeline.search.diverse import diverse
    from pipeline.search.filters import Filters

    Filters(where or []).sql(first_parameter=1)  # an unreadable --where: refused first
    space = space_from_context(ctx)

    async def run():
        async with open_database(ctx.obj) as conn:
            return await diverse(conn, space, n, method, prefix, where, sample, seed)

    def text(pick) -> str:
        cluster = "-" if pick.cluster is None else pick.cluster
        size = "-" if pick.cluster_size is None else pick.cluster_size
        return f"{cluster:>7}  {size:>7}  {pick.locator}"

    picks = asyncio.run(run())
    header = f"{'cluster':>7}  {'size':>7}  locator"
    echo_answer(picks, picks.why_empty, as_json=as_json, header=header, text=text)
