"""Thumbnails: written by the embed stage from the image it decoded, backfilled by
`imgvec thumbnails`, made on demand by `thumbnail_for`; in a folder or a gs:// work dir."""

from __future__ import annotations

import hashlib
import io
import logging
import shutil
from pathlib import Path

import pytest
from PIL import Image

from pipeline.checkpoints.thumbnails import (
    THUMBNAIL_SIZE,
    missing_thumbnails,
    read_thumbnail,
    thumbnail_relpath,
    write_thumbnail,
)
from pipeline.embedding.images import BadImage
from pipeline.embedding.readers import ObjectReader
from pipeline.embedding.thumbnails import make_thumbnail, thumbnail_for
from pipeline.listing import list_source
from pipeline.loading import load_work_dir
from pipeline.plugins import get_backend
from pipeline.runner import embed_work_dir
from pipeline.workdir import WorkDir
from tests.conftest import run_imgvec
from tests.images import encode, hostile, photo, write_images

pytest.importorskip("open_clip")


@pytest.fixture(scope="module")
def clip():
    return get_backend("clip", model="ViT-B-32", pretrained="none", device="cpu", batch_size=8)


def key_of(data: bytes) -> str:
    """The content key a local file gets (its md5, as the folder source lists it)."""
    return f"md5:{hashlib.md5(data).hexdigest()}"


def picture(data: bytes | None) -> Image.Image:
    """A thumbnail's bytes opened the way a browser would: a real, complete WebP."""
    assert data is not None
    image = Image.open(io.BytesIO(data))
    image.load()
    assert image.format == "WEBP" and image.mode == "RGB"
    return image


def originals() -> dict[str, bytes]:
    """A photo-sized JPEG, a landscape PNG just over the size, one smaller than a thumbnail,
    the first again under another name, and a truncated JPEG."""
    big = encode(photo(1, (1024, 768)), "JPEG", quality=90)
    return {
        "big.jpg": big,
        "wide.png": encode(photo(2, (300, 200)), "PNG"),
        "tiny.png": encode(photo(3, (64, 48)), "PNG"),
        "big-again.jpg": big,
        "broken.jpg": hostile()["truncated.jpg"][0],
    }


async def test_embed_writes_one_thumbnail_per_new_content(tmp_path, settings, clip):
    images = originals()
    write_images(tmp_path / "images", images)
    work_dir = str(tmp_path / "work")
    await list_source(str(tmp_path / "images"), work_dir=work_dir, settings=settings)
    result = await embed_work_dir(work_dir=work_dir, backend=clip, settings=settings)
    counts = result.counts
    assert (counts["embedded"], counts["duplicates"], counts["failed"]) == (3, 1, 1)

    work = WorkDir(work_dir)
    assert read_thumbnail(work, key_of(images.pop("broken.jpg"))) is None  # failed as before
    sizes = {
        name: picture(read_thumbnail(work, key_of(data))).size for name, data in images.items()
    }
    assert sizes == {
        "big.jpg": (256, 192),
        "wide.png": (256, 171),
        "tiny.png": (64, 48),  # never enlarged
        "big-again.jpg": (256, 192),  # the same bytes: the same thumbnail
    }
    assert len(work.sizes_below("thumbnails")) == 3  # one per content
    # A re-embed of everything rewrites them whole: the same files, still pictures.
    again = await embed_work_dir(work_dir=work_dir, backend=clip, settings=settings, force=True)
    assert again.counts["embedded"] == 3
    assert len(work.sizes_below("thumbnails")) == 3
    assert picture(read_thumbnail(work, key_of(images["big.jpg"]))).size == (256, 192)


async def test_a_thumbnail_that_cannot_be_written_never_fails_its_image(
    tmp_path, settings, clip, caplog
):
    write_images(tmp_path / "images", {f"p{i}.png": encode(photo(i), "PNG") for i in range(4)})
    work_dir = tmp_path / "work"
    await list_source(str(tmp_path / "images"), work_dir=str(work_dir), settings=settings)
    (work_dir / "thumbnails").write_text("a file where the folder should be")
    with caplog.at_level(logging.WARNING):
        result = await embed_work_dir(work_dir=str(work_dir), backend=clip, settings=settings)
    assert (result.counts["embedded"], result.counts["failed"]) == (4, 0)
    warnings = [r.getMessage() for r in caplog.records if "thumbnails" in r.getMessage()]
    assert len(warnings) == 1 and "imgvec thumbnails" in warnings[0], warnings


async def test_a_bytes_backend_writes_them_too(tmp_path, settings, vertex):
    """Vertex AI gets the object's bytes, but checks them by decoding first: that image is used."""
    data = encode(photo(4, (640, 480)), "JPEG")
    write_images(tmp_path / "images", {"a.jpg": data})
    backend = get_backend(
        "vertex", project="test", dimension=128, api_endpoint=vertex.endpoint, rate_limit=60_000
    )
    await list_source(str(tmp_path / "images"), work_dir=str(tmp_path / "work"), settings=settings)
    result = await embed_work_dir(
        work_dir=str(tmp_path / "work"), backend=backend, settings=settings
    )
    assert result.counts["embedded"] == 1
    assert picture(read_thumbnail(WorkDir(tmp_path / "work"), key_of(data))).size == (256, 192)


