"""Embed stage benchmark, three figures taken in one run:

(a) CLIP ViT-B-32 (random weights: speed does not depend on them) end to end on N generated
    640x480 JPEGs (read + decode + preprocess + forward + CSV parts) vs the forward pass alone on
    pre-decoded tensors, the physical limit of this CPU;
(b) Vertex AI against the local fake (300 ms latency, 600 requests/min quota): achieved
    requests/min vs the quota vs a sequential one-request-at-a-time loop;
(c) peak RSS of the end-to-end CLIP run at two corpus sizes (must not grow with the corpus).
Each CLIP run is a fresh process so its peak RSS is its own.

`--thumbnails [N]` measures instead what the thumbnails cost the embed stage: N (200) generated
1024x768 JPEGs, the stage (CLIP ViT-B-32, everything re-embedded) run with and without them,
interleaved in one process so that both see the same machine; goal: <= 5 % added.

    .venv/bin/python bench/bench_embed.py            # 500 and 2,000 images
    .venv/bin/python bench/bench_embed.py 100 300    # quicker
    .venv/bin/python bench/bench_embed.py --thumbnails 200
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from peak_rss import peak_rss_mb  # noqa: E402


def make_jpegs(folder: Path, n: int, size: tuple[int, int] = (640, 480)) -> None:
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0 : size[1], 0 : size[0]]
    for i in range(n):
        # smooth colour fields plus a little noise: photo-sized JPEGs (~50-100 KB)
        a, b, c = rng.random(3) * 0.05
        img = np.stack([np.sin(a * x + i), np.cos(b * y + i), np.sin(c * (x + y))], axis=-1)
        img = ((img + 1) * 120 + rng.normal(0, 8, img.shape)).clip(0, 255).astype("uint8")
        Image.fromarray(img).save(folder / f"img{i:05d}.jpg", quality=90)


def child_clip(images: str, work: str) -> None:
    from pipeline.listing import list_source
    from pipeline.plugins import get_backend
    from pipeline.runner import embed_work_dir
    from pipeline.settings import Settings

    settings = Settings()
    backend = get_backend("clip", model="ViT-B-32", pretrained="none", device="cpu", batch_size=32)
    asyncio.run(list_source(images, work_dir=work, settings=settings))
    started = time.perf_counter()
    result = asyncio.run(
        embed_work_dir(work_dir=work, backend=backend, settings=settings, force=True)
    )
    seconds = time.perf_counter() - started
    print(
        json.dumps(
            {"images": result.counts["embedded"], "seconds": seconds, "peak_rss_mb": peak_rss_mb()}
        )
    )


def forward_only(images: Path, n: int = 128, batch: int = 32) -> float:
    import torch

    from pipeline.embedding.images import decode_image
    from pipeline.plugins import get_backend

    backend = get_backend(
        "clip", model="ViT-B-32", pretrained="none", device="cpu", batch_size=batch
    )
    paths = sorted(images.glob("*.jpg"))[:n]
    tensors = [backend.prepare(decode_image(p.read_bytes())) for p in paths]
    with torch.no_grad():
        backend.model.encode_image(torch.stack(tensors[:batch]))  # warm-up
        started = time.perf_counter()
        for i in range(0, len(tensors), batch):
            backend.model.encode_image(torch.stack(tensors[i : i + batch]))
        return len(tensors) / (time.perf_counter() - started)


def vertex_rates(requests: int = 300) -> tuple[float, float]:
    sys.path.insert(0, str(ROOT))
    from pipeline.embedding.backends.base import ImageItem
    from pipeline.embedding.backends.vertex_requests import VertexImage
    from pipeline.plugins import get_backend
    from tests.fakes.vertex import FakeVertex, FakeVertexConfig

    def stored(uri: str) -> VertexImage:  # what Vertex reads itself: no bytes in the request
        return VertexImage("image/jpeg", gcs_uri=uri)

    fake = FakeVertex(FakeVertexConfig(latency=(0.3, 0.3), quota_per_minute=600))
    try:
        backend = get_backend(
            "vertex",
            project="bench",
            dimension=512,
            api_endpoint=fake.endpoint,
            rate_limit=600,
            concurrency=16,
        )
        items = (
            ImageItem(f"gs://b/{i}.jpg", source=stored(f"gs://b/{i}.jpg")) for i in range(requests)
        )
        for _ in backend.embed_stream(items):
            pass
        times = fake.success_times
        ours = (len(times) - 1) / (times[-1] - times[0]) * 60
        sequential = get_backend(
            "vertex",
            project="bench",
            dimension=512,
            api_endpoint=fake.endpoint,
            rate_limit=60_000,
            concurrency=1,
        )
        fake.success_times.clear()
        fake.config.quota_per_minute = None
        started = time.perf_counter()
        for i in range(20):  # the naive loop: one request, wait, the next
            sequential.embed_image_batch(
                [ImageItem(f"gs://s/{i}.jpg", source=stored(f"gs://s/{i}.jpg"))]
            )
        naive = 20 / (time.perf_counter() - started) * 60
        return ours, naive
    finally:
        fake.stop()


def main(sizes: list[int]) -> None:
    from pipeline.db.embedded import EmbeddedPostgres

    scratch = Path(tempfile.mkdtemp(prefix="imgvec-bench-embed-", dir="/tmp"))
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"} | {
        "IMGVEC_HOME": str(scratch / "home")
    }
    os.environ.update(env)
    try:
        images = scratch / "images"
        make_jpegs(images, max(sizes))
        print(f"(a) CLIP ViT-B-32 on {os.cpu_count()} CPU threads")
        limit = forward_only(images)
        print(f"    forward pass alone, pre-decoded tensors: {limit:6.1f} images/s")
        runs = {}
        for n in sizes:
            folder = scratch / f"set-{n}"
            folder.mkdir()
            for p in sorted(images.glob("*.jpg"))[:n]:
                os.link(p, folder / p.name)
            out = subprocess.run(
                [sys.executable, __file__, "--child-clip", str(folder), str(scratch / f"work-{n}")],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            runs[n] = json.loads(out.stdout.strip().splitlines()[-1])
            rate = runs[n]["images"] / runs[n]["seconds"]
            print(
                f"    end to end, {n:5d} JPEGs 640x480:          {rate:6.1f} images/s = {rate / limit:.2f} x forward-only"
            )
        print("(b) Vertex AI fake: 300 ms latency, quota 600 requests/min")
        ours, naive = vertex_rates()
        print(
            f"    imgvec: {ours:5.0f} requests/min = {ours / 600:.1%} of quota; sequential loop: {naive:4.0f} requests/min"
        )
        print("(c) peak RSS of the end-to-end CLIP run")
        for n, r in runs.items():
            print(f"    {n:5d} images: {r['peak_rss_mb']:6.0f} MB")
    finally:
        EmbeddedPostgres(scratch / "home" / "pgdata").stop()
        shutil.rmtree(scratch, ignore_errors=True)  # gigabytes of parts and database


def thumbnails_cost(n: int, rounds: int = 4) -> None:
    """The embed stage's time with and without thumbnails, interleaved (off, on, off, on, ...)
    after one warm-up run; the stage alone (`embed_manifest`, no database), everything re-embedded
    each time, and each thumbnail rewritten."""
    from collections import Counter

    from pipeline.checkpoints.manifest import latest_manifest
    from pipeline.db.embedded import EmbeddedPostgres
    from pipeline.embedding.readers import ObjectReader
    from pipeline.embedding.stage import EmbedOptions, EmbedResult, embed_manifest
    from pipeline.listing import list_source
    from pipeline.plugins import get_backend
    from pipeline.settings import Settings
    from pipeline.workdir import WorkDir

    scratch = Path(tempfile.mkdtemp(prefix="imgvec-bench-thumbs-", dir="/tmp"))
    os.environ.pop("DATABASE_URL", None)
    os.environ["IMGVEC_HOME"] = str(scratch / "home")
    os.environ["IMGVEC_PROGRESS_SECONDS"] = "3600"  # no progress lines in the figures
    try:
        make_jpegs(scratch / "images", n, size=(1024, 768))
        work = WorkDir(scratch / "work")
        asyncio.run(list_source(str(scratch / "images"), work_dir=work.spec, settings=Settings()))
        manifest = latest_manifest(work)
        backend = get_backend(
            "clip", model="ViT-B-32", pretrained="none", device="cpu", batch_size=32
        )
        backend.check()  # the model loads here, not in the first timed run

        def run(thumbnails: bool) -> tuple[float, float]:
            """The stage's wall time, and the CPU time of the process (every thread's): the
            second is the less disturbed by other work on the machine."""
            result = EmbedResult(backend.space.name, manifest, counts=Counter())
            options = EmbedOptions(force=True, thumbnails=thumbnails)
            wall, cpu = time.perf_counter(), time.process_time()
            embed_manifest(work, manifest, backend, ObjectReader(), result, options)
            assert result.counts["embedded"] == n, result.counts
            return time.perf_counter() - wall, time.process_time() - cpu

        run(True)  # warm-up (and the thumbnails folder exists from here on)
        times: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
        for _ in range(rounds):
            for thumbnails in (False, True):
                times[thumbnails].append(run(thumbnails))
        made = len(work.sizes_below("thumbnails"))
        kb = sum(work.sizes_below("thumbnails").values()) / made / 1024
        print(f"embed stage, CLIP ViT-B-32, {n} JPEGs 1024x768, {os.cpu_count()} CPU threads")
        for what, i in (("wall", 0), ("CPU", 1)):
            off = statistics.median(t[i] for t in times[False])
            on = statistics.median(t[i] for t in times[True])
            paired = [b[i] / a[i] - 1 for a, b in zip(times[False], times[True], strict=True)]
            print(
                f"    {what:4} s without: {' '.join(f'{t[i]:.1f}' for t in times[False])}; "
                f"with: {' '.join(f'{t[i]:.1f}' for t in times[True])}; medians {off:.1f} vs "
                f"{on:.1f} = {on / off - 1:+.1%}; per round {' '.join(f'{p:+.1%}' for p in paired)}"
            )
        print(f"    {made} thumbnails, {kb:.1f} KB each")
        print(f"    one thumbnail alone (make + write, one thread): {one_thumbnail(work):.2f} ms")
    finally:
        EmbeddedPostgres(scratch / "home" / "pgdata").stop()
        shutil.rmtree(scratch, ignore_errors=True)


def one_thumbnail(work, n: int = 50) -> float:
    """Milliseconds to make and write one thumbnail from a decoded 1024x768 image."""
    from pipeline.checkpoints.thumbnails import write_thumbnail
    from pipeline.embedding.images import decode_image
    from pipeline.embedding.thumbnails import make_thumbnail

    paths = sorted((work.local.parent / "images").glob("*.jpg"))[:n]
    images = [decode_image(p.read_bytes()) for p in paths]
    started = time.perf_counter()
    for i, image in enumerate(images):
        write_thumbnail(work, f"md5:{i:032x}", make_thumbnail(image))
    return (time.perf_counter() - started) / len(images) * 1000


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child-clip":
        child_clip(sys.argv[2], sys.argv[3])
    elif len(sys.argv) > 1 and sys.argv[1] == "--thumbnails":
        thumbnails_cost(int(sys.argv[2]) if len(sys.argv) > 2 else 200)
    else:
        main([int(a) for a in sys.argv[1:]] or [500, 2000])
