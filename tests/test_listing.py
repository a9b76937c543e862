"""The list stage against real stores: fake-gcs-server, moto's S3 server, local folders."""

from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest

from pipeline.checkpoints.manifest import MANIFEST_COLUMNS, read_manifest
from pipeline.db import connect
from pipeline.errors import ImgvecError
from pipeline.listing import list_source
from pipeline.listing.filters import ObjectFilter
from pipeline.settings import Settings
from tests.conftest import IMGVEC, GcsEmulator, run_imgvec

HOSTILE_NAMES = [
    "with space.jpg",
    'quote\'s "double".png',
    "comma,separated.jpg",
    "ünïcødé 写真.jpeg",
    "'); DROP TABLE objects; --.jpg",
    "semi;colon%20escaped.gif",
]


@pytest.fixture
def settings(fresh_url, imgvec_home, s3_endpoint) -> Settings:
    return Settings(
        home=imgvec_home, database_url=fresh_url, storage_timeout=3, s3_endpoint_url=s3_endpoint
    )


async def listing(spec, tmp_path, settings, **kw):
    return await list_source(spec, work_dir=str(tmp_path / "work"), settings=settings, **kw)


def statuses(result) -> dict[str, str]:
    frame = read_manifest(result.manifest)
    return dict(zip(frame["name"], frame["status"], strict=False))


async def db_objects(settings) -> dict[str, dict]:
    conn = await connect(settings.database_url.get_secret_value())
    try:
        return {r["locator"]: dict(r) for r in await conn.fetch("SELECT * FROM objects")}
    finally:
        await conn.close()


# -- GCS -----------------------------------------------------------------------------------------


async def test_gcs_pagination_and_second_run_reports_nothing_new(tmp_path, settings):
    data = tmp_path / "gcs-data" / "photos"
    for i in range(2600):
        path = data / "2026" / f"IMG{i:05d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\xff\xd8 fake jpeg %d" % i)
    (data / "2026" / "notes.txt").write_text("not an image")
    emulator = GcsEmulator(data_dir=tmp_path / "gcs-data")
    os.environ["STORAGE_EMULATOR_HOST"] = emulator.url
    try:
        first = await listing(
            "gs://photos/2026/", tmp_path, settings, page_size=100, batch_size=700
        )
        assert (
            first.counts["listed"] == 2601
            and first.counts["new"] == 2600
            and first.counts["skipped"] == 1
        )
        frame = read_manifest(first.manifest)
        assert list(frame.columns) == MANIFEST_COLUMNS
        assert (
            frame.loc[frame["name"] == "IMG00007.jpg", "locator"].item()
            == "gs://photos/2026/IMG00007.jpg"
        )
        assert (
            frame.loc[frame["name"] == "notes.txt", "reason"]
            .item()
            .startswith("not an image (.txt")
        )
        assert frame["needs_embedding"].sum() == 2600
        objects = await db_objects(settings)
        assert len(objects) == 2600
        row = objects["gs://photos/2026/IMG00007.jpg"]
        assert (
            row["generation"]
            and row["md5"]
            and row["crc32c"]
            and row["content_hash"].startswith("md5:")
        )
        assert (row["bucket"], row["key"], row["name"]) == (
            "photos",
            "2026/IMG00007.jpg",
            "IMG00007.jpg",
        )

        second = await listing("gs://photos/2026/", tmp_path, settings, page_size=1000)
        assert (second.counts["new"], second.counts["changed"], second.counts["deleted"]) == (
            0,
            0,
            0,
        )
        assert second.counts["unchanged"] == 2600
        assert not read_manifest(second.manifest)["needs_embedding"].any()
    finally:
        os.environ.pop("STORAGE_EMULATOR_HOST", None)
        emulator.stop()


async def test_gcs_added_overwritten_deleted_and_revived(tmp_path, settings, gcs):
    bucket = gcs.client().create_bucket("photos")
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        bucket.blob(f"p/{name}").upload_from_string(b"bytes of " + name.encode())
    await listing("gs://photos/p/", tmp_path, settings, page_size=2)

    bucket.blob("p/d.jpg").upload_from_string(b"new")
    bucket.blob("p/a.jpg").upload_from_string(b"other bytes")  # overwritten: new generation and md5
    bucket.blob("p/b.jpg").upload_from_string(b"bytes of b.jpg")  # rewritten with the same bytes
    bucket.blob("p/c.jpg").delete()
    result = await listing("gs://photos/p/", tmp_path, settings, page_size=2)
    assert statuses(result) == {
        "a.jpg": "changed",
        "b.jpg": "unchanged",
        "c.jpg": "deleted",
        "d.jpg": "new",
    }
    objects = await db_objects(settings)
    assert objects["gs://photos/p/c.jpg"]["deleted_at"] is not None

    bucket.blob("p/c.jpg").upload_from_string(b"bytes of c.jpg")
    result = await listing("gs://photos/p/", tmp_path, settings)
    assert statuses(result)["c.jpg"] == "new"
    assert (await db_objects(settings))["gs://photos/p/c.jpg"]["deleted_at"] is None


