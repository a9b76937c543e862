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
    from pipeline.embedding.backends.vertex import DIMENSIONS, MODEL

    typer.echo(f"vertex  {MODEL}  dimensions {', '.join(map(str, DIMENSIONS))}")
    weights = clip_models.pretrained_tags()  # imports open_clip (and torch): seconds
    for name in clip_models.model_names():
        tags = weights.get(name, [])
        if tags or all_models:
            dimension = clip_models.embedding_dimension(name)
            typer.echo(f"clip    {name}  {dimension}  {', '.join(tags) or '(no weights)'}")
