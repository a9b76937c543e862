"""Shared parts of the reliability scenarios: a fresh database per trial, the Vertex fake as the
backend (fast, no torch start-up, so a SIGKILL lands in any stage), and a generated source."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import create_database, drop_database
from tests.fakes.vertex import FakeVertex, FakeVertexConfig
from tests.images import encode, photo, write_images

#: `make soak` raises these
CRASH_TRIALS = int(os.environ.get("IMGVEC_CRASH_TRIALS", "3"))
BURST_SECONDS = float(os.environ.get("IMGVEC_BURST_SECONDS", "4"))


def pytest_collection_modifyitems(items):
    for item in items:
        if "reliability" in str(item.fspath):
            item.add_marker(pytest.mark.fault)


@pytest.fixture
async def new_database(server_url):
    """A factory of fresh databases (several per test), dropped afterwards."""
    names: list[str] = []

    async def make() -> str:
        name, url = await create_database(server_url, prefix="r")
        names.append(name)
        return url

    yield make
    for name in names:
        await drop_database(server_url, name)


@pytest.fixture
def vertex():
    fake = FakeVertex(FakeVertexConfig(latency=(0.005, 0.03)))
    yield fake
    fake.stop()


def vertex_args(fake: FakeVertex, *extra: str) -> list[str]:
    return [
        "--backend",
        "vertex",
        "--project",
        "reliability",
        "--dimension",
        "128",
        "--api-endpoint",
        fake.endpoint,
        "--rate-limit",
        "100000",
        "--concurrency",
        "8",
        *extra,
    ]


def make_source(folder: Path, count: int, start: int = 0) -> None:
    write_images(
        folder,
        {f"img{i:04d}.png": encode(photo(i, (48, 32)), "PNG") for i in range(start, start + count)},
    )