async def test_gcs_hostile_names_round_trip_through_csv_and_db(tmp_path, settings, gcs):
    bucket = gcs.client().create_bucket("odd")
    for name in HOSTILE_NAMES:
        bucket.blob(name).upload_from_string(name.encode())
    result = await listing("gs://odd", tmp_path, settings)
    assert sorted(read_manifest(result.manifest)["name"]) == sorted(HOSTILE_NAMES)
    assert sorted(o["key"] for o in (await db_objects(settings)).values()) == sorted(HOSTILE_NAMES)


def test_gcs_unreachable_or_missing_bucket_is_one_line_and_writes_nothing(tmp_path, gcs, fresh_url):
    work = tmp_path / "work"
    env = {
        "DATABASE_URL": fresh_url,
        "IMGVEC_STORAGE_TIMEOUT": "2",
        "STORAGE_EMULATOR_HOST": gcs.url,
    }
    missing = run_imgvec(
        "list", "gs://no-such-bucket/x/", "--work-dir", str(work), env=env, check=False
    )
    assert missing.returncode == 1
    assert missing.stderr.splitlines()[0] == (
        "imgvec: error: cannot list gs://no-such-bucket/x/: bucket 'no-such-bucket' does not exist"
    )
    dead = GcsEmulator()
    dead.stop()
    down = run_imgvec(
        "list",
        "gs://photos/",
        "--work-dir",
        str(work),
        check=False,
        env=env | {"STORAGE_EMULATOR_HOST": dead.url},
    )
    assert down.returncode == 75  # storage down: retryable (EX_TEMPFAIL)
    assert down.stderr.startswith("imgvec: error: cannot list gs://photos/:")
    assert "Traceback" not in missing.stderr + down.stderr
    assert not list(work.glob("manifests/*.csv"))
    out = run_imgvec(
        "psql", "-tA", "-c", "select count(*) from objects", env={"DATABASE_URL": fresh_url}
    )
    assert out.stdout.strip() == "0"
    runs = run_imgvec(
        "psql", "-tA", "-c", "select status from runs", env={"DATABASE_URL": fresh_url}
    )
    assert runs.stdout.split() == ["failed", "failed"]


