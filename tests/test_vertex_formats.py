"""Vertex gets only what Vertex documents: JPEG or PNG with its mimeType, within 20 MB. The fake
server (tests/fakes/vertex.py) refuses everything else, as the service does; through the real
client, every good image of the odd-format set ends embedded, from a folder (bytes) and from
`gs://` (the GCS emulator), as the image imgvec decodes (upright, 8-bit RGB); the hostile ones
end as failure rows without costing a request."""

from __future__ import annotations

import io
import mimetypes
import os
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from pipeline import embed_images
from pipeline.checkpoints.parts import parse_vector
from pipeline.embedding.backends.vertex_requests import MAX_IMAGE_BYTES
from pipeline.embedding.images import decode_image
from pipeline.listing import list_source
from pipeline.plugins import get_backend
from pipeline.runner import embed_work_dir
from tests.conftest import IMGVEC, run_imgvec
from tests.fakes.vertex import FakeVertex
from tests.images import encode, hostile, odd_but_valid, write_images

DIMENSION = 128


def backend(fake: FakeVertex):
    return get_backend(
        "vertex",
        project="test",
        dimension=DIMENSION,
        api_endpoint=fake.endpoint,
        rate_limit=60_000,
    )


def noise(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def big_tiff() -> bytes:
    """A 30 MB TIFF: over the limit as stored, and as PNG."""
    return encode(noise(3200, 3200), "TIFF")


def large_jpeg() -> bytes:
    """A plain JPEG larger than the part of a gs:// object that is looked at."""
    return encode(noise(800, 600, seed=5), "JPEG", quality=95)


def failure_reasons(work: Path) -> dict[str, str]:
    failures = pd.concat(pd.read_csv(p) for p in work.glob("embeddings/*/failures-*.csv"))
    return {
        Path(loc).name: reason
        for loc, reason in zip(failures["locator"], failures["reason"], strict=True)
    }


def check_vectors(work: Path, fake: FakeVertex, originals: dict[str, bytes]) -> dict[str, str]:
    """Each stored vector is the fake's for an image it accepted, and that image is the original
    as imgvec decodes it (upright 8-bit RGB; a JPEG re-encoded within JPEG's error; too large ones
    downscaled under the limit). Returns name -> how it was sent ("bytes" or "gcs")."""
    parts = sorted(work.glob("embeddings/*/part-*.csv"))
    rows = pd.concat(pd.read_csv(p, dtype="string", keep_default_na=False) for p in parts)
    sent = []
    for received in fake.received:
        vector = received.vector(DIMENSION)
        sent.append((vector / np.linalg.norm(vector), received))
    how = {}
    for locator, embedding in zip(rows["locator"], rows["embedding"], strict=True):
        name = Path(locator).name
        got = parse_vector(embedding)
        score, received = max(((float(v @ got), r) for v, r in sent), key=lambda t: t[0])
        assert score > 0.9999, name
        assert received.mime_type in ("image/jpeg", "image/png"), (name, received.mime_type)
        want = decode_image(originals[name])
        image = received.image
        if want.width * want.height * 3 > MAX_IMAGE_BYTES:
            assert image.width * image.height * 3 <= MAX_IMAGE_BYTES, name
            assert abs(image.width / image.height - want.width / want.height) < 0.01, name
        else:
            assert image.size == want.size, (name, image.size, want.size)  # upright
            if received.mime_type == "image/jpeg":  # lossy: compare 8x8 blocks' means
                image, want = image.reduce(8), want.reduce(8)
            diff = np.abs(np.asarray(image, dtype=float) - np.asarray(want, dtype=float)).mean()
            assert diff < 2, (name, diff)
        how[name] = received.kind
    assert sorted(how) == sorted(originals)
    return how


async def test_a_folder_of_odd_images_goes_as_accepted_bytes(tmp_path, settings, vertex):
    good = odd_but_valid() | {"big.tiff": big_tiff()}
    write_images(tmp_path / "images", good | {n: data for n, (data, _) in hostile().items()})
    await list_source(str(tmp_path / "images"), work_dir=str(tmp_path / "work"), settings=settings)
    result = await embed_work_dir(
        work_dir=str(tmp_path / "work"), backend=backend(vertex), settings=settings
    )
    assert (result.counts["embedded"], result.counts["failed"]) == (len(good), len(hostile()))
    assert vertex.stats["requests"] == len(good)  # the hostile ones cost no request
    reasons = failure_reasons(tmp_path / "work")
    for name, (_, word) in hostile().items():
        assert word in reasons[name], (name, reasons[name])
    assert set(check_vectors(tmp_path / "work", vertex, good).values()) == {"bytes"}
    # Plain JPEG and PNG go as they are; the others as the decoded image, re-encoded.
    originals = {r.payload for r in vertex.received}
    assert good["one-pixel.png"] in originals
    for name in ("photo.webp", "photo.tiff", "cmyk.jpg", "exif-rotated.jpg", "sixteen-bit.png"):
        assert good[name] not in originals, name


async def test_gs_objects_go_as_uris_only_when_vertex_takes_them(tmp_path, settings, gcs, vertex):
    good = odd_but_valid() | {"big.tiff": big_tiff(), "large.jpg": large_jpeg()}
    cut = large_jpeg()[:300_000]  # larger than the look at a gs:// object, cut short
    bad = {n: data for n, (data, _) in hostile().items()} | {"cut-large.jpg": cut}
    bucket = gcs.client().create_bucket("odd")
    for name, data in (good | bad).items():
        content_type = mimetypes.guess_type(name)[0]
        bucket.blob(name).upload_from_string(data, content_type=content_type)
    await list_source("gs://odd", work_dir=str(tmp_path / "work"), settings=settings)
    result = await embed_work_dir(
        work_dir=str(tmp_path / "work"), backend=backend(vertex), settings=settings
    )
    assert (result.counts["embedded"], result.counts["failed"]) == (len(good), len(bad))
    assert vertex.stats["requests"] == len(good)  # not one request for the hostile ones
    reasons = failure_reasons(tmp_path / "work")
    for name, (_, word) in hostile().items():
        assert word in reasons[name], (name, reasons[name])
    assert "corrupt" in reasons["cut-large.jpg"], reasons["cut-large.jpg"]
    how = check_vectors(tmp_path / "work", vertex, good)
    # As a gcsUri: what Vertex takes as stored (plain JPEG / PNG); the rest as checked bytes.
    assert sorted(n for n, kind in how.items() if kind == "gcs") == ["large.jpg", "one-pixel.png"]
    assert sorted(vertex.seen_uris) == ["gs://odd/large.jpg", "gs://odd/one-pixel.png"]


def test_the_notebook_api_sends_what_vertex_takes(vertex):
    odd = odd_but_valid()
    pairs = [(name, Image.open(io.BytesIO(data))) for name, data in odd.items()]
    pairs.append(("big", noise(3200, 3200)))
    vectors = dict(embed_images(pairs, backend=backend(vertex)))
    assert all(vectors[name] is not None for name in [*odd, "big"]), vectors
    assert vertex.stats["requests"] == len(odd) + 1
    assert {r.mime_type for r in vertex.received} == {"image/png"}


def test_no_google_credentials_says_how(tmp_path, fresh_url):
    """No ADC anywhere (no key file, no gcloud login, no metadata server): one line saying how."""
    write_images(tmp_path / "images", {"a.png": encode(noise(8, 8), "PNG")})
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GOOGLE_", "CLOUDSDK_", "GCE_")) and k != "STORAGE_EMULATOR_HOST"
    }
    env |= {
        "DATABASE_URL": fresh_url,
        "HOME": str(tmp_path / "home"),  # no ~/.config/gcloud/application_default_credentials.json
        "CLOUDSDK_CONFIG": str(tmp_path / "gcloud"),
        "GCE_METADATA_HOST": "127.0.0.1:1",
        "GCE_METADATA_IP": "127.0.0.1:1",
        "NO_GCE_CHECK": "True",
    }
    work = tmp_path / "work"
    run_imgvec("list", str(tmp_path / "images"), "--work-dir", str(work), env=env)
    for project in (["--project", "my-project"], []):
        result = subprocess.run(
            [*IMGVEC, "embed", "--work-dir", str(work), "--backend", "vertex", *project],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 1, result.stderr
        assert "no Google credentials for Vertex AI" in result.stderr, result.stderr
        assert "gcloud auth application-default login" in result.stderr, result.stderr
        assert "GOOGLE_APPLICATION_CREDENTIALS" in result.stderr and "--project" in result.stderr
        assert "unexpected" not in result.stderr, result.stderr
