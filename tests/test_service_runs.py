"""`POST /api/runs` and friends over a real database and a real CLIP (ViT-B-32, pretrained=None):
a run of a configured folder makes its images searchable, one run of a source at a time, the
read-only role is refused, reruns embed only what is new (or everything, with force), a run of
some locators marks nothing deleted, the runs table's history lists every stage run, and a
Ctrl-C of `imgvec serve` stops its run as a Ctrl-C of `imgvec run` would."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
import uuid
from pathlib import Path

import httpx
import pytest

from pipeline.db import open_database
from pipeline.db.roles import grant_reader
from pipeline.plugins import get_backend
from pipeline.search import search
from pipeline.service.app import create_app
from pipeline.service.config import ServiceConfig
from pipeline.settings import Settings
from tests.images import encode, photo, write_images
from tests.service_fixtures import Gallery, ServiceProcess

pytest.importorskip("open_clip")

IMAGES = 6


@pytest.fixture(scope="module")
def clip():
    return get_backend("clip", pretrained="none", device="cpu")


@pytest.fixture
def folder(tmp_path) -> Path:
    write_images(
        tmp_path / "images", {f"img{i:02d}.png": encode(photo(i), "PNG") for i in range(IMAGES)}
    )
    return tmp_path / "images"


@contextlib.asynccontextmanager
async def serving(settings: Settings, backend, work: Path, *sources: Path):
    """`imgvec serve --source ...`'s app (its lifespan run) through an httpx client."""
    config = ServiceConfig(
        settings, default_backend=backend, work_dir=str(work), sources=[str(s) for s in sources]
    )
    app = create_app(config)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://test") as client,
    ):
        yield client


@pytest.fixture
async def api(settings, clip, folder, tmp_path):
    async with serving(settings, clip, tmp_path / "work", folder) as client:
        yield client


async def start(api: httpx.AsyncClient, source: str, **options) -> dict:
    answer = await api.post("/api/runs", json={"source": source, **options})
    assert answer.status_code == 202, answer.text
    return answer.json()


