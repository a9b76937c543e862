"""`imgvec models`: the models each installed backend offers, with their dimension and weights."""

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
    from pipeline import plugins

    typer.echo("backend  model  dimension  weights (--pretrained; * default, + in the local cache)")
    for name in reversed(plugins.backend_names()):  # the default backend's long list last
        for model, dimension, weights in plugins.backend_class(name).models(all_models):
            typer.echo(f"{name:<6}  {model}  {dimension}  {weights}")
