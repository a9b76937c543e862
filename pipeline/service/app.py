"""The app: the API routers under /api/, the page's static files, the pool opened by the lifespan."""

from __future__ import annotations

import contextlib
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from pipeline import __version__
from pipeline.service import catalog_api, images_api, problems, runs_api, search_api
from pipeline.service.config import ServiceConfig
from pipeline.service.security import TokenMiddleware
from pipeline.service.state import ServiceState
from pipeline.service.uploads import BodyLimitMiddleware

STATIC = Path(__file__).resolve().parent / "static"


def create_app(config: ServiceConfig) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        # `imgvec serve` opens the state before uvicorn starts, so that a database that is down
        # is its one-line error rather than a traceback from here; it then closes it too.
        if getattr(app.state, "service", None) is not None:
            yield
            return
        app.state.service = await ServiceState.open(config)
        try:
            yield
        finally:
            await app.state.service.close()
            app.state.service = None  # (a next lifespan, e.g. a test's next client, opens anew)

    app = FastAPI(
        title="imgvec",
        version=__version__,
        summary="Search the images imgvec loaded: by text, by image, by example; thumbnails, "
        "originals, diverse samples, embeddings.",
        lifespan=lifespan,
        docs_url=None,  # FastAPI's own page loads Swagger UI from a CDN: served offline below
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    problems.install(app)
    for module in (search_api, images_api, catalog_api, runs_api):
        app.include_router(module.router)
    # The whole body of any request, uploads with their multipart envelope included.
    app.add_middleware(BodyLimitMiddleware, max_upload_bytes=config.max_upload_bytes)
    if config.token:  # (added last: runs first, so a request without the token reads nothing)
        app.add_middleware(TokenMiddleware, token=config.token)
    _offline_docs(app)  # (before /static: its assets are mounted below it)
    app.mount("/static", StaticFiles(directory=STATIC, check_dir=False), name="static")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    return app


def _offline_docs(app: FastAPI) -> None:
    """/api/docs with Swagger UI from the swagger-ui-bundle package (many users, and this
    project's tests, have no network: the CDN page FastAPI serves by default is blank there)."""
    from fastapi.openapi.docs import get_swagger_ui_html
    from swagger_ui_bundle import swagger_ui_path

    app.mount("/static/swagger-ui", StaticFiles(directory=swagger_ui_path), name="swagger-ui")

    @app.get("/api/docs", include_in_schema=False)
    async def docs():
        return get_swagger_ui_html(
            openapi_url="/api/openapi.json",
            title="imgvec API",
            swagger_js_url="/static/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url="/static/swagger-ui/swagger-ui.css",
            swagger_favicon_url="/static/swagger-ui/favicon-32x32.png",
        )
