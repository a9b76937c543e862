"""The load stage and `imgvec run`, on the real embedded PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time

import asyncpg
import numpy as np
import pytest

from pipeline.checkpoints.failures import Failure
from pipeline.checkpoints.parts import Embedded, PartWriter, read_part, space_folder
from pipeline.core.space import EmbeddingSpace
from pipeline.db import connect
from pipeline.listing import list_source
from pipeline.loading import load_work_dir
from pipeline.loading.groups import plan_groups
from pipeline.plugins import get_backend
from pipeline.runner import embed_work_dir
from pipeline.workdir import WorkDir
from tests.conftest import IMGVEC, run_imgvec
from tests.images import encode, photo, write_images

pytest.importorskip("open_clip")


@pytest.fixture(scope="module")
def clips():
    return [get_backend("clip", pretrained="none", device="cpu", seed=seed) for seed in (0, 1)]


async def fetch(settings, sql, *args):
    conn = await connect(settings.database_url.get_secret_value())
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


async def test_two_spaces_load_side_by_side_and_match_the_parts(tmp_path, settings, clips):
    write_images(tmp_path / "images", {f"img{i}.jpg": encode(photo(i), "JPEG") for i in range(12)})
    work = str(tmp_path / "work")
    await list_source(str(tmp_path / "images"), work_dir=work, settings=settings)
    for backend in clips:
        await embed_work_dir(work_dir=work, backend=backend, settings=settings, part_size=5)
    result = await load_work_dir(work_dir=work, settings=settings)
    assert result.counts["rows"] == 24 and result.counts["parts_loaded"] == 6
    assert sorted(result.indexes) == ["embeddings_space_1_hnsw_l2", "embeddings_space_2_hnsw_l2"]

    counts = dict(
        await fetch(
            settings, "SELECT space_id, count(DISTINCT object_id) FROM embeddings GROUP BY 1"
        )
    )
    assert counts == {1: 12, 2: 12}
    # What is in the table is what the part says, to float32 precision.
    parts = sorted((tmp_path / "work").glob("embeddings/*seed1*/part-*.csv"))
    relpath = str(parts[0].relative_to(tmp_path / "work"))
    from_csv = read_part(WorkDir(work), relpath, 512, has_twin=False)
    from_twin = read_part(WorkDir(work), relpath, 512, csv_size=parts[0].stat().st_size)
    assert from_csv.parsed_csv and not from_twin.parsed_csv
    assert from_twin.locators == from_csv.locators and np.array_equal(
        from_twin.vectors, from_csv.vectors
    )
    locators, vectors = from_csv.locators, from_csv.vectors
    rows = await fetch(
        settings,
        "SELECT o.locator, e.embedding FROM embeddings e JOIN objects o USING (object_id) "
        "WHERE e.space_id = 2 AND o.locator = ANY($1)",
        locators,
    )
    stored = {r["locator"]: r["embedding"].to_numpy() for r in rows}
    assert all(
        np.array_equal(stored[loc], vec) for loc, vec in zip(locators, vectors, strict=False)
    )

    again = await load_work_dir(work_dir=work, settings=settings)
    assert (again.counts["parts_loaded"], again.counts["parts_skipped"]) == (0, 6)


def test_killed_between_copy_and_commit_then_rerun_is_exactly_once(tmp_path, fresh_url):
    """A real crash inside the part's transaction: the test holds a lock on loaded_parts, so the
    load blocks after its COPY and upserts, just before commit; then it is SIGKILLed."""
    write_images(tmp_path / "images", {f"img{i}.jpg": encode(photo(i), "JPEG") for i in range(10)})
    work = str(tmp_path / "work")
    env = dict(os.environ) | {"DATABASE_URL": fresh_url}
    run_imgvec("list", str(tmp_path / "images"), "--work-dir", work, env=env)
    run_imgvec("embed", "--work-dir", work, "--pretrained", "none", "--part-size", "4", env=env)

    async def scenario():
        blocker = await asyncpg.connect(fresh_url)
        await blocker.execute("BEGIN; LOCK TABLE loaded_parts IN EXCLUSIVE MODE")
        proc = subprocess.Popen(
            [*IMGVEC, "load", "--work-dir", work],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while not await blocker.fetchval(
            "SELECT count(*) FROM pg_locks WHERE relation = 'loaded_parts'::regclass AND NOT granted"
        ):
            assert time.monotonic() < deadline and proc.poll() is None
            await asyncio.sleep(0.05)
        # The loader has COPYed part 0 and upserted it; it waits to record the part. Kill it.
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        await blocker.execute("ROLLBACK")
        await blocker.close()

    asyncio.run(scenario())
    check = "SELECT (SELECT count(*) FROM embeddings), (SELECT count(*) FROM loaded_parts)"
    # The killed client's transaction is rolled back by the server once it notices the socket close.
    deadline = time.monotonic() + 10
    while (out := run_imgvec("psql", "-tA", "-c", check, env=env).stdout.strip()) != "0|0":
        assert time.monotonic() < deadline, out
        time.sleep(0.2)

    run_imgvec("load", "--work-dir", work, env=env)
    out = run_imgvec(
        "psql",
        "-tA",
        "-c",
        "SELECT count(*), count(DISTINCT object_id), (SELECT count(*) FROM loaded_parts) FROM embeddings",
        env=env,
    )
    assert out.stdout.strip() == "10|10|3"


async def test_identical_bytes_under_a_new_locator_reuse_the_loaded_vector(
    tmp_path, settings, clips
):
    data = encode(photo(5), "PNG")
    write_images(tmp_path / "images", {"a.png": data})
    work = str(tmp_path / "work")
    for _ in range(2):
        await list_source(str(tmp_path / "images"), work_dir=work, settings=settings)
        await embed_work_dir(work_dir=work, backend=clips[0], settings=settings)
        result = await load_work_dir(work_dir=work, settings=settings)
        write_images(tmp_path / "images", {"copy.png": data})
    assert result.counts["reused"] == 1 and result.counts["rows"] == 0
    rows = await fetch(
        settings,
        "SELECT o.name, e.embedding::text AS v FROM embeddings e JOIN objects o USING (object_id)",
    )
    assert sorted(r["name"] for r in rows) == ["a.png", "copy.png"]
    assert rows[0]["v"] == rows[1]["v"]


async def test_changed_image_replaces_its_vector_and_an_edited_csv_wins_over_its_twin(
    tmp_path, settings, clips
):
    write_images(tmp_path / "images", {f"img{i}.png": encode(photo(i), "PNG") for i in range(3)})
    work = str(tmp_path / "work")
    await list_source(str(tmp_path / "images"), work_dir=work, settings=settings)
    await embed_work_dir(work_dir=work, backend=clips[0], settings=settings, part_size=3)
    # Someone edits the CSV after the embed stage wrote it: the twin is stale and must be ignored.
    part = next((tmp_path / "work").glob("embeddings/*/part-00000.csv"))
    lines = part.read_text().splitlines(keepends=True)
    first_vector = lines[1][lines[1].index('"[') + 1 : lines[1].index(']"') + 1]
    edited = "[" + ",".join(["0.5"] * 4 + ["0"] * 508) + "]"
    part.write_text("".join([lines[0], lines[1].replace(first_vector, edited), *lines[2:]]))
    await load_work_dir(work_dir=work, settings=settings)
    stored = await fetch(
        settings,
        "SELECT o.locator, e.embedding::text AS v FROM embeddings e JOIN objects o USING (object_id)",
    )
    by_locator = {r["locator"]: r["v"] for r in stored}
    assert len(by_locator) == 3 and by_locator[lines[1].split(",", 1)[0]] == edited

    # A changed image: a new part (its twin damaged, so the CSV is parsed) replaces the old vector.
    write_images(tmp_path / "images", {"img1.png": encode(photo(7), "PNG")})
    await list_source(str(tmp_path / "images"), work_dir=work, settings=settings)
    await embed_work_dir(work_dir=work, backend=clips[0], settings=settings)
    twin = next((tmp_path / "work").glob("embeddings/*/part-00001.npy"))
    twin.write_bytes(twin.read_bytes()[:200])
    result = await load_work_dir(work_dir=work, settings=settings)
    assert (
        result.counts["rows"],
        result.counts["replaced"],
        result.counts["parts_parsed_from_csv"],
    ) == (1, 1, 1)
    new_part = next((tmp_path / "work").glob("embeddings/*/part-00001.csv"))
    expected = read_part(
        WorkDir(work), str(new_part.relative_to(tmp_path / "work")), 512, has_twin=False
    ).vectors[0]
    rows = await fetch(
        settings,
        "SELECT e.embedding, e.content_hash = o.content_hash AS current "
        "FROM embeddings e JOIN objects o USING (object_id) WHERE o.name = 'img1.png'",
    )
    assert len(rows) == 1 and rows[0]["current"]
    assert np.array_equal(rows[0]["embedding"].to_numpy(), expected)


async def test_an_object_in_several_groups_of_one_load_keeps_one_row_with_the_last_parts_vector(
    tmp_path, settings
):
    """Groups are prepared while the one before is written: an object whose earlier vector is in
    that uncommitted group, or in a committed one, must be replaced, not COPYed twice. Rows
    matching no object, and one row for several objects (identical bytes), keep each vector with
    its object."""
    images = {f"img{i}.png": encode(photo(i), "PNG") for i in range(5)}
    write_images(tmp_path / "images", images | {"img4-copy.png": images["img4.png"]})
    work = str(tmp_path / "work")
    await list_source(str(tmp_path / "images"), work_dir=work, settings=settings)
    objects = {
        r["name"]: (r["locator"], r["content_hash"])
        for r in await fetch(settings, "SELECT * FROM objects")
    }
    objects["ghost.png"] = (
        "file:///nowhere/ghost.png",
        "md5:0000",
    )  # listed nowhere: matches no object
    space = EmbeddingSpace("test", "hand-written", "v1", 4)
    writer = PartWriter(WorkDir(work), space_folder(space), space, 0)
    last = 6
    assert [len(group) for group in plan_groups(list(range(last + 1)))] == [1, 2, 4]
    appears = {
        "ghost.png": [0, 3],
        "img0.png": range(last + 1),  # in every group: replaced while its last group is in flight
        "img1.png": [1, last],  # in groups 1 and 2
        "img2.png": [0, last],  # in groups 0 and 2: replaced after its group committed
        "img4.png": [0],
    }  # one row for img4 and img4-copy
    for part in range(last + 1):
        writer.write(
            [
                Embedded(*objects[name], np.array([part, k, 0, 1], np.float32))
                for k, (name, parts) in enumerate(appears.items())
                if part in parts
            ],
            [],
        )
    writer.write(
        [], [Failure(*objects["img3.png"], "cannot identify image file", True)]
    )  # a part of failures only
    result = await load_work_dir(work_dir=work, settings=settings)
    rows = sum(len(parts) for parts in appears.values())
    assert (
        result.counts["parts_loaded"],
        result.counts["rows"],
        result.counts["parts_parsed_from_csv"],
    ) == (last + 2, rows, 0)
    assert result.counts["replaced"] == 2 + 1 + 1  # img0 in groups 1 and 2, img1 in 2, img2 in 2
    failures = await fetch(settings, "SELECT locator, reason FROM failures")
    assert [tuple(r) for r in failures] == [(objects["img3.png"][0], "cannot identify image file")]
    stored = await fetch(
        settings,
        "SELECT o.name, e.embedding::text AS v FROM embeddings e JOIN objects o USING (object_id)",
    )
    assert sorted((r["name"], r["v"]) for r in stored) == [
        ("img0.png", f"[{last},1,0,1]"),
        ("img1.png", f"[{last},2,0,1]"),
        ("img2.png", f"[{last},3,0,1]"),
        ("img4-copy.png", "[0,4,0,1]"),
        ("img4.png", "[0,4,0,1]"),
    ]


def test_run_twice_over_an_unchanged_source_embeds_nothing(tmp_path, fresh_url):
    write_images(
        tmp_path / "images",
        {f"img{i}.jpg": encode(photo(i), "JPEG") for i in range(6)} | {"broken.jpg": b"not a jpeg"},
    )
    args = [
        "run",
        str(tmp_path / "images"),
        "--work-dir",
        str(tmp_path / "work"),
        "--pretrained",
        "none",
    ]
    env = {"DATABASE_URL": fresh_url}
    first = run_imgvec(*args, env=env, check=False)
    assert first.returncode == 3 and "6 embedded, 1 failed" in first.stdout
    run_imgvec("psql", "-c", "INSERT INTO text_queries (text) VALUES ('green tree')", env=env)
    second = run_imgvec(*args, env=env, check=False)
    assert second.returncode == 0, second.stderr
    assert "0 new, 0 changed, 7 unchanged" in second.stdout and "0 embedded" in second.stdout
    assert "0 parts loaded" in second.stdout and "embedded 1 pending text query" in second.stdout
    classic = (
        "SELECT image_id FROM image_embeddings WHERE image_id != 'img0.jpg' ORDER BY "
        "embedding <-> (SELECT embedding FROM image_embeddings WHERE image_id = 'img0.jpg') LIMIT 5"
    )
    out = run_imgvec("psql", "-tA", "-c", classic, env=env)
    assert len(out.stdout.split()) == 5


def test_index_rebuild_with_other_parameters(tmp_path, fresh_url):
    write_images(tmp_path / "images", {f"img{i}.jpg": encode(photo(i), "JPEG") for i in range(4)})
    env = {"DATABASE_URL": fresh_url}
    run_imgvec(
        "run",
        str(tmp_path / "images"),
        "--work-dir",
        str(tmp_path / "work"),
        "--pretrained",
        "none",
        env=env,
    )
    out = run_imgvec("index", "--rebuild", "--m", "8", "--ef-construction", "32", env=env)
    assert "embeddings_space_1_hnsw_l2" in out.stdout
    definition = run_imgvec(
        "psql",
        "-tAc",
        "SELECT indexdef FROM pg_indexes WHERE indexname = 'embeddings_space_1_hnsw_l2'",
        env=env,
    ).stdout
    assert "m='8'" in definition and "ef_construction='32'" in definition
    missing = run_imgvec("index", "--space", "nope", env=env, check=False)
    assert missing.returncode == 1 and "no embedding space 'nope'" in missing.stderr
