"""Embed stage benchmark, three figures taken in one run:

(a) CLIP ViT-B-32 in eager PyTorch (random weights: speed does not depend on them) end to end
    on N generated 640x480 JPEGs (read + decode + preprocess + forward + CSV parts) vs the forward
    pass alone on pre-decoded tensors, the physical limit of this CPU;
(b) Vertex AI against the local fake (300 ms latency, 600 requests/min quota): achieved
    requests/min vs the quota vs a sequential one-request-at-a-time loop;
(c) peak RSS of the end-to-end CLIP run at two corpus sizes (must not grow with the corpus).
Each CLIP run is a fresh process so its peak RSS is its own.

`--thumbnails [N]` measures instead what the thumbnails cost the embed stage: N (200) generated
1024x768 JPEGs, the stage (CLIP ViT-B-32 on the default runtime, everything re-embedded) run
with and without them, interleaved in one process so that both see the same machine; goal: <= 5 %
added.

`--runtimes [N]` (issue 18) compares what runs CLIP, in one run on N (256) generated 640x480
JPEGs: the forward pass alone on the same preprocessed images (eager torch, OpenVINO fp32, ONNX
Runtime fp32, OpenVINO bf16: images/s, CPU, cosine to eager, and the share of the CPU's ceiling:
its best matrix-product rate over the image tower's FLOPs); the embed stage end to end in a fresh
process per run (--runtime torch, the default, --precision bf16, the default without thumbnails:
images/s, vs eager end to end, vs its runtime's forward pass, load time, peak RSS); the export on
an empty model cache; the stage's own per-image CPU costs. Contenders take turns over --rounds.

    .venv/bin/python bench/bench_embed.py            # 500 and 2,000 images
    .venv/bin/python bench/bench_embed.py 100 300    # quicker
    .venv/bin/python bench/bench_embed.py --thumbnails 200
    .venv/bin/python bench/bench_embed.py --runtimes 256 --rounds 5
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
    backend = get_backend(
        "clip", model="ViT-B-32", pretrained="none", device="cpu", batch_size=32, runtime="torch"
    )
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
        "clip", model="ViT-B-32", pretrained="none", device="cpu", batch_size=batch, runtime="torch"
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
    os.environ["IMGVEC_MODEL_CACHE"] = str(scratch / "models")  # the export, not the user's cache
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


# -- --runtimes: the CLIP runtimes of issue 18 ----------------------------------------------

#: forward-only contenders: label -> the CLIP backend's options
FORWARD = {
    "eager torch fp32": {"runtime": "torch"},
    "OpenVINO fp32": {"runtime": "openvino"},
    "ONNX Runtime fp32": {"runtime": "onnx"},
    "OpenVINO bf16": {"runtime": "openvino", "precision": "bf16"},
}
#: end-to-end contenders, each run in a fresh process: label -> (backend options, thumbnails)
END_TO_END = {
    "--runtime torch": ({"runtime": "torch"}, True),
    "default (auto)": ({}, True),
    "--precision bf16": ({"precision": "bf16"}, True),
    "default, thumbnails off": ({}, False),  # what the thumbnails cost the default stage
}


def vit_b32(**options):
    from pipeline.plugins import get_backend

    return get_backend(
        "clip", model="ViT-B-32", pretrained="none", device="cpu", batch_size=32, **options
    )


def forward_label(options: dict) -> str:
    """The forward-only contender that an end-to-end run's options select (auto resolved)."""
    from pipeline.embedding.backends.clip_runtime import resolve_runtime

    precision = options.get("precision", "fp32")
    runtime = resolve_runtime(options.get("runtime", "auto"), "cpu", precision)
    wanted = {"runtime": runtime} | ({"precision": precision} if precision != "fp32" else {})
    return next(label for label, chosen in FORWARD.items() if chosen == wanted)


