"""`imgvec embed`: the embed stage."""

import asyncio
import inspect
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from pipeline.settings import Settings


class Backend(StrEnum):
    clip = "clip"
    vertex = "vertex"


DEFAULT_VERTEX_DIMENSION = 1408  # the model's full size
CLIP = "CLIP (--backend clip)"
VERTEX = "Vertex AI (--backend vertex)"


def embed_command(
    ctx: typer.Context,
    backend: Annotated[Backend, typer.Option(help="Embedding backend.")] = Backend.clip,
    work_dir: Annotated[
        str | None,
        typer.Option(
            help="Folder or gs:// prefix holding the list stage's manifest. Default: $IMGVEC_WORK_DIR or ./imgvec-work."
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Re-embed everything, even what earlier parts hold.")
    ] = False,
    retry_failed: Annotated[
        bool,
        typer.Option("--retry-failed", help="Try again the images that failed for good before."),
    ] = False,
    part_size: Annotated[
        int, typer.Option(help="Images per CSV part (the unit a crash can lose).")
    ] = 256,
    read_workers: Annotated[int, typer.Option(help="Threads reading and decoding images.")] = 8,
    model: Annotated[
        str, typer.Option(help="open_clip model name.", rich_help_panel=CLIP)
    ] = "ViT-B-32",
    pretrained: Annotated[
        str,
        typer.Option(
            help="Weights: an open_clip tag, a checkpoint PATH, or none (random, fixed seed).",
            rich_help_panel=CLIP,
        ),
    ] = "laion2b_s34b_b79k",
    device: Annotated[str, typer.Option(help="cpu, cuda, or auto.", rich_help_panel=CLIP)] = "auto",
    batch_size: Annotated[
        int, typer.Option(help="Images per forward pass.", rich_help_panel=CLIP)
    ] = 32,
    seed: Annotated[
        int, typer.Option(help="Seed for --pretrained none.", rich_help_panel=CLIP)
    ] = 0,
    dimension: Annotated[
        int | None,
        typer.Option(
            help="128, 256, 512 or 1408 (default 1408). CLIP's is its model's.",
            rich_help_panel=VERTEX,
            show_default=False,
        ),
    ] = None,
    project: Annotated[
        str | None,
        typer.Option(
            help="Google Cloud project. Default: from credentials.", rich_help_panel=VERTEX
        ),
    ] = None,
    location: Annotated[
        str, typer.Option(help="Vertex AI region.", rich_help_panel=VERTEX)
    ] = "us-central1",
    api_endpoint: Annotated[
        str | None,
        typer.Option(
            help="Override the API endpoint (http:// for a local stand-in).", rich_help_panel=VERTEX
        ),
    ] = None,
    transport: Annotated[str, typer.Option(help="rest or grpc.", rich_help_panel=VERTEX)] = "rest",
    rate_limit: Annotated[
        float,
        typer.Option(
            help="Requests per minute (your quota; default is the documented default quota).",
            rich_help_panel=VERTEX,
        ),
    ] = 120,
    concurrency: Annotated[
        int, typer.Option(help="Requests in flight.", rich_help_panel=VERTEX)
    ] = 16,
) -> None:
    """Embed the images of the latest manifest, writing CSV parts; rerun to resume.

    Exit code 3: finished, but some images failed (see the failures table).

    Example: imgvec embed --backend vertex --dimension 512 --project my-project
    """
    options = dict(locals())  # the parameters, as given
    del options["ctx"]
    from pipeline.checkpoints.manifest import latest_manifest
    from pipeline.workdir import WorkDir

    settings: Settings = ctx.obj
    options["work_dir"] = work_dir or settings.work_dir
    model_backend = backend_from_options(options)  # checks the configuration; loads no model
    latest_manifest(WorkDir(options["work_dir"]))  # fail fast, before any work
    result = run_embedding(settings, model_backend, **stage_options(options))
    typer.echo(f"embedded {result.manifest}: {result.summary()}")
    if note := result.failures_note():
        typer.echo(note, err=True)
    raise typer.Exit(result.exit_code)


_STAGE_OPTIONS = ("work_dir", "force", "retry_failed", "part_size", "read_workers")


def stage_options(options: dict) -> dict:
    return {name: options[name] for name in _STAGE_OPTIONS}


def backend_from_options(options: dict):
    """The backend the options describe. Cheap: models and clients load on first use, so
    a configuration error shows before any listing and a no-op rerun never loads a model."""
    backend_options = {
        name: value
        for name, value in options.items()
        if name in inspect.signature(build_backend).parameters
    }
    return build_backend(**backend_options)


def run_embedding(settings: "Settings", model_backend, **stage: object):
    from pipeline.runner import embed_work_dir

    return asyncio.run(embed_work_dir(backend=model_backend, settings=settings, **stage))


def build_backend(
    backend: Backend,
    *,
    model,
    pretrained,
    device,
    batch_size,
    seed,
    dimension,
    project,
    location,
    api_endpoint,
    transport,
    rate_limit,
    concurrency,
):
    from pipeline.embedding.backends import get_backend
    from pipeline.errors import UsageError

    if backend is Backend.clip:
        clip = get_backend(
            "clip",
            model=model,
            pretrained=pretrained,
            device=device,
            batch_size=batch_size,
            seed=seed,
        )
        if dimension is not None and dimension != clip.space.dimension:
            raise UsageError(
                f"--dimension {dimension}: CLIP {model} makes {clip.space.dimension}-dimensional "
                "vectors, whatever is asked",
                hint="--dimension chooses Vertex AI's size (--backend vertex); for another CLIP "
                "size choose another --model (`imgvec models`)",
            )
        return clip
    return get_backend(
        "vertex",
        project=project,
        location=location,
        dimension=DEFAULT_VERTEX_DIMENSION if dimension is None else dimension,
        api_endpoint=api_endpoint,
        transport=transport,
        requests_per_minute=rate_limit,
        concurrency=concurrency,
    )
