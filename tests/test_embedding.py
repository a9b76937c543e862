"""The embed stage with real open_clip models (random weights, fixed seed) and the real Vertex
client against a local fake server."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline import embed_images, embed_texts
from pipeline.checkpoints.parts import parse_vector
from pipeline.db import connect
from pipeline.embedding.backends.vertex import VertexBackend
from pipeline.listing import list_source
from pipeline.loading import load_work_dir
from pipeline.plugins import get_backend
from pipeline.runner import embed_work_dir
from tests.conftest import IMGVEC, run_imgvec
from tests.fakes.vertex import FakeVertex, FakeVertexConfig, expected_vector
from tests.images import encode, hostile, odd_but_valid, photo, write_images

open_clip = pytest.importorskip("open_clip")
torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def clip():
    return get_backend("clip", model="ViT-B-32", pretrained="none", device="cpu", batch_size=8)


def direct_open_clip(images, seed: int = 0, checkpoint: str | None = None) -> np.ndarray:
    """open_clip called the plain way, for comparison."""
    torch.manual_seed(seed)
    model, _, preprocess = open_clip.create_model_and_transforms("ViT-B-32", pretrained=checkpoint)
    model.eval()
    with torch.no_grad():
        features = model.encode_image(torch.stack([preprocess(im) for im in images]))
    return torch.nn.functional.normalize(features, dim=-1).numpy()


def part_rows(work: Path) -> pd.DataFrame:
    parts = sorted(work.glob("embeddings/*/part-*.csv"))
    return pd.concat(
        [pd.read_csv(p, dtype="string", keep_default_na=False) for p in parts], ignore_index=True
    )


async def list_and_embed(folder, work, settings, backend, **kw):
    await list_source(str(folder), work_dir=str(work), settings=settings)
    return await embed_work_dir(work_dir=str(work), backend=backend, settings=settings, **kw)


# -- backends ------------------------------------------------------------------------------------


def test_clip_vectors_match_open_clip_called_directly(clip):
    images = [photo(i, (320, 240)) for i in range(6)]
    ours = list(
        embed_images(((f"img{i}", im) for i, im in enumerate(images)), backend=clip, batch_size=4)
    )
    assert [loc for loc, _ in ours] == [f"img{i}" for i in range(6)]
    direct = direct_open_clip(images)
    cosines = [float(np.dot(v, d)) for (_, v), d in zip(ours, direct, strict=False)]
    assert min(cosines) >= 0.9999
    assert clip.space.name == "clip/ViT-B-32/none-seed0/512" and clip.space.normalized

    text = next(embed_texts(["a red car"], backend=clip))
    assert text.shape == (512,) and abs(np.linalg.norm(text) - 1) < 1e-5


def test_clip_checkpoint_path(tmp_path):
    torch.manual_seed(5)
    model, _, _ = open_clip.create_model_and_transforms("ViT-B-32", pretrained=None)
    checkpoint = tmp_path / "my-finetune.pt"
    torch.save(model.state_dict(), checkpoint)
    # (eager torch: exporting a checkpoint is tests/test_clip_runtimes.py's; an export here
    # would cost the suite ~40 s)
    backend = get_backend(
        "clip", model="ViT-B-32", pretrained=str(checkpoint), device="cpu", runtime="torch"
    )
    assert backend.space.weights.startswith("file-")
    images = [photo(i) for i in range(3)]
    ours = np.stack([v for _, v in embed_images(zip("abc", images, strict=False), backend=backend)])
    direct = direct_open_clip(images, seed=99, checkpoint=str(checkpoint))
    assert np.min(np.sum(ours * direct, axis=1)) >= 0.9999


def test_embed_images_streams_lazily(clip):
    consumed = []

    def pairs():
        for i in range(1000):
            consumed.append(i)
            yield f"img{i}", photo(i)

    stream = embed_images(pairs(), backend=clip, batch_size=4)
    first = [next(stream) for _ in range(3)]
    assert [loc for loc, _ in first] == ["img0", "img1", "img2"]
    assert len(consumed) < 50  # bounded read-ahead, not the whole iterable
    stream.close()


def test_offline_tag_names_the_offline_options(tmp_path, fresh_url):
    (tmp_path / "empty").mkdir()
    run_imgvec(
        "list",
        str(tmp_path / "empty"),
        "--work-dir",
        str(tmp_path / "work"),
        env={"DATABASE_URL": fresh_url},
    )
    result = run_imgvec(
        "embed",
        "--work-dir",
        str(tmp_path / "work"),
        "--pretrained",
        "laion2b_s34b_b79k",
        env={"HF_HUB_OFFLINE": "1", "DATABASE_URL": fresh_url},
        check=False,
    )
    assert result.returncode == 1
    assert "--pretrained PATH" in result.stderr and "none" in result.stderr
    assert "Traceback" not in result.stderr


# -- the stage -----------------------------------------------------------------------------------


async def test_odd_inputs_embedded_hostile_ones_recorded(tmp_path, settings, clip):
    folder = tmp_path / "images"
    write_images(folder, odd_but_valid() | {name: data for name, (data, _) in hostile().items()})
    result = await list_and_embed(folder, tmp_path / "work", settings, clip, part_size=5)
    assert result.counts["embedded"] == len(odd_but_valid())
    assert result.counts["failed"] == len(hostile()) and result.exit_code == 3

    failures = pd.concat(
        pd.read_csv(p) for p in (tmp_path / "work").glob("embeddings/*/failures-*.csv")
    )
    reasons = {
        Path(loc).name: reason
        for loc, reason in zip(failures["locator"], failures["reason"], strict=False)
    }
    for name, (_, word) in hostile().items():
        assert word in reasons[name], (name, reasons[name])
    # The load is the failures table's one writer: each embed attempt counts once.
    await load_work_dir(work_dir=str(tmp_path / "work"), settings=settings, index=False)
    conn = await connect(settings.database_url.get_secret_value())
    try:
        rows = await conn.fetch(
            "SELECT locator, reason, attempts FROM failures WHERE stage = 'embed'"
        )
    finally:
        await conn.close()
    assert sorted(Path(r["locator"]).name for r in rows) == sorted(hostile())
    assert {r["attempts"] for r in rows} == {1}

    again = await embed_work_dir(work_dir=str(tmp_path / "work"), backend=clip, settings=settings)
    assert (again.counts["embedded"], again.counts["known_failures"], again.exit_code) == (
        0,
        len(hostile()),
        0,
    )
    retried = await embed_work_dir(
        work_dir=str(tmp_path / "work"), backend=clip, settings=settings, retry_failed=True
    )
    assert retried.counts["failed"] == len(hostile())
    await load_work_dir(work_dir=str(tmp_path / "work"), settings=settings, index=False)
    conn = await connect(settings.database_url.get_secret_value())
    try:
        assert {r[0] for r in await conn.fetch("SELECT attempts FROM failures")} == {2}
    finally:
        await conn.close()


async def test_identical_bytes_are_embedded_once(tmp_path, settings, clip):
    data = encode(photo(7), "PNG")
    write_images(
        tmp_path / "images",
        {"a.png": data, "copy of a.png": data, "b.png": encode(photo(8), "PNG")},
    )
    result = await list_and_embed(tmp_path / "images", tmp_path / "work", settings, clip)
    assert (result.counts["embedded"], result.counts["duplicates"]) == (2, 1)
    rows = part_rows(tmp_path / "work")
    assert len(rows) == 2 and rows["content_hash"].is_unique
    vector = parse_vector(rows["embedding"][0])
    assert vector.shape == (512,) and abs(np.linalg.norm(vector) - 1) < 1e-5

    # A new locator with the same bytes, in a later run: reused, not embedded.
    write_images(tmp_path / "images", {"third copy.png": data})
    later = await list_and_embed(tmp_path / "images", tmp_path / "work", settings, clip)
    assert (later.counts["embedded"], later.counts["already_embedded"]) == (0, 4)


def test_killed_between_parts_resumes_without_recomputing(tmp_path, fresh_url):
    folder = tmp_path / "images"
    write_images(
        folder, {f"img{i:02d}.jpg": encode(photo(i, (320, 240)), "JPEG") for i in range(24)}
    )
    work = tmp_path / "work"
    env = dict(os.environ) | {"DATABASE_URL": fresh_url}
    run_imgvec("list", str(folder), "--work-dir", str(work), env=env)
    args = [
        *IMGVEC,
        "embed",
        "--work-dir",
        str(work),
        "--pretrained",
        "none",
        "--part-size",
        "4",
        "--batch-size",
        "4",
    ]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while len(list(work.glob("embeddings/*/part-*.csv"))) < 2:
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = {p.name: p.read_bytes() for p in work.glob("embeddings/*/part-*.csv")}
    assert 2 <= len(before) < 6

    result = subprocess.run(args, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    after = {p.name: p.read_bytes() for p in work.glob("embeddings/*/part-*.csv")}
    assert all(after[name] == data for name, data in before.items())  # no part recomputed
    rows = part_rows(work)
    assert len(rows) == 24 and rows["locator"].is_unique  # none lost, none twice
    assert f"{24 - 4 * len(before)} embedded" in result.stdout


def test_exit_codes(tmp_path, fresh_url):
    env = {"DATABASE_URL": fresh_url}
    nothing = run_imgvec(
        "embed", "--work-dir", str(tmp_path / "empty"), "--pretrained", "none", env=env, check=False
    )
    assert (
        nothing.returncode == 1
        and "no manifest" in nothing.stderr
        and "imgvec list" in nothing.stderr
    )
    write_images(tmp_path / "ok", {"a.jpg": encode(photo(1), "JPEG")})
    run_imgvec("list", str(tmp_path / "ok"), "--work-dir", str(tmp_path / "w1"), env=env)
    ok = run_imgvec(
        "embed", "--work-dir", str(tmp_path / "w1"), "--pretrained", "none", env=env, check=False
    )
    assert ok.returncode == 0, ok.stderr
    write_images(tmp_path / "bad", {"a.jpg": encode(photo(1), "JPEG"), "b.jpg": b""})
    run_imgvec("list", str(tmp_path / "bad"), "--work-dir", str(tmp_path / "w2"), env=env)
    partial = run_imgvec(
        "embed", "--work-dir", str(tmp_path / "w2"), "--pretrained", "none", env=env, check=False
    )
    assert partial.returncode == 3 and "1 failed" in partial.stdout


# -- Vertex ------------------------------------------------------------------------------------


async def test_vertex_gcs_objects_go_as_uris_through_429_503_and_resets(
    tmp_path, settings, gcs, caplog
):
    bucket = gcs.client().create_bucket("photos")
    for i in range(30):
        bucket.blob(f"img{i:02d}.jpg").upload_from_string(
            encode(photo(i), "JPEG"), content_type="image/jpeg"
        )
    bucket.blob("broken.jpg").upload_from_string(b"x", content_type="image/jpeg")
    fake = FakeVertex(
        FakeVertexConfig(
            rate_429=0.30,
            rate_503=0.05,
            rate_reset=0.05,  # on the REST transport: requests' ConnectionError
            failures={"gs://photos/img29.jpg": (400, "Unable to decode image")},
        )
    )
    try:
        options = VertexBackend.Options(
            project="test", dimension=128, api_endpoint=fake.endpoint, rate_limit=60_000
        )
        backend = VertexBackend(options, backoff=0.02)  # quick retries: a test, not a quota
        await list_source("gs://photos", work_dir=str(tmp_path / "work"), settings=settings)
        result = await embed_work_dir(
            work_dir=str(tmp_path / "work"), backend=backend, settings=settings
        )
    finally:
        fake.stop()
    assert (result.counts["embedded"], result.counts["failed"]) == (29, 2)
    assert fake.stats["429"] > 0 and fake.stats["503"] > 0 and fake.stats["reset"] > 0
    # 16 requests in flight on 16 kept connections: none opened and dropped (requests keeps 10)
    assert "Connection pool is full" not in caplog.text
    # The broken object is checked here and never costs a request; the others go as gcsUri.
    assert sorted(set(fake.seen_uris)) == [f"gs://photos/img{i:02d}.jpg" for i in range(30)]
    reasons = dict(
        pd.concat(pd.read_csv(p) for p in (tmp_path / "work").glob("embeddings/*/failures-*.csv"))[
            ["locator", "reason"]
        ].itertuples(index=False)
    )
    assert (
        "corrupt" in reasons["gs://photos/broken.jpg"]
        or "not an image" in reasons["gs://photos/broken.jpg"]
    ), reasons
    refused = reasons["gs://photos/img29.jpg"]
    assert "Unable to decode image" in refused and "projects/" not in refused, refused
    assert "127.0.0.1" not in refused, refused
    rows = part_rows(tmp_path / "work")
    got = parse_vector(rows.loc[rows["locator"] == "gs://photos/img07.jpg", "embedding"].item())
    want = expected_vector("gcs", "gs://photos/img07.jpg", 128)
    assert np.allclose(got, want / np.linalg.norm(want), atol=1e-6)
    assert result.space == "vertex/multimodalembedding@001/v1/128"


async def test_vertex_local_files_go_as_bytes(tmp_path, settings, vertex):
    data = encode(photo(3), "PNG")
    write_images(tmp_path / "images", {"a.png": data, "empty.png": b""})
    backend = get_backend(
        "vertex",
        project="test",
        dimension=256,
        api_endpoint=vertex.endpoint,
        rate_limit=60_000,
    )
    result = await list_and_embed(tmp_path / "images", tmp_path / "work", settings, backend)
    assert (result.counts["embedded"], result.counts["failed"]) == (1, 1)
    assert vertex.stats["requests"] == 1  # the empty file never reached the service
    got = parse_vector(part_rows(tmp_path / "work")["embedding"][0])
    want = expected_vector("bytes", data, 256)
    assert np.allclose(got, want / np.linalg.norm(want), atol=1e-6)


async def test_parts_can_live_in_a_gcs_work_dir(tmp_path, settings, gcs, clip):
    client = gcs.client()
    bucket = client.create_bucket("pics")
    for i in range(3):
        bucket.blob(f"p{i}.png").upload_from_string(
            encode(photo(i), "PNG"), content_type="image/png"
        )
    client.create_bucket("jobs")
    await list_source("gs://pics", work_dir="gs://jobs/nightly", settings=settings)
    first = await embed_work_dir(work_dir="gs://jobs/nightly", backend=clip, settings=settings)
    assert first.counts["embedded"] == 3 and first.parts[0].startswith(
        "gs://jobs/nightly/embeddings/"
    )
    names = sorted(b.name for b in client.list_blobs("jobs", prefix="nightly/embeddings/"))
    folder = "nightly/embeddings/clip--ViT-B-32--none-seed0--512"
    assert names == [
        f"{folder}/failures-00000.csv",
        f"{folder}/part-00000.csv",
        f"{folder}/part-00000.npy",
        f"{folder}/space.json",
    ]
    again = await embed_work_dir(work_dir="gs://jobs/nightly", backend=clip, settings=settings)
    assert (again.counts["embedded"], again.counts["already_embedded"]) == (0, 3)
    # The load reads the parts (through their binary twins) straight from the bucket.
    loaded = await load_work_dir(work_dir="gs://jobs/nightly", settings=settings)
    assert (loaded.counts["rows"], loaded.counts["parts_parsed_from_csv"]) == (3, 0)
    client.bucket("jobs").blob(f"{folder}/part-00000.npy").delete()
    conn = await connect(settings.database_url.get_secret_value())
    await conn.execute("TRUNCATE loaded_parts")  # as if never loaded: the vectors get replaced
    await conn.close()
    reloaded = await load_work_dir(work_dir="gs://jobs/nightly", settings=settings)
    assert (
        reloaded.counts["rows"],
        reloaded.counts["replaced"],
        reloaded.counts["parts_parsed_from_csv"],
    ) == (3, 3, 1)


def test_run_checks_the_backend_configuration_before_listing(tmp_path, fresh_url):
    write_images(tmp_path / "images", {"a.png": encode(photo(1), "PNG")})
    env = dict(os.environ) | {"DATABASE_URL": fresh_url}
    for variable in ("GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT"):
        env.pop(variable, None)
    work = tmp_path / "work"
    result = subprocess.run(
        [*IMGVEC, "run", str(tmp_path / "images"), "--work-dir", str(work), "--backend", "vertex"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1 and "no Google credentials" in result.stderr, result.stderr
    assert not work.exists()  # before: the whole source was listed first
    typo = run_imgvec(
        "run", str(tmp_path / "images"), "--work-dir", str(work), "--backend", "vertex",
        "--project", "p", "--dimension", "500", env={"DATABASE_URL": fresh_url}, check=False,
    )  # fmt: skip
    assert typo.returncode == 2 and "128, 256, 512, 1408" in typo.stderr and not work.exists()
    for clip_typo, says in (
        (["--pretrained", "laion2b"], "laion2b_s34b_b79k"),  # caught before the listing too
        (["--pretrained", "none", "--dimension", "256"], "makes 512-dimensional vectors"),
    ):
        result = run_imgvec(
            "run", str(tmp_path / "images"), "--work-dir", str(work), *clip_typo,
            env={"DATABASE_URL": fresh_url}, check=False,
        )  # fmt: skip
        assert result.returncode == 2 and says in result.stderr and not work.exists()
