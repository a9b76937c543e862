"""Every error as `application/problem+json` (RFC 9457): a status, its title and one clear line of
detail (plus the CLI's hint when there is one). Never a traceback: an unexpected error is logged
here and answered "internal error; see the server log"."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from pipeline.errors import (
    ConfigError,
    ImgvecError,
    PermissionProblem,
    RetryableError,
    UsageError,
    first_line,
)
from pipeline.service.results import api_terms

log = logging.getLogger("imgvec.serve")

MEDIA_TYPE = "application/problem+json"


class Problem(Exception):
    """An answer other than 2xx that the service decides itself (404 unknown id, 413 too big...)."""

    def __init__(self, status: int, detail: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers


def problem_response(
    status: int, detail: str, *, hint: str | None = None, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    body = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    if hint:
        body["hint"] = hint
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def status_of(err: ImgvecError) -> int:
    """What an imgvec error means over HTTP: the request's fault (4xx) or the server's (5xx)."""
    from pipeline.search.answers import NotFound, QueryError

    if isinstance(err, NotFound):
        return 404
    if isinstance(err, QueryError | UsageError | ConfigError):
        return 400  # what was asked cannot be done as asked (the detail says why)
    if isinstance(err, PermissionProblem):
        return 403
    if isinstance(err, RetryableError):
        return 503
    return 400 if err.exit_code == 2 else 500


def install(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, err: Problem):
        return problem_response(err.status, err.detail, headers=err.headers)

    @app.exception_handler(ImgvecError)
    async def _imgvec(request: Request, err: ImgvecError):
        status = status_of(err)
        if status >= 500:
            log.error("%s %s: %s", request.method, request.url.path, first_line(err))
        return problem_response(status, api_terms(first_line(err)), hint=api_terms(err.hint))

    @app.exception_handler(HTTPException)
    async def _http(request: Request, err: HTTPException):
        return problem_response(err.status_code, str(err.detail), headers=err.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, err: RequestValidationError):
        return problem_response(422, "; ".join(_readable(e) for e in err.errors()))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, err: Exception):
        # (Starlette re-raises it after this answer: the server's log gets the traceback.)
        log.error("%s %s: unexpected %s", request.method, request.url.path, type(err).__name__)
        return problem_response(500, "internal error; see the server log")


_LOCATIONS = ("query", "path", "body", "header", "cookie")


def _readable(error: dict) -> str:
    """`k: must be at least 1` rather than pydantic's location tuples and type names."""
    where = ".".join(str(part) for part in error.get("loc", ()) if part not in _LOCATIONS)
    kind, context = error.get("type"), error.get("ctx") or {}
    if kind == "greater_than_equal":
        message = f"must be at least {context.get('ge')}"
    elif kind == "less_than_equal":
        message = f"must be at most {context.get('le')}"
    elif kind == "missing":
        message = "required"
    else:  # "Input should be a valid integer, unable to parse ..." -> "must be a valid integer"
        message = str(error.get("msg", "invalid")).split(", unable to")[0]
        message = message.replace("Input should be", "must be")
    return f"{where}: {message}" if where else message