async def test_backfill_makes_the_missing_ones_and_a_rerun_none(tmp_path, settings, clip):
    images = {f"img{i}.jpg": encode(photo(i, (400, 300)), "JPEG") for i in range(6)}
    images["copy.jpg"] = images["img0.jpg"]
    write_images(tmp_path / "images", images)
    work = tmp_path / "work"
    await list_source(str(tmp_path / "images"), work_dir=str(work), settings=settings)
    await embed_work_dir(work_dir=str(work), backend=clip, settings=settings)
    await load_work_dir(work_dir=str(work), settings=settings)
    # As if embedded before thumbnails existed; and one original since damaged at its source.
    shutil.rmtree(work / "thumbnails")
    (tmp_path / "images" / "img5.jpg").write_bytes(b"<html>gone</html>")
    env = {"DATABASE_URL": settings.database_url.get_secret_value()}

    first = run_imgvec("thumbnails", "--work-dir", str(work), "--pretrained", "none", env=env)
    assert f"space {clip.space.name}: 5 thumbnails made, 0 already in" in first.stdout
    assert "1 originals could not be made into one" in first.stdout
    assert "img5.jpg: not an image" in first.stderr
    stored = WorkDir(work)
    for name in ("img0.jpg", "img4.jpg"):
        assert picture(read_thumbnail(stored, key_of(images[name]))).size == (256, 192)

    rerun = run_imgvec("thumbnails", "--work-dir", str(work), "--space", clip.space.name, env=env)
    assert "0 thumbnails made, 5 already in" in rerun.stdout

    unknown = run_imgvec("thumbnails", "--space", "nope", env=env, check=False)
    assert unknown.returncode == 2 and clip.space.name in unknown.stderr


async def test_a_gcs_work_dir(tmp_path, settings, gcs, clip):
    client = gcs.client()
    data = encode(photo(7, (512, 512)), "PNG")
    client.create_bucket("pics").blob("p.png").upload_from_string(data, content_type="image/png")
    client.create_bucket("jobs")
    await list_source("gs://pics", work_dir="gs://jobs/nightly", settings=settings)
    result = await embed_work_dir(work_dir="gs://jobs/nightly", backend=clip, settings=settings)
    assert result.counts["embedded"] == 1
    work = WorkDir("gs://jobs/nightly")
    blob = client.bucket("jobs").blob(f"nightly/{thumbnail_relpath(key_of(data))}")
    blob.reload()
    assert blob.content_type == "image/webp"
    assert picture(read_thumbnail(work, key_of(data))).size == (256, 256)
    assert read_thumbnail(work, "md5:00000000000000000000000000000000") is None
    assert missing_thumbnails(work, [key_of(data), "md5:0123456789abcdef"]) == [
        "md5:0123456789abcdef"
    ]
    # Made on demand from the original (read from gs://) and kept in a gs:// cache.
    cache = WorkDir("gs://jobs/cache")
    made = thumbnail_for([cache], key_of(data), "gs://pics/p.png", ObjectReader(), cache)
    assert picture(made).size == (256, 256) and read_thumbnail(cache, key_of(data)) == made


def test_thumbnail_for_looks_in_the_work_dirs_then_makes_and_keeps_one(tmp_path):
    first, second, cache = (WorkDir(tmp_path / name) for name in ("first", "second", "cache"))
    original = tmp_path / "a.jpg"
    original.write_bytes(encode(photo(5, (800, 600)), "JPEG"))
    locator = original.as_uri()
    write_thumbnail(second, "md5:aa11", b"kept")
    reader = ObjectReader()
    assert thumbnail_for([first, second], "md5:aa11", locator, reader, cache) == b"kept"

    made = thumbnail_for([first, second], "md5:bb22", locator, reader, cache)
    assert picture(made).size == (256, 192) and read_thumbnail(cache, "md5:bb22") == made
    assert read_thumbnail(first, "md5:bb22") is None

    (tmp_path / "page.jpg").write_bytes(b"<!DOCTYPE html><html></html>")
    with pytest.raises(BadImage, match="not an image"):
        thumbnail_for([first], "md5:cc33", (tmp_path / "page.jpg").as_uri(), reader, cache)

    # A cache that cannot be written (a read-only deployment) still gives the thumbnail.
    blocked = tmp_path / "blocked"
    blocked.write_text("a file, not a folder")
    assert picture(thumbnail_for([], "md5:dd44", locator, reader, WorkDir(blocked))).size == (
        256,
        192,
    )


def test_names_in_the_work_dir_are_safe_for_any_key():
    assert thumbnail_relpath("md5:0a1b2c3d4e5f") == "thumbnails/0a/md5-0a1b2c3d4e5f.webp"
    odd = thumbnail_relpath("s3://bucket/../../etc/passwd?x=1#y")
    assert odd.startswith("thumbnails/") and odd.count("/") == 2 and ".." not in odd
    assert len(Path(odd).name) < 100


def test_make_thumbnail_leaves_the_image_alone():
    image = photo(6, (1000, 400)).convert("L").convert("RGB")
    before = image.tobytes()
    thumb = picture(make_thumbnail(image))
    assert thumb.size == (THUMBNAIL_SIZE, 102) and image.tobytes() == before
