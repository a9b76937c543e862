"""What `imgvec list FILE` makes of files that are not the list of locators it expects, and of a
list naming objects that are gone: clear usage errors, no source left behind by a failed listing,
and a missing object recorded with its reason while the rest is listed. The real CLI, a real
database, real (emulated) stores."""

from __future__ import annotations

import asyncio
import os

from PIL import Image

from pipeline.checkpoints.manifest import read_manifest
from pipeline.db import connect
from tests.conftest import run_imgvec


def imgvec_list(spec, tmp_path, fresh_url):
    env = {"DATABASE_URL": fresh_url, "IMGVEC_WORK_DIR": str(tmp_path / "work")}
    return run_imgvec("list", str(spec), env=env, check=False)


async def sources(fresh_url) -> list[tuple[str, bool]]:
    conn = await connect(fresh_url)
    try:
        rows = await conn.fetch("SELECT root, is_default FROM sources ORDER BY source_id")
        return [(r["root"], r["is_default"]) for r in rows]
    finally:
        await conn.close()


FORMS = (
    "imgvec: hint: a list of locators is a UTF-8 text file with one locator per line (a path, "
    "relative to the current folder, or gs://…, s3://…; '#' starts a comment), or a CSV with a "
    "`locator` column"
)


def test_an_image_a_binary_file_or_notes_are_usage_errors_not_crashes(tmp_path, fresh_url):
    folder = tmp_path / "my pics"
    folder.mkdir()
    Image.new("RGB", (8, 8), "red").save(folder / "query.jpg")
    image = imgvec_list(folder / "query.jpg", tmp_path, fresh_url)
    assert image.returncode == 2, image.stderr
    assert image.stderr.splitlines() == [
        f"imgvec: error: cannot list {folder}/query.jpg: it is an image (JPEG), not a list of "
        "locators",
        f"imgvec: hint: to list it with the other images of its folder: imgvec list '{folder}'; "
        "to list it alone: put its path in a text file (one locator per line) and list that file",
    ]

    binary = tmp_path / "blob.bin"
    binary.write_bytes(b"\x00\x01\xfe\xff" * 100)
    other = imgvec_list(binary, tmp_path, fresh_url)
    assert other.returncode == 2, other.stderr
    assert other.stderr.splitlines() == [
        f"imgvec: error: cannot list {binary}: it is not a list of locators (a binary file, not "
        "UTF-8 text)",
        FORMS,
    ]

    notes = tmp_path / "notes.md"
    notes.write_text("# Notes\n\nSome *markdown* text\n- an item\n")
    text = imgvec_list(notes, tmp_path, fresh_url)
    assert text.returncode == 2, text.stderr
    assert text.stderr.splitlines() == [
        f"imgvec: error: cannot list {notes}: none of its 2 locator(s) names an existing object "
        "(the first: 'Some *markdown* text'); is it a list of locators?",
        FORMS,
    ]

    # A list whose every file is gone since is still a list: skipped rows, the nightly job goes on.
    gone = tmp_path / "gone.txt"
    gone.write_text("photos/a.jpg\nb.png\n")
    listed = imgvec_list(gone, tmp_path, fresh_url)
    assert listed.returncode == 0 and "2 skipped (2 missing)" in listed.stdout, listed.stderr


async def test_a_failed_listing_registers_no_source(tmp_path, fresh_url):
    Image.new("RGB", (8, 8)).save(tmp_path / "query.jpg")
    (tmp_path / "folder").mkdir()
    # The second line fails the listing after the first was recorded (a folder is no object).
    locators = tmp_path / "locs.txt"
    locators.write_text(f"{tmp_path}/query.jpg\n{tmp_path}/folder\n")
    notes = tmp_path / "notes.md"
    notes.write_text("nothing here\n")
    for spec in (tmp_path / "query.jpg", locators, notes):
        failed = imgvec_list(spec, tmp_path, fresh_url)
        assert failed.returncode in (1, 2), failed.stderr  # (which error: the test above)
    assert await sources(fresh_url) == []

    # The first listing that succeeds is the first source, and so the default.
    locators.write_text(f"{tmp_path}/query.jpg\n")
    assert imgvec_list(locators, tmp_path, fresh_url).returncode == 0
    assert await sources(fresh_url) == [(f"list:{locators}", True)]


