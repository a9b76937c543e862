"""`imgvec serve`: the search API and the gallery page (pipeline/service/), run by uvicorn."""

from __future__ import annotations

import errno
import socket
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
    import asyncio
    import logging

    import uvicorn

    from pipeline import interrupt
    from pipeline.service.app import create_app
    from pipeline.service.security import RedactSecretsInAccessLog
    from pipeline.service.state import ServiceState

    # Everything that can fail at start fails here, before the banner and before uvicorn, as the
    # ImgvecError it is (one line and a hint from main(), its exit code): uvicorn would log a
    # traceback for a failed lifespan or bind and exit 3. First the address (instant, no database).
    sock = _bind(config.host, config.port)
    app = create_app(config)
    server = uvicorn.Server(uvicorn.Config(app, log_level="info"))

    async def serve() -> None:
        # The database, on the loop that serves (the pool belongs to it): the lifespan then uses
        # this state rather than opening its own.
        app.state.service = await ServiceState.open(config)
        try:
            # (only now: the check above logs as any command's does, not alembic's INFO lines)
            logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
            logging.getLogger("uvicorn.access").addFilter(RedactSecretsInAccessLog())
            _banner(config, sock)
            await server.serve(sockets=[sock])
        finally:
            await app.state.service.close()

    try:
        asyncio.run(serve(), loop_factory=_loop_factory(server.config))
    except KeyboardInterrupt:  # uvicorn stopped cleanly, then re-raised the signal it caught
        pass
    finally:
        sock.close()
    # A run of POST /api/runs that wound down on the signal leaves only the flag (uvicorn returns
    # normally then): exit as a stopped `imgvec run` does, 130 / 143.
    if interrupt.requested():
        typer.echo(f"imgvec serve: {interrupt.describe()}", err=True)
        raise typer.Exit(interrupt.exit_code())


def _bind(host: str, port: int) -> socket.socket:
    """A socket bound to host:port (uvicorn listens on it), or a ConfigError naming the address."""
    from pipeline.errors import ConfigError

    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET  # (as uvicorn itself binds)
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # (a restart need not wait)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as err:
        sock.close()
        if err.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"cannot listen on {shown}: the address is already in use",
                hint="another server (an imgvec serve still running?) listens there: stop it, "
                "or pass another --port",
            ) from None
        raise ConfigError(
            f"cannot listen on {shown}: {err.strerror or err}",
            hint="pass a --host this machine has (127.0.0.1 by default) and a --port you may use "
            "(one above 1023 unless privileged)",
        ) from None
    return sock


def _banner(config, sock: socket.socket) -> None:
    # The URL only: never the token (nor the database URL). The port bound (--port 0 picks one).
    shown = f"[{config.host}]" if ":" in config.host else config.host
    typer.echo(
        f"imgvec serve: http://{shown}:{sock.getsockname()[1]}/ (API docs: /api/docs"
        f"{'; token required' if config.token else ''})",
        err=True,
    )


def _loop_factory(config):
    """uvicorn's event loop (uvloop when installed), as its own run() would make it."""
    if hasattr(config, "get_loop_factory"):  # uvicorn >= 0.36
        return config.get_loop_factory()
    config.setup_event_loop()  # older: sets the event loop policy instead
    return None