def child_stage(work_dir: str, contender: str, vectors_out: str) -> None:
    """One end-to-end run of the embed stage (`embed_manifest`: no database, everything
    re-embedded), after the model's load (and its export when the cache is empty), timed apart;
    the vectors are saved in file-name order for the parent's cosine."""
    from collections import Counter

    import numpy as np

    from pipeline.checkpoints.manifest import latest_manifest
    from pipeline.checkpoints.parts import read_part
    from pipeline.embedding.readers import ObjectReader
    from pipeline.embedding.stage import EmbedOptions, EmbedResult, embed_manifest
    from pipeline.workdir import WorkDir

    options, thumbnails = END_TO_END[contender]
    started = time.perf_counter()
    backend = vit_b32(**options)
    backend.check()
    load_seconds = time.perf_counter() - started
    work = WorkDir(work_dir)
    manifest = latest_manifest(work)
    result = EmbedResult(backend.space.name, manifest, counts=Counter())
    stage_options = EmbedOptions(force=True, thumbnails=thumbnails)
    wall, cpu = time.perf_counter(), time.process_time()
    embed_manifest(work, manifest, backend, ObjectReader(), result, stage_options)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    by_name: dict[str, np.ndarray] = {}
    for path in result.parts:
        part = read_part(work, path, backend.space.dimension)
        by_name.update(zip((Path(loc).name for loc in part.locators), part.vectors, strict=True))
    np.save(vectors_out, np.stack([by_name[name] for name in sorted(by_name)]))
    facts = {"images": result.counts["embedded"], "seconds": wall, "cpu_seconds": cpu}
    facts |= {"load_seconds": load_seconds, "peak_rss_mb": peak_rss_mb()}
    print(json.dumps(facts | {"torch_imported": "torch" in sys.modules}))