def test_listing_killed_midway_marks_nothing_deleted(tmp_path, fresh_url):
    data = tmp_path / "gcs-data" / "photos"
    data.mkdir(parents=True)
    for i in range(3000):
        (data / f"IMG{i:05d}.jpg").write_bytes(b"x%d" % i)
    emulator = GcsEmulator(data_dir=tmp_path / "gcs-data")
    work = tmp_path / "work"
    env = dict(os.environ) | {
        "DATABASE_URL": fresh_url,
        "STORAGE_EMULATOR_HOST": emulator.url,
        "IMGVEC_PROGRESS_SECONDS": "0",  # a log line per batch: the kill lands mid-listing
    }
    try:
        run_imgvec("list", "gs://photos", "--work-dir", str(work), env=env)
        emulator.client().bucket("photos").blob("IMG00000.jpg").delete()

        proc = subprocess.Popen(
            [
                *IMGVEC,
                "list",
                "gs://photos",
                "--work-dir",
                str(work),
                "--page-size",
                "20",
                "--db-batch-size",
                "100",
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        progress = json.loads(proc.stderr.readline())  # one batch recorded, the listing goes on
        assert 0 < progress["objects"] < 3000
        proc.send_signal(signal.SIGKILL)
        proc.wait()

        sql = "select count(*) filter (where deleted_at is not null), count(*) from objects"
        out = run_imgvec("psql", "-tA", "-c", sql, env=env)
        assert out.stdout.strip() == "0|3000"
        assert len(list(work.glob("manifests/*.csv"))) == 1

        rerun = run_imgvec("list", "gs://photos", "--work-dir", str(work), env=env)
        assert "0 new, 0 changed, 2999 unchanged, 1 deleted" in rerun.stdout
    finally:
        emulator.stop()


# -- S3 ------------------------------------------------------------------------------------------


async def test_s3_pagination_changes_and_hostile_names(tmp_path, settings, s3):
    s3.create_bucket(Bucket="shots")
    for i in range(1200):
        s3.put_object(Bucket="shots", Key=f"cam/{i:04d}.png", Body=b"png %d" % i)
    # (moto's server answers 404 to a key with a newline; real S3 takes it. Local tests cover it.)
    names = HOSTILE_NAMES + ["tab\there.jpg"]
    for name in names:
        s3.put_object(Bucket="shots", Key=f"cam/{name}", Body=name.encode())
    first = await listing("s3://shots/cam/", tmp_path, settings, page_size=100)
    assert first.counts["new"] == 1200 + len(names)
    frame = read_manifest(first.manifest)
    assert set(names) <= set(frame["name"])
    row = frame[frame["name"] == "0007.png"].iloc[0]
    assert row["content_hash"].startswith("md5:") and row["etag"] and row["size"] == len(b"png 7")

    s3.put_object(Bucket="shots", Key="cam/0001.png", Body=b"changed")
    s3.delete_object(Bucket="shots", Key="cam/0002.png")
    s3.put_object(Bucket="shots", Key="cam/extra.webp", Body=b"w")
    second = await listing("s3://shots/cam/", tmp_path, settings, page_size=100)
    changed = {k: v for k, v in statuses(second).items() if v != "unchanged"}
    assert changed == {"0001.png": "changed", "0002.png": "deleted", "extra.webp": "new"}


async def test_s3_missing_bucket(tmp_path, settings, s3):
    with pytest.raises(ImgvecError, match="bucket 'nope' does not exist"):
        await listing("s3://nope/", tmp_path, settings)
    assert not list((tmp_path / "work").glob("manifests/*.csv"))


# -- local folders and locator files ----------------------------------------------------------


async def test_local_folder_changes_filters_and_hostile_names(tmp_path, settings):
    root = tmp_path / "images"
    (root / "sub dir").mkdir(parents=True)
    names = HOSTILE_NAMES + ["new\nline.jpg", "tab\there.jpg"]
    for name in names:
        (root / "sub dir" / name).write_bytes(name.encode())
    (root / "big.jpg").write_bytes(b"x" * 5000)
    (root / "readme.md").write_text("hi")
    (root / "keep.png").write_bytes(b"keep")
    result = await listing(str(root), tmp_path, settings, object_filter=ObjectFilter(max_size=4000))
    frame = read_manifest(result.manifest)
    reasons = dict(zip(frame["name"], frame["reason"], strict=False))
    assert reasons["big.jpg"].startswith("too large (5000 bytes")
    assert reasons["readme.md"].startswith("not an image (.md")
    assert set(f"sub dir/{n}" for n in names) <= set(frame["name"])
    assert result.counts["new"] == len(names) + 1
    objects = await db_objects(settings)
    assert sorted(o["name"] for o in objects.values()) == sorted(
        [f"sub dir/{n}" for n in names] + ["keep.png"]
    )
    assert (
        objects[f"file://{root.resolve()}/keep.png"]["content_hash"]
        == "md5:" + __import__("hashlib").md5(b"keep").hexdigest()
    )

    (root / "keep.png").write_bytes(b"kept, changed")
    (root / "sub dir" / "with space.jpg").unlink()
    (root / "added.bmp").write_bytes(b"bmp")
    second = await listing(str(root), tmp_path, settings, object_filter=ObjectFilter(max_size=4000))
    changed = {k: v for k, v in statuses(second).items() if v not in ("unchanged", "skipped")}
    assert changed == {
        "keep.png": "changed",
        "sub dir/with space.jpg": "deleted",
        "added.bmp": "new",
    }


async def test_locator_file_plain_and_csv(tmp_path, settings, gcs, s3):
    gcs.client().create_bucket("gbucket").blob("one.jpg").upload_from_string(b"1")
    s3.create_bucket(Bucket="sbucket")
    s3.put_object(Bucket="sbucket", Key="two.png", Body=b"2")
    local = tmp_path / "three.gif"
    local.write_bytes(b"3")
    plain = tmp_path / "locators.txt"
    plain.write_text(f"gs://gbucket/one.jpg\ns3://sbucket/two.png\n{local}\n")
    result = await listing(str(plain), tmp_path, settings)
    assert sorted(read_manifest(result.manifest)["locator"]) == sorted(
        ["gs://gbucket/one.jpg", "s3://sbucket/two.png", f"file://{local.resolve()}"]
    )
    as_csv = tmp_path / "locators.csv"
    as_csv.write_text('label,locator\ncat,gs://gbucket/one.jpg\ndog,"s3://sbucket/two.png"\n')
    # Another list naming the first one's objects: left in it, unless it takes them over.
    held = await listing(str(as_csv), tmp_path, settings)
    assert held.counts["held_elsewhere"] == 2 and statuses(held) == {
        "one.jpg": "skipped", "two.png": "skipped",
    }  # fmt: skip
    again = await listing(str(as_csv), tmp_path, settings, take_over=True)
    assert statuses(again) == {"one.jpg": "unchanged", "two.png": "unchanged"}
    assert again.counts["deleted"] == 0  # a list of locators covers no prefix


def test_unknown_scheme_lists_the_known_ones(fresh_url):
    result = run_imgvec("list", "ftp://host/x", env={"DATABASE_URL": fresh_url}, check=False)
    assert result.returncode == 2  # a usage error: the argument names no installed source
    assert (
        "unknown source scheme 'ftp'" in result.stderr
        and "installed sources: gs, s3" in result.stderr
    )


async def test_manifest_can_live_in_a_gcs_work_dir(tmp_path, settings, gcs):
    client = gcs.client()
    client.create_bucket("pics").blob("a.jpg").upload_from_string(b"a")
    client.create_bucket("jobs")
    result = await list_source("gs://pics", work_dir="gs://jobs/nightly", settings=settings)
    assert result.manifest.startswith("gs://jobs/nightly/manifests/manifest-")
    blob = client.bucket("jobs").blob(result.manifest.removeprefix("gs://jobs/"))
    text = blob.download_as_text()
    assert text.splitlines()[0].startswith("locator,scheme,bucket,key,name")
    assert "gs://pics/a.jpg" in text
