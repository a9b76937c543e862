"""`imgvec serve`: the search API and the gallery page (pipeline/service/), run by uvicorn."""

from __future__ import annotations

from typing import Annotated

import typer

from pipeline.cli.backend_options import backend_from_context
from pipeline.cli.options import CheckpointsDir

_BACKEND_VALUES = "imgvec.backend_options"  # where BackendOptionsCommand keeps the flags' values


def serve_command(
    ctx: typer.Context,
    host: Annotated[
        str,
        typer.Option(help="Address to listen on. Any but loopback needs --token."),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on.")] = 8000,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="IMGVEC_API_TOKEN",
            show_envvar=True,
            show_default=False,
            help="Require this token on every /api/ request (Authorization: Bearer, or the "
            "page's cookie). Better from $IMGVEC_API_TOKEN: a command line is visible to all.",
        ),
    ] = None,
    source: Annotated[
        list[str] | None,
        typer.Option(
            "--source",
            help="A source POST /api/runs may run (repeatable); requests never name paths.",
        ),
    ] = None,
    work_dir: CheckpointsDir = None,
    max_upload_mb: Annotated[
        float, typer.Option(min=0.001, help="Largest image upload, in MB.")
    ] = 20,
) -> None:
    """Serve the search API (/api/, docs at /api/docs) and the gallery page (/).

    Without backend options a request without `space` searches the database's default space.

    Example: IMGVEC_API_TOKEN=... imgvec serve --host 0.0.0.0 --port 8000 --pretrained none
    """
    from pipeline.errors import UsageError
    from pipeline.service.config import ServiceConfig, is_loopback

    if not is_loopback(host) and not token:
        raise UsageError(
            f"--host {host} is reachable from other machines: it needs a token",
            hint="set IMGVEC_API_TOKEN (or --token), or keep the default --host 127.0.0.1",
        )
    settings = ctx.obj
    config = ServiceConfig(
        settings=settings,
        default_backend=backend_from_context(ctx) if _backend_chosen(ctx) else None,
        work_dir=work_dir or settings.work_dir,
        sources=list(source or []),
        token=token or None,
        max_upload_bytes=int(max_upload_mb * 1024 * 1024),
        host=host,
        port=port,
    )
    _serve(config)


def _backend_chosen(ctx: typer.Context) -> bool:
    """Whether any backend flag was given: then its space is the default one searched."""
    values = ctx.meta.get(_BACKEND_VALUES, {})
    for name in values:
        given = ctx.get_parameter_source(name)
        if given is not None and given.name not in ("DEFAULT", "DEFAULT_MAP"):
            return True
    return False


def _serve(config) -> None:
    import logging

    import uvicorn

    from pipeline.service.app import create_app

    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    from pipeline.service.security import RedactSecretsInAccessLog

    logging.getLogger("uvicorn.access").addFilter(RedactSecretsInAccessLog())
    shown = f"[{config.host}]" if ":" in config.host else config.host
    # The URL only: never the token (nor the database URL).
    typer.echo(
        f"imgvec serve: http://{shown}:{config.port}/ (API docs: /api/docs"
        f"{'; token required' if config.token else ''})",
        err=True,
    )
    from pipeline import interrupt

    try:
        uvicorn.run(create_app(config), host=config.host, port=config.port, log_level="info")
    except KeyboardInterrupt:  # uvicorn stopped cleanly, then re-raised the signal it caught
        pass
    # A run of POST /api/runs that wound down on the signal leaves only the flag (uvicorn returns
    # normally then): exit as a stopped `imgvec run` does, 130 / 143.
    if interrupt.requested():
        typer.echo(f"imgvec serve: {interrupt.describe()}", err=True)
        raise typer.Exit(interrupt.exit_code())
