"""Embed stage benchmark, three figures taken in one run:

(a) CLIP ViT-B-32 (random weights: speed does not depend on them) end to end on N generated
    640x480 JPEGs (read + decode + preprocess + forward + CSV parts) vs the forward pass alone on
    pre-decoded tensors, the physical limit of this CPU;
(b) Vertex AI against the local fake (300 ms latency, 600 requests/min quota): achieved
    requests/min vs the quota vs a sequential one-request-at-a-time loop;
(c) peak RSS of the end-to-end CLIP run at two corpus sizes (must not grow with the corpus).
Each CLIP run is a fresh process so its peak RSS is its own.

    .venv/bin/python bench/bench_embed.py            # 500 and 2,000 images
    .venv/bin/python bench/bench_embed.py 100 300    # quicker
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from peak_rss import peak_rss_mb  # noqa: E402


def make_jpegs(folder: Path, n: int) -> None:
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:480, 0:640]
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


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child-clip":
        child_clip(sys.argv[2], sys.argv[3])
    else:
        main([int(a) for a in sys.argv[1:]] or [500, 2000])
