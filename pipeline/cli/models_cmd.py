"""`imgvec models`: the models each backend offers, with their dimension and weights."""

from __future__ import annotations

from typing import Annotated

import typer


def models_command(
    all_models: Annotated[
        bool,
        typer.Option("--all", help="Also list CLIP architectures that have no published weights."),
    ] = False,
) -> None:
    """List the embedding models, their dimensions and their weights.

    CLIP architectures (--model) with their pretrained weights (--pretrained), and Vertex AI's
    model with its dimensions (--dimension).

    Example: imgvec models | grep ViT-B
    """
    from pipeline.embedding.backends import clip_models
    from pipeline.embedding.backends.clip import DEFAULT_MODEL, DEFAULT_PRETRAINED
    from pipeline.embedding.backends.vertex import DIMENSIONS, MODEL

    typer.echo("backend  model  dimension  weights (--pretrained; * default, + in the local cache)")
    typer.echo(f"vertex  {MODEL}  {'|'.join(map(str, DIMENSIONS))}  (the service's)")
    weights = clip_models.pretrained_tags()
    for name in clip_models.model_names():
        tags = weights.get(name, [])
        if not (tags or all_models):
            continue
        marked = [
            tag
            + ("*" if (name, tag) == (DEFAULT_MODEL, DEFAULT_PRETRAINED) else "")
            + ("+" if clip_models.is_cached(name, tag) else "")
            for tag in tags
        ]
        default = "*" if name == DEFAULT_MODEL else ""
        dimension = clip_models.embedding_dimension(name)
        typer.echo(f"clip    {name}{default}  {dimension}  {', '.join(marked) or '(no weights)'}")