async def test_a_missing_locator_is_skipped_with_its_reason_and_the_rest_listed(
    tmp_path, fresh_url, gcs, s3
):
    gcs.client().create_bucket("gbucket").blob("one.jpg").upload_from_string(b"1")
    s3.create_bucket(Bucket="sbucket")
    s3.put_object(Bucket="sbucket", Key="two.png", Body=b"2")
    Image.new("RGB", (8, 8)).save(tmp_path / "here.jpg")
    locators = tmp_path / "locs.txt"
    gone = ["gs://gbucket/gone.jpg", "s3://sbucket/gone.png", f"{tmp_path}/nonexist.jpg"]
    locators.write_text(
        "\n".join(["gs://gbucket/one.jpg", "s3://sbucket/two.png", f"{tmp_path}/here.jpg", *gone])
        + "\n"
    )
    listed = imgvec_list(locators, tmp_path, fresh_url)
    assert listed.returncode == 0, listed.stderr
    assert "6 objects: 3 new, 0 changed, 0 unchanged, 0 deleted, 3 skipped (3 missing)" in (
        listed.stdout
    )

    work = tmp_path / "work" / "manifests"
    frame = read_manifest(work / os.listdir(work)[0])
    rows = {r.name: (r.locator, r.status, r.reason) for r in frame.itertuples()}
    assert rows[gone[0]] == (gone[0], "skipped", "missing (no such object)")
    assert rows[gone[1]] == (gone[1], "skipped", "missing (no such object)")
    assert rows[gone[2]] == (f"file://{gone[2]}", "skipped", "missing (no such object)")
    assert sorted(frame.loc[frame["status"] == "new", "locator"]) == [
        f"file://{tmp_path}/here.jpg",
        "gs://gbucket/one.jpg",
        "s3://sbucket/two.png",
    ]
    conn = await connect(fresh_url)
    try:
        in_db = await conn.fetch("SELECT locator FROM objects ORDER BY locator")
    finally:
        await conn.close()
    assert [r["locator"] for r in in_db] == sorted(frame.loc[frame["status"] == "new", "locator"])

    # A missing bucket is no missing object: it stops the listing, naming the bucket.
    for typo in ["gs://gbucketz/one.jpg", "s3://sbuckett/two.png"]:
        locators.write_text(f"gs://gbucket/one.jpg\n{typo}\n")
        stopped = imgvec_list(locators, tmp_path, fresh_url)
        bucket = typo.split("/")[2]
        assert stopped.returncode == 1, stopped.stderr
        assert f"bucket {bucket!r} does not exist" in stopped.stderr, stopped.stderr


def test_objects_another_source_holds_are_left_there_without_take_over(tmp_path, fresh_url):
    """`list ./A/cat` after `list ./A` moved A's cats into a new source, renamed and with their
    attributes wiped, and the next `list ./A` moved them back. Now they stay in A (skipped rows,
    a note naming A and --take-over), A's next listing still has them and marks none deleted,
    and --take-over moves them."""
    from tests.images import encode, photo, write_images

    write_images(tmp_path / "A" / "cat", {f"c{i}.png": encode(photo(i), "PNG") for i in range(3)})
    write_images(tmp_path / "A" / "dog", {"d.png": encode(photo(9), "PNG")})
    env = {"DATABASE_URL": fresh_url}
    work = ["--work-dir", str(tmp_path / "work")]
    outer = [str(tmp_path / "A"), *work, "--attribute-from-path", "class={0}"]
    run_imgvec("list", *outer, env=env)
    root = (tmp_path / "A").as_uri() + "/"
    in_a = [
        ("cat/c0.png", root, '{"class": "cat"}'),
        ("cat/c1.png", root, '{"class": "cat"}'),
        ("cat/c2.png", root, '{"class": "cat"}'),
        ("dog/d.png", root, '{"class": "dog"}'),
    ]

    inner = run_imgvec("list", str(tmp_path / "A" / "cat"), *work, env=env)
    assert "3 skipped" in inner.stdout, inner.stdout
    assert f"3 listed object(s) belong to another listed source ({root})" in inner.stderr
    assert "--take-over" in inner.stderr
    assert asyncio.run(_objects(fresh_url)) == in_a
    again = run_imgvec("list", *outer, env=env)  # the nightly listing of A: unchanged, no deletion
    assert "4 unchanged" in again.stdout and "0 deleted" in again.stdout, again.stdout
    assert asyncio.run(_objects(fresh_url)) == in_a

    moved = run_imgvec("list", str(tmp_path / "A" / "cat"), *work, "--take-over", env=env)
    assert "3 unchanged" in moved.stdout
    cats = root + "cat/"
    assert [r[:2] for r in asyncio.run(_objects(fresh_url))] == [
        ("c0.png", cats), ("c1.png", cats), ("c2.png", cats), ("dog/d.png", root),
    ]  # fmt: skip
    # ... and A's next listing leaves them there (and marks none of them deleted).
    last = run_imgvec("list", *outer, env=env)
    assert (
        "1 unchanged" in last.stdout and "3 skipped" in last.stdout and "0 deleted" in last.stdout
    )


async def _objects(url: str) -> list[tuple[str, str, str]]:
    conn = await connect(url)
    try:
        rows = await conn.fetch(
            "SELECT o.name, s.root, o.attributes::text FROM objects o JOIN sources s "
            "USING (source_id) WHERE o.deleted_at IS NULL ORDER BY s.root DESC, o.name"
        )
    finally:
        await conn.close()
    return [tuple(r) for r in rows]