async def finished(api: httpx.AsyncClient, url: str, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        progress = (await api.get(url)).json()
        if progress["state"] not in ("queued", "running"):
            return progress
        await asyncio.sleep(0.1)
    raise TimeoutError(f"{url} still {progress['state']} after {timeout} s")


async def test_a_run_makes_the_folder_searchable_one_run_per_source_at_a_time(
    api, folder, settings, clip
):
    started = await start(api, str(folder))
    assert started["state"] in ("queued", "running") and started["url"].endswith(started["id"])

    again = await api.post("/api/runs", json={"source": str(folder)})
    assert again.status_code == 409, again.text
    assert again.headers["content-type"] == "application/problem+json"
    assert started["url"] in again.json()["detail"]

    progress = await finished(api, started["url"])
    assert progress["state"] == "succeeded", progress
    assert progress["error"] is None and progress["stage"] is None
    assert progress["counts"]["list"]["new"] == IMAGES
    assert progress["counts"]["embed"]["embedded"] == IMAGES
    assert progress["counts"]["load"]["rows"] == IMAGES
    assert progress["started_at"] <= progress["finished_at"]

    async with open_database(settings) as conn:
        matches = await search(conn, clip, text="a photo", k=IMAGES + 5)
    assert sorted(m.name for m in matches) == [f"img{i:02d}.png" for i in range(IMAGES)]

    history = (await api.get("/api/runs", params={"limit": 3})).json()["runs"]
    assert [run["stage"] for run in history] == ["load", "embed", "list"]
    assert [run["run_id"] for run in history] == [
        progress["run_ids"][stage] for stage in ("load", "embed", "list")
    ]
    assert {run["status"] for run in history} == {"succeeded"}
    embed = history[1]
    assert embed["space"] == clip.space.name and embed["counts"]["embedded"] == IMAGES
    assert embed["exit_code"] == 0 and embed["error"] is None


async def test_a_run_of_another_source_waits_for_the_one_running(settings, clip, folder, tmp_path):
    other = tmp_path / "other"
    write_images(other, {f"o{i}.png": encode(photo(200 + i), "PNG") for i in range(3)})
    async with serving(settings, clip, tmp_path / "work", folder, other) as client:
        first = await start(client, str(folder))
        second = await start(client, str(other))
        assert second["state"] == "queued"
        again = await client.post("/api/runs", json={"source": str(other)})
        assert again.status_code == 409 and "queued" in again.json()["detail"]
        done = [await finished(client, run["url"]) for run in (first, second)]
    assert [run["state"] for run in done] == ["succeeded", "succeeded"]
    assert done[0]["finished_at"] <= done[1]["started_at"]
    assert [run["counts"]["embed"]["embedded"] for run in done] == [IMAGES, 3]


async def test_a_rerun_embeds_only_what_is_new_and_force_re_embeds(api, folder):
    first = await finished(api, (await start(api, str(folder)))["url"])
    assert first["counts"]["embed"]["embedded"] == IMAGES

    rerun = await finished(api, (await start(api, str(folder)))["url"])
    assert rerun["state"] == "succeeded"
    assert rerun["counts"]["list"]["unchanged"] == IMAGES
    assert rerun["counts"]["embed"].get("embedded", 0) == 0

    forced = await finished(api, (await start(api, str(folder), force=True))["url"])
    assert forced["state"] == "succeeded"
    assert forced["counts"]["embed"]["embedded"] == IMAGES


async def test_without_backend_options_a_run_goes_into_the_default_space(
    settings, clip, folder, tmp_path
):
    work = tmp_path / "work"
    async with serving(settings, None, work, folder) as client:
        refused = await client.post("/api/runs", json={"source": str(folder)})
    assert refused.status_code == 400 and "backend options" in refused.json()["detail"]

    async with serving(settings, clip, work, folder) as client:
        await finished(client, (await start(client, str(folder)))["url"])

    write_images(folder, {"new.png": encode(photo(100), "PNG")})
    async with serving(settings, None, work, folder) as client:
        rerun = await finished(client, (await start(client, str(folder)))["url"])
        history = (await client.get("/api/runs", params={"limit": 2})).json()["runs"]
    assert rerun["state"] == "succeeded", rerun
    assert rerun["counts"]["embed"]["embedded"] == 1
    assert history[1]["stage"] == "embed" and history[1]["space"] == clip.space.name


async def test_a_run_of_some_locators_embeds_them_and_marks_nothing_deleted(api, folder, settings):
    await finished(api, (await start(api, str(folder)))["url"])
    (folder / "img00.png").unlink()  # gone: only a full listing may say so
    write_images(
        folder, {"new1.png": encode(photo(100), "PNG"), "new2.png": encode(photo(101), "PNG")}
    )
    wanted = f"file://{(folder / 'new1.png').resolve()}"
    outside = f"file://{(folder.parent / 'secret.png').resolve()}"
    write_images(folder.parent, {"secret.png": encode(photo(102), "PNG")})

    partial = await finished(
        api, (await start(api, str(folder), locators=[wanted, outside]))["url"]
    )
    assert partial["state"] == "succeeded", partial
    assert partial["counts"]["list"]["new"] == 1
    assert partial["counts"]["list"].get("deleted", 0) == 0
    assert partial["counts"]["list"]["not_listed"] == 1  # the file outside the source: never read
    assert partial["counts"]["embed"]["embedded"] == 1
    async with open_database(settings) as conn:
        live = await conn.fetch("SELECT name FROM objects WHERE deleted_at IS NULL ORDER BY name")
    assert [r["name"] for r in live] == [f"img{i:02d}.png" for i in range(IMAGES)] + ["new1.png"]

    full = await finished(api, (await start(api, str(folder)))["url"])
    assert full["counts"]["list"]["deleted"] == 1 and full["counts"]["list"]["new"] == 1


async def test_an_unknown_source_is_a_404_naming_the_configured_ones(api, folder, tmp_path):
    for source in (str(tmp_path), "gs://bucket/other/", "../../etc"):
        answer = await api.post("/api/runs", json={"source": source})
        assert answer.status_code == 404, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
        assert str(folder) in answer.json()["detail"]
    missing = await api.get("/api/runs/0123456789ab")
    assert missing.status_code == 404 and "GET /api/runs" in missing.json()["detail"]


async def test_a_failed_run_says_why_in_one_line(api, folder):
    for image in folder.iterdir():
        image.unlink()
    folder.rmdir()  # the configured folder is gone since the server started
    failed = await finished(api, (await start(api, str(folder)))["url"])
    assert failed["state"] == "failed" and failed["stage"] == "list"
    assert failed["error"].startswith(f"{folder}: no such folder")
    assert "\n" not in failed["error"] and "Traceback" not in failed["error"]
    assert failed["finished_at"] is not None


async def test_the_configured_source_is_found_by_its_root_too(api, folder):
    started = await start(api, f"file://{folder.resolve()}/")
    assert started["source"] == str(folder)
    assert (await finished(api, started["url"]))["state"] == "succeeded"


async def test_the_read_only_role_may_not_start_a_run(settings, fresh_url, clip, folder, tmp_path):
    async with open_database(settings) as conn:  # (migrated: the role gets its grants)
        reader = f"reader_{uuid.uuid4().hex[:8]}"
        await grant_reader(conn, reader)
    try:
        as_reader = Settings(home=settings.home, database_url=with_user(fresh_url, reader))
        async with serving(as_reader, clip, tmp_path / "work", folder) as client:
            answer = await client.post("/api/runs", json={"source": str(folder)})
            history = await client.get("/api/runs")
        assert answer.status_code == 403, answer.text
        assert "grant-reader" in answer.json()["detail"]
        assert history.status_code == 200 and history.json() == {"runs": []}
    finally:
        async with open_database(settings) as conn:
            await conn.execute(f"DROP OWNED BY {reader} CASCADE")
            await conn.execute(f"DROP ROLE {reader}")


def with_user(url: str, user: str) -> str:
    """The URL as another role of the embedded server (which trusts local connections)."""
    from sqlalchemy.engine import make_url

    return make_url(url).set(username=user, password=None).render_as_string(hide_password=False)


def test_ctrl_c_of_the_server_stops_its_run_as_imgvec_run_stops(settings, tmp_path):
    """SIGINT to `imgvec serve` mid-embed: the server stops, the embed run is closed as
    interrupted (its finished parts kept: the embed stage's own tests show the resuming), and
    the rerun, after a restart, completes."""
    folder = tmp_path / "many"
    write_images(folder, {f"p{i:03d}.png": encode(photo(i), "PNG") for i in range(MANY)})
    database = Gallery(
        settings.database_url.get_secret_value(), settings.home, folder, tmp_path / "work"
    )
    server = ServiceProcess(database, "--source", str(folder))
    try:
        with server.client() as client:
            assert client.post("/api/runs", json={"source": str(folder)}).status_code == 202
            polled(client, "/api/runs?limit=1", embedding)
        server.process.send_signal(signal.SIGINT)
        # (130 once `imgvec serve` exits as `imgvec run` does after a graceful stop; 0 until then)
        assert server.process.wait(60) == 130, server.output
    finally:
        server.stop()
    rows = asyncio.run(stage_runs(settings))
    assert [(r["stage"], r["status"]) for r in rows] == [
        ("list", "succeeded"),
        ("embed", "interrupted"),
    ], rows
    assert rows[1]["error"].startswith("stopped by SIGINT")

    server = ServiceProcess(database, "--source", str(folder))
    try:
        with server.client() as client:
            answer = client.post("/api/runs", json={"source": str(folder)}).json()
            rerun = polled(client, answer["url"], lambda p: p["state"] not in GOING)
    finally:
        server.stop()
    assert rerun["state"] == "succeeded", rerun
    embed = rerun["counts"]["embed"]
    assert embed.get("embedded", 0) + embed.get("already_embedded", 0) == MANY
    assert asyncio.run(searchable(settings)) == MANY


MANY = 40
GOING = ("queued", "running")


def embedding(history: dict) -> bool:
    """The newest stage run is an embed stage at work (the model loaded, images going in)."""
    return [(r["stage"], r["status"]) for r in history["runs"]] == [("embed", "running")]


def polled(client: httpx.Client, url: str, done, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = client.get(url).json()
        if done(answer):
            return answer
        time.sleep(0.1)
    raise TimeoutError(f"{url}: {answer}")


async def stage_runs(settings: Settings) -> list[dict]:
    async with open_database(settings) as conn:
        return [dict(r) for r in await conn.fetch("SELECT * FROM runs ORDER BY run_id")]


async def searchable(settings: Settings) -> int:
    async with open_database(settings) as conn:
        return await conn.fetchval("SELECT count(*) FROM image_embeddings")
