"""Exit codes and the one line a failure prints: retryable failures (database or network down,
quota exhausted) exit 75 (EX_TEMPFAIL), permanent ones 1. An unreachable DATABASE_URL fails within
seconds, naming the host and the cause; connect() retries the connection and the codec registration
as one, so a server that cuts a fresh connection is ridden out."""

from __future__ import annotations

import asyncio
import socket
import time

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from pipeline.db import connect
from pipeline.errors import DatabaseUnavailable
from tests.conftest import free_port, run_imgvec

PASSWORD = "Planted-unreachable-pw"
TEMPFAIL = 75


@pytest.fixture
def black_hole():
    """A TCP port that completes the handshake (the kernel's backlog) but never answers: what a
    hung server or a half-open NAT path looks like."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


def unreachable_urls(black_hole_port: int) -> dict[str, tuple[str, str]]:
    """case -> (DATABASE_URL, the expected first line's tail after "cannot reach PostgreSQL at ")"""
    closed = free_port()
    return {
        "refused": (
            f"postgresql://imgvec:{PASSWORD}@127.0.0.1:{closed}/imgvec",
            f"host 127.0.0.1:{closed}: connection refused",
        ),
        "dns": (
            f"postgresql://imgvec:{PASSWORD}@nonexistent.invalid:5432/imgvec",
            "host nonexistent.invalid:5432: name does not resolve",
        ),
        "timeout": (
            f"postgresql://imgvec:{PASSWORD}@127.0.0.1:{black_hole_port}/imgvec",
            f"host 127.0.0.1:{black_hole_port}: timed out",
        ),
    }


@pytest.mark.parametrize("case", ["refused", "dns", "timeout"])
def test_unreachable_database_url_fails_fast_naming_host_and_cause(case, black_hole):
    url, expected = unreachable_urls(black_hole)[case]
    started = time.monotonic()
    # The default IMGVEC_CONNECT_TIMEOUT (15 s) is for a server that says "not now"; none of these
    # ever will, so it must not be spent on them.
    result = run_imgvec("db", "upgrade", env={"DATABASE_URL": url}, check=False)
    elapsed = time.monotonic() - started
    print(f"{case}: {elapsed:.2f} s")
    assert result.returncode == TEMPFAIL, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith(f"imgvec: error: cannot reach PostgreSQL at {expected}"), lines
    assert lines[1].startswith("imgvec: hint:") and len(lines) == 2, lines
    assert "imgvec:***@" in lines[1]  # which URL, password masked
    assert PASSWORD not in result.stderr + result.stdout
    assert elapsed <= 5.0


async def test_connect_to_a_black_hole_gives_up_in_seconds(black_hole):
    started = time.monotonic()
    with pytest.raises(DatabaseUnavailable, match="timed out"):
        await connect(f"postgresql://imgvec@127.0.0.1:{black_hole}/imgvec", timeout=15)
    assert time.monotonic() - started < 3.5


class CuttingProxy:
    """TCP on 127.0.0.1 to the embedded server's unix socket, cutting the first `cuts` connections
    right after the login, when the client sends its first query: what a server resetting after a
    crash does to a connection it had just accepted."""

    def __init__(self, socket_path: str, cuts: int) -> None:
        self.socket_path, self.cuts = socket_path, cuts
        self.connections = 0

    async def __aenter__(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def __aexit__(self, *exc) -> None:
        self.server.close()

    async def _serve(self, client_r, client_w) -> None:
        self.connections += 1
        doomed = self.connections <= self.cuts
        server_r, server_w = await asyncio.open_unix_connection(self.socket_path)
        # The startup message (sslmode=disable: no SSLRequest before it): int32 length, then body.
        head = await client_r.readexactly(4)
        server_w.write(head + await client_r.readexactly(int.from_bytes(head, "big") - 4))
        replies = asyncio.ensure_future(_pump(server_r, client_w))
        if doomed:
            await client_r.read(1)  # the first byte of the first query
            for writer in (client_w, server_w):
                writer.transport.abort()
            replies.cancel()
            return
        await _pump(client_r, server_w)
        await replies


async def _pump(reader, writer) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


async def test_connect_retries_the_codec_registration_cut_by_the_server(fresh_url):
    setup = await asyncpg.connect(fresh_url)
    await setup.execute("CREATE EXTENSION IF NOT EXISTS vector")
    await setup.close()
    parsed = make_url(fresh_url)
    socket_path = f"{parsed.query['host']}/.s.PGSQL.{parsed.query.get('port', 5432)}"
    proxy = CuttingProxy(socket_path, cuts=2)
    async with proxy as port:
        url = f"postgresql://{parsed.username}@127.0.0.1:{port}/{parsed.database}?sslmode=disable"
        conn = await connect(url, timeout=10)
        try:
            vector = await conn.fetchval("SELECT '[1,2,3]'::vector")
        finally:
            await conn.close()
    assert proxy.connections == 3  # two cut during the registration, the third went through
    assert not isinstance(vector, str) and vector.to_list() == [1, 2, 3]  # the codec decoded it


def test_dead_vertex_endpoint_exits_tempfail(fresh_url):
    """A network error from a client library that escapes the stage is a retryable failure."""
    result = run_imgvec(
        "text-embed",
        "a red car",
        "--backend",
        "vertex",
        "--project",
        "p",
        "--dimension",
        "128",
        "--api-endpoint",
        f"http://127.0.0.1:{free_port()}",
        env={"DATABASE_URL": fresh_url},
        check=False,
    )
    assert result.returncode == TEMPFAIL, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("imgvec: error: temporarily unavailable: ConnectionError"), lines
    assert lines[1] == "imgvec: hint: rerun the same command later; it resumes where it stopped"
    assert "Traceback" not in result.stderr


def test_storage_down_exits_tempfail(tmp_path, fresh_url, s3):
    dead = f"http://127.0.0.1:{free_port()}"
    result = run_imgvec(
        "list",
        "s3://photos/2026/",
        "--work-dir",
        str(tmp_path / "work"),
        env={
            "DATABASE_URL": fresh_url,
            "IMGVEC_S3_ENDPOINT_URL": dead,
            "IMGVEC_STORAGE_TIMEOUT": "1",
        },
        check=False,
    )
    assert result.returncode == TEMPFAIL, result.stderr
    assert result.stderr.startswith("imgvec: error: cannot list s3://photos/2026/")


def test_usage_and_permanent_failures_keep_their_codes(tmp_path, fresh_url):
    env = {"DATABASE_URL": fresh_url}
    usage = run_imgvec("list", env=env, check=False)  # the source is missing
    assert usage.returncode == 2
    missing = run_imgvec("list", str(tmp_path / "no-such-folder"), env=env, check=False)
    assert missing.returncode == 1, missing.stderr


def _google(name: str, *args):
    from google.api_core import exceptions

    return getattr(exceptions, name)(*args)


def _boto(code: str, status: int):
    from botocore.exceptions import ClientError

    return ClientError(
        {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "GetObject"
    )


def _caused(outer: Exception, cause: Exception) -> Exception:
    outer.__cause__ = cause
    return outer


@pytest.mark.parametrize(
    ("make_error", "transient"),
    [
        (lambda: _google("ResourceExhausted", "Quota exceeded for aiplatform"), True),
        (lambda: _google("TooManyRequests", "429"), True),
        (lambda: _google("ServiceUnavailable", "503"), True),
        (lambda: _google("DeadlineExceeded", "deadline"), True),
        (lambda: _google("PermissionDenied", "403"), False),
        (lambda: _google("NotFound", "no such model"), False),
        (lambda: _boto("SlowDown", 503), True),
        (lambda: _boto("NoSuchBucket", 404), False),
        (lambda: ConnectionRefusedError(111, "refused"), True),
        (lambda: socket.gaierror(-2, "Name or service not known"), True),
        (lambda: FileNotFoundError(2, "gone"), False),
        (lambda: OSError(101, "Network is unreachable"), True),
        (lambda: ExceptionGroup("tasks", [ConnectionResetError(), TimeoutError()]), True),
        (lambda: ExceptionGroup("tasks", [ConnectionResetError(), KeyError("bug")]), False),
        (
            lambda: _caused(RuntimeError("embedding failed"), _google("ResourceExhausted", "q")),
            True,
        ),
        (lambda: ValueError("a bug"), False),
    ],
)
def test_transient_errors_are_told_from_permanent_ones(make_error, transient):
    """The real exception classes of google-api-core, botocore and the standard library."""
    from pipeline.errors import is_transient as _is_transient

    assert _is_transient(make_error()) is transient