def run_stage(scratch: Path, contender: str) -> dict:
    """A child's figures, and its vectors."""
    import numpy as np

    out = scratch / "stage-vectors.npy"
    command = [sys.executable, __file__, "--child-stage", str(scratch / "work"), contender]
    done = subprocess.run([*command, str(out)], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{contender}: the stage's process failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1]) | {"vectors": np.load(out)}


def forward_pass(backend, sources: list) -> tuple:
    """(wall, CPU seconds, unit vectors) of the backend's own batching and concurrency (what the
    stage drives) over already preprocessed images: the runtime's limit."""
    import numpy as np

    from pipeline.embedding.backends.base import ImageItem

    items = [ImageItem(str(i), source=source) for i, source in enumerate(sources)]
    wall, cpu = time.perf_counter(), time.process_time()
    vectors = np.stack([vector for _, vector in backend.embed_stream(items)])
    return time.perf_counter() - wall, time.process_time() - cpu, vectors


def min_cosine(vectors, reference) -> float:
    return float((vectors * reference).sum(axis=1).min())  # both unit vectors


def stage_costs(paths: list[Path], compiled, eager, vectors) -> dict[str, float]:
    """CPU milliseconds per image of the stage's own work, one thread at a time: what it adds to
    the model's CPU on a machine whose cores the model already fills."""
    from pipeline.checkpoints.parts import vector_text
    from pipeline.embedding.images import decode_image
    from pipeline.embedding.thumbnails import make_thumbnail

    def per_item(work, values: list) -> float:
        started = time.process_time()
        for value in values:
            work(value)
        return (time.process_time() - started) / len(values) * 1000

    data = [p.read_bytes() for p in paths]
    images = [decode_image(d) for d in data]
    return {
        "read the file": per_item(Path.read_bytes, paths),
        "decode the JPEG (+ RGB check)": per_item(decode_image, data),
        "preprocess, numpy (compiled runtimes)": per_item(compiled.prepare, images),
        "preprocess, open_clip (torch)": per_item(eager.prepare, images),
        "thumbnail (made, not written)": per_item(make_thumbnail, images),
        "CSV text of the vector": per_item(vector_text, list(vectors)),
    }


def matmul_peak(dtype, n: int = 2048, repeats: int = 10) -> float:
    """GFLOP/s of this CPU's best dense matrix product (torch's GEMM on all threads, n x n), the
    best of five tries: the rate a transformer's matmuls cannot beat."""
    import torch

    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(3):
        a @ b  # warm-up
    best = 0.0
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(repeats):
            a @ b
        best = max(best, 2 * n**3 * repeats / (time.perf_counter() - started) / 1e9)
    return best


def image_tower_gflop(model) -> float:
    """GFLOP of one image through the image tower (matmuls and convolutions: ~all of the work)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    size = model.visual.image_size
    size = size if isinstance(size, tuple) else (size, size)
    # With gradients on: under no_grad, MultiheadAttention takes its fused fast path, whose
    # matmuls the counter does not see (5.9 GFLOP instead of ViT-B-32's 8.7).
    with torch.enable_grad(), FlopCounterMode(display=False) as counter:
        model.encode_image(torch.zeros(1, 3, *size))
    return counter.get_total_flops() / 1e9


def rotated(labels, by: int) -> list[str]:
    """The contenders in another order each round: none always runs first or last."""
    order = list(labels)
    return order[by % len(order) :] + order[: by % len(order)]


def runtimes(n: int, rounds: int) -> None:
    """Issue 18's figures in one run on the same N images: each runtime's forward pass on the
    same preprocessed images; the embed stage end to end per runtime (fresh processes); the
    export on an empty model cache and the later loads; contenders interleaved over rounds."""
    import numpy as np
    import torch

    from pipeline.db.embedded import EmbeddedPostgres
    from pipeline.embedding.images import decode_image
    from pipeline.listing import list_source
    from pipeline.settings import Settings

    scratch = Path(tempfile.mkdtemp(prefix="imgvec-bench-runtimes-", dir="/tmp"))
    os.environ.pop("DATABASE_URL", None)
    os.environ["IMGVEC_HOME"] = str(scratch / "home")
    os.environ["IMGVEC_MODEL_CACHE"] = str(scratch / "models")  # empty: the first run exports
    os.environ["IMGVEC_PROGRESS_SECONDS"] = "3600"
    try:
        make_jpegs(scratch / "images", n)
        try:  # the listing needs the database, the stage does not: stopped before any timing
            spec = str(scratch / "work")
            asyncio.run(list_source(str(scratch / "images"), work_dir=spec, settings=Settings()))
        finally:
            EmbeddedPostgres(scratch / "home" / "pgdata").stop()
        print(f"CLIP ViT-B-32 (random weights), {n} JPEGs 640x480, {os.cpu_count()} CPU threads")
        first = run_stage(scratch, "default (auto)")
        meta = json.loads(next((scratch / "models").glob("*/meta.json")).read_text())
        print(f"  first run, empty model cache: export {meta['export_seconds']} s", flush=True)

        backends = {label: vit_b32(**options) for label, options in FORWARD.items()}
        for backend in backends.values():
            backend.check()
        paths = sorted((scratch / "images").glob("*.jpg"))
        images = [decode_image(p.read_bytes()) for p in paths]
        pixels = [backends["OpenVINO fp32"].prepare(image) for image in images]
        tensors = [backends["eager torch fp32"].prepare(image) for image in images]
        preprocessing_diff = max(
            float(np.abs(t.numpy() - p).max()) for t, p in zip(tensors, pixels, strict=True)
        )
        sources = {
            label: [torch.from_numpy(p) for p in pixels]
            if options["runtime"] == "torch"
            else pixels
            for label, options in FORWARD.items()
        }
        for label, backend in backends.items():
            forward_pass(backend, sources[label][:64])  # warm-up
        forward: dict[str, list] = {label: [] for label in FORWARD}
        stage: dict[str, list] = {label: [] for label in END_TO_END}
        peaks: dict[str, list[float]] = {"fp32": [], "bf16": []}
        for round_number in range(rounds):
            peaks["fp32"].append(matmul_peak(torch.float32))
            peaks["bf16"].append(matmul_peak(torch.bfloat16))
            for label in rotated(FORWARD, round_number):
                forward[label].append(forward_pass(backends[label], sources[label]))
            for label in rotated(END_TO_END, round_number):
                stage[label].append(run_stage(scratch, label))
            load = " ".join(f"{x:.1f}" for x in os.getloadavg())  # the others' work, too
            print(f"  round {round_number + 1}/{rounds} done, load average {load}", flush=True)
        costs = stage_costs(
            paths[:64],
            backends["OpenVINO fp32"],
            backends["eager torch fp32"],
            forward["OpenVINO fp32"][0][2][:64],
        )
        ceiling = {precision: max(rates) for precision, rates in peaks.items()}
        ceiling["GFLOP/image"] = image_tower_gflop(backends["eager torch fp32"].model)
        report(n, forward, stage, first, meta, preprocessing_diff, costs, ceiling)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def report(n, forward, stage, first, meta, preprocessing_diff, costs, ceiling) -> None:
    eager = forward["eager torch fp32"][0][2]
    flop = ceiling["GFLOP/image"]
    most = {precision: ceiling[precision] / flop for precision in ("fp32", "bf16")}

    def rate(runs: list[float]) -> tuple[float, str]:
        rates = [n / seconds for seconds in runs]
        return statistics.median(rates), " / ".join(f"{r:.1f}" for r in rates)

    print(
        f"\nforward only, batch 32, the same {n} preprocessed images (numpy preprocessing vs "
        f"open_clip's: max |difference| {preprocessing_diff:g}):"
    )
    print(
        f"the CPU's ceiling: matrix products at {ceiling['fp32']:.0f} GFLOP/s fp32, "
        f"{ceiling['bf16']:.0f} bf16 (torch's GEMM, 2048x2048, all threads); the image tower "
        f"{flop:.2f} GFLOP/image -> at most {most['fp32']:.1f} images/s fp32, "
        f"{most['bf16']:.1f} bf16"
    )
    print(
        "| runtime | images/s, median (rounds) | vs eager | of the CPU's ceiling | CPU ms/image "
        "| cosine to eager, min |"
    )
    print("|---|---|---|---|---|---|")
    limits = {}
    for label, runs in forward.items():
        limits[label], each = rate([wall for wall, _, _ in runs])
        cpu = statistics.median(c for _, c, _ in runs) / n * 1000
        ratio = limits[label] / limits["eager torch fp32"]
        cosine = min(min_cosine(vectors, eager) for _, _, vectors in runs)
        share = limits[label] / most["bf16" if "bf16" in label else "fp32"]
        print(
            f"| {label} | {limits[label]:.1f} ({each}) | {ratio:.2f}x | {share:.0%} | {cpu:.0f} "
            f"| {cosine:.6f} |"
        )

    print(f"\nend to end, the embed stage in a fresh process per run, {n} JPEGs:")
    print(
        "| run | images/s, median (rounds) | vs eager end to end | / forward-only | "
        "CPU ms/image | cosine to eager, min | load s | peak RSS MB |"
    )
    print("|---|---|---|---|---|---|---|---|")
    rates = {}
    for label, runs in stage.items():
        rates[label], each = rate([r["seconds"] for r in runs])
        limit = limits[forward_label(END_TO_END[label][0])]
        cpu = statistics.median(r["cpu_seconds"] for r in runs) / n * 1000
        cosine = min(min_cosine(r["vectors"], eager) for r in runs)
        load = statistics.median(r["load_seconds"] for r in runs)
        rss = statistics.median(r["peak_rss_mb"] for r in runs)
        torch_note = "" if runs[0]["torch_imported"] else " (no torch)"
        print(
            f"| {label} | {rates[label]:.1f} ({each}) | "
            f"{rates[label] / rates['--runtime torch']:.2f}x | {rates[label] / limit:.2f} | "
            f"{cpu:.0f} | {cosine:.6f} | {load:.1f}{torch_note} | {rss:.0f} |"
        )
    print(
        f"\nfirst run, empty model cache: export {meta['export_seconds']} s (meta.json); the "
        f"model's load including the export {first['load_seconds']:.1f} s; then the stage "
        f"{n / first['seconds']:.1f} images/s; peak RSS {first['peak_rss_mb']:.0f} MB"
    )
    print("\nthe stage's own work, CPU ms per image, one thread:")
    for what, ms in costs.items():
        print(f"    {what:40} {ms:6.2f}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child-clip":
        child_clip(sys.argv[2], sys.argv[3])
    elif len(sys.argv) > 1 and sys.argv[1] == "--child-stage":
        child_stage(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        import argparse

        parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
        parser.add_argument("sizes", nargs="*", type=int, help="corpus sizes (500 2000)")
        parser.add_argument(
            "--thumbnails", nargs="?", type=int, const=200, metavar="N", help="thumbnails' cost"
        )
        parser.add_argument(
            "--runtimes", nargs="?", type=int, const=256, metavar="N", help="CLIP's runtimes"
        )
        parser.add_argument("--rounds", type=int, default=3, help="--runtimes rounds (3)")
        args = parser.parse_args()
        if args.thumbnails:
            thumbnails_cost(args.thumbnails)
        elif args.runtimes:
            runtimes(args.runtimes, args.rounds)
        else:
            main(args.sizes or [500, 2000])
