"""The token: with one configured, every /api/ request must carry it, as `Authorization: Bearer
<token>` (programs) or the cookie `imgvec_token` (the page, so that `<img src>` works too).

A plain ASGI middleware rather than a dependency: it also covers /api/docs, the OpenAPI schema,
unknown /api/ paths and routers added by others, and it costs no thread hop. The page itself
(`/`, `/static/...`) holds no data and is served without the token."""

from __future__ import annotations

import hmac
import json
import logging
import re
from http.cookies import CookieError, SimpleCookie

COOKIE = "imgvec_token"
PROTECTED_PREFIX = "/api/"


class TokenMiddleware:
    def __init__(self, app, token: str) -> None:
        self.app = app
        self._token = token.encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not _protected(scope["path"]):
            return await self.app(scope, receive, send)
        if self._carries_token(scope):
            return await self.app(scope, receive, send)
        await _unauthorized(send)

    def _carries_token(self, scope) -> bool:
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, given = value.partition(b" ")
                if scheme.lower() == b"bearer" and self._matches(given.strip()):
                    return True
            elif name == b"cookie":
                given_cookie = _cookie(value)
                if given_cookie is not None and self._matches(given_cookie):
                    return True
        return False

    def _matches(self, given: bytes) -> bool:
        return hmac.compare_digest(given, self._token)  # constant time: no timing oracle


def _protected(path: str) -> bool:
    return path == PROTECTED_PREFIX.rstrip("/") or path.startswith(PROTECTED_PREFIX)


def _cookie(header: bytes) -> bytes | None:
    try:
        cookies = SimpleCookie(header.decode("latin-1"))
    except CookieError:
        return None
    morsel = cookies.get(COOKIE)
    return morsel.value.encode("latin-1") if morsel is not None else None


async def _unauthorized(send) -> None:
    body = json.dumps(
        {
            "type": "about:blank",
            "title": "Unauthorized",
            "status": 401,
            "detail": "this server needs its token: send 'Authorization: Bearer <token>' "
            f"or the cookie {COOKIE}",
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode()),
                (b"www-authenticate", b"Bearer"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class RedactSecretsInAccessLog(logging.Filter):
    """The access log writes each request's path with its query: a token a user put there by
    guess (`?token=...`, refused: only the header or the cookie count) must not reach the log."""

    _SECRET = re.compile(r"((?:^|[?&])(?:token|access_token|api_key|apikey|key)=)[^&\s]*", re.I)

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and len(record.args) >= 3:
            args = list(record.args)
            args[2] = self._SECRET.sub(r"\1***", str(args[2]))
            record.args = tuple(args)
        return True
