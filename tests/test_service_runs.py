"""`POST /api/runs` and friends over a real database and a real CLIP (ViT-B-32, pretrained=None):
a run of a configured folder makes its images searchable, one run of a source at a time, the
read-only role is refused, reruns embed only what is new (or everything, with force), a run of
some locators marks nothing deleted, and the runs table's history lists every stage run."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from pipeline.db import open_database
from pipeline.db.roles import grant_reader
from pipeline.plugins import get_backend
from pipeline.search import search
from pipeline.service import problems, runs_api
from pipeline.service.config import ServiceConfig
from pipeline.service.state import ServiceState
from pipeline.settings import Settings
from tests.images import encode, photo, write_images

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


async def serve(settings: Settings, clip, folder: Path, work: Path, *more: Path):
    """An httpx client of an app serving the runs router, as `imgvec serve --source FOLDER`."""
    sources = [str(f) for f in (folder, *more)]
    config = ServiceConfig(settings, default_backend=clip, work_dir=str(work), sources=sources)
    state = await ServiceState.open(config)
    app = FastAPI()
    problems.install(app)
    app.include_router(runs_api.router)
    app.state.service = state
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
    return client, state


@pytest.fixture
async def api(settings, clip, folder, tmp_path):
    client, state = await serve(settings, clip, folder, tmp_path / "work")
    yield client
    await client.aclose()
    await state.close()


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
    client, state = await serve(settings, clip, folder, tmp_path / "work", other)
    try:
        first = await start(client, str(folder))
        second = await start(client, str(other))
        assert second["state"] == "queued"
        again = await client.post("/api/runs", json={"source": str(other)})
        assert again.status_code == 409 and "queued" in again.json()["detail"]
        done = [await finished(client, run["url"]) for run in (first, second)]
        assert [run["state"] for run in done] == ["succeeded", "succeeded"]
        assert done[0]["finished_at"] <= done[1]["started_at"]
        assert [run["counts"]["embed"]["embedded"] for run in done] == [IMAGES, 3]
    finally:
        await client.aclose()
        await state.close()


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
    client, state = await serve(settings, None, folder, tmp_path / "work")
    try:
        refused = await client.post("/api/runs", json={"source": str(folder)})
        assert refused.status_code == 400 and "backend options" in refused.json()["detail"]

        first, first_state = await serve(settings, clip, folder, tmp_path / "work")
        await finished(first, (await start(first, str(folder)))["url"])
        await first.aclose()
        await first_state.close()

        write_images(folder, {"new.png": encode(photo(100), "PNG")})
        rerun = await finished(client, (await start(client, str(folder)))["url"])
        assert rerun["state"] == "succeeded", rerun
        assert rerun["counts"]["embed"]["embedded"] == 1
        history = (await client.get("/api/runs", params={"limit": 2})).json()["runs"]
        assert history[1]["stage"] == "embed" and history[1]["space"] == clip.space.name
    finally:
        await client.aclose()
        await state.close()


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
        client, state = await serve(as_reader, clip, folder, tmp_path / "work")
        try:
            answer = await client.post("/api/runs", json={"source": str(folder)})
            assert answer.status_code == 403, answer.text
            assert "grant-reader" in answer.json()["detail"]
            history = await client.get("/api/runs")
            assert history.status_code == 200 and history.json() == {"runs": []}
        finally:
            await client.aclose()
            await state.close()
    finally:
        async with open_database(settings) as conn:
            await conn.execute(f"DROP OWNED BY {reader} CASCADE")
            await conn.execute(f"DROP ROLE {reader}")


def with_user(url: str, user: str) -> str:
    """The URL as another role of the embedded server (which trusts local connections)."""
    from sqlalchemy.engine import make_url

    return make_url(url).set(username=user, password=None).render_as_string(hide_password=False)
