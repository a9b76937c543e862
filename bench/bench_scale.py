"""Scale-out over N tasks, simulated on this one machine: N task processes against the Vertex AI
fake with a per-request latency (the work is waiting, so the processes scale on 2 cores). The
fake tells the tasks apart by their project (`--project task<i>`).

(a) throughput vs N = 1, 2, 4, 8 of real `imgvec embed --shard i/N` processes, each N over its
    own listed folder of small distinct PNGs (the embedded PostgreSQL under a scratch
    IMGVEC_HOME), when the quota is not what binds (per task: `--concurrency` requests in flight
    at `--latency` s each), counted over the time every task is running: goal >= 0.9 N x one task;
(b) the total time for `--objects` objects at a 600/min quota with 8 tasks, vs objects/600
    minutes (goal: within 5 %), and the fake's 429s: each task at 1/N of the quota
    (`share_quota(N)`), then each at its share of the objects (`share_quota(total / own)`). The fake's minute is scaled down `--speedup`
    times (its quota counted over 60/speedup s, the tasks' --rate-limit 600 x speedup), so 20,000
    objects take 200 s instead of 33 min. Start-up does not scale with the quota, so here each
    task is a process that builds its backend (then `share_quota(8)`), waits until all are ready,
    then embeds its shard (`Shard(i, 8).owns`) through `embed_stream`: the pacing alone;
(c) from (a): each `imgvec embed --shard` task's time from its start to its first request
    (interpreter, imports, database, work-dir lock, manifest, parts index, clients).

    .venv/bin/python bench/bench_scale.py                                # 20,000 objects in (b)
    .venv/bin/python bench/bench_scale.py --objects 4000 --seconds 5     # quicker
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fakes.vertex import FakeVertex, FakeVertexConfig  # noqa: E402

IMGVEC = [sys.executable, "-m", "pipeline"]
_PROJECT = re.compile(r"/projects/([^/]+)/")


class ScaledQuotaFake(FakeVertex):
    """The fake with its per-minute quota counted over a minute `speedup` times shorter, and the
    time of each project's (task's) first and last answer."""

    def __init__(self, latency: float, quota: int | None, speedup: float = 1.0) -> None:
        super().__init__(FakeVertexConfig(latency=(latency, latency)))
        self.server.socket.listen(256)  # 8 tasks x 16 connections at once: not a backlog of 5
        self.quota, self.window = quota, 60.0 / speedup
        self._recent: deque[float] = deque()
        self.first: dict[str, float] = {}
        self.last: dict[str, float] = {}

    def handle(self, path: str, body: bytes) -> tuple[int, dict]:
        match = _PROJECT.search(path)
        task = match.group(1) if match else "?"
        with self._lock:
            now = time.monotonic()
            self.first.setdefault(task, now)
            while self._recent and now - self._recent[0] > self.window:
                self._recent.popleft()
            if self.quota is not None and len(self._recent) >= self.quota:
                return self._refuse(429)
            self._recent.append(now)
        answer = super().handle(path, body)
        with self._lock:
            self.last[task] = time.monotonic()
        return answer


def run_tasks(
    fake: ScaledQuotaFake,
    tasks: int,
    objects: int,
    rate_limit: float,
    concurrency: int,
    proportional: bool,
) -> dict:
    """N task processes, started together; once all are ready (backend and clients made) they
    are told to go. When each was ready, when they went, and how many each embedded."""
    started = time.monotonic()
    children = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--task",
                json.dumps(
                    dict(
                        index=i,
                        count=tasks,
                        objects=objects,
                        endpoint=fake.endpoint,
                        rate_limit=rate_limit,
                        concurrency=concurrency,
                        proportional=proportional,
                    )
                ),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(tasks)
    ]
    # CLOCK_MONOTONIC is the machine's: the tasks' times compare with ours.
    ready = [float(child.stdout.readline()) - started for child in children]  # type: ignore[union-attr]
    went = time.monotonic()
    for child in children:
        child.stdin.write("go\n")  # type: ignore[union-attr]
        child.stdin.flush()  # type: ignore[union-attr]
    embedded = [json.loads(child.communicate()[0])["embedded"] for child in children]
    if any(child.returncode for child in children):
        raise SystemExit("a task failed")
    return {"ready": ready, "went": went, "ended": time.monotonic(), "embedded": embedded}


def content_key(uri: str) -> str:
    """A stand-in for the object's content key, a digest of its bytes: what a shard is cut by."""
    return hashlib.sha256(uri.encode()).hexdigest()


def task(spec: dict) -> None:
    """One task: its shard of the objects, through the backend, sharing the quota."""
    from pipeline.core.shards import Shard
    from pipeline.embedding.backends.base import ImageItem
    from pipeline.embedding.backends.vertex_requests import VertexImage
    from pipeline.errors import ItemFailure
    from pipeline.plugins import get_backend

    shard = Shard(spec["index"], spec["count"])
    backend = get_backend(
        "vertex",
        project=f"task{shard.index}",
        dimension=128,
        api_endpoint=spec["endpoint"],
        rate_limit=spec["rate_limit"],
        concurrency=spec["concurrency"],
    )
    uris = [f"gs://bench/img{i:06d}.jpg" for i in range(spec["objects"])]
    own = [uri for uri in uris if shard.owns(content_key(uri))]
    # As N tasks, or in proportion to its share (each task knows both from the manifest).
    backend.share_quota(len(uris) / len(own) if spec["proportional"] else shard.count)
    backend.clients()  # made before the first request, as in `_predict`
    print(time.monotonic(), flush=True)
    sys.stdin.readline()  # go
    items = (ImageItem(uri, source=VertexImage("image/jpeg", gcs_uri=uri)) for uri in own)
    results = [result for _, result in backend.embed_stream(items)]
    if any(isinstance(result, ItemFailure) for result in results):
        raise SystemExit(f"task {shard}: some images failed")
    print(json.dumps({"embedded": len(results)}))


def make_pngs(folder: Path, n: int) -> None:
    """n distinct tiny PNGs (distinct bytes: identical ones would share a content key)."""
    from PIL import Image

    folder.mkdir(parents=True)
    for i in range(n):
        Image.new("RGB", (8, 8), (i % 256, (i // 256) % 256, 7)).save(folder / f"img{i:05d}.png")


def embed_tasks(fake: ScaledQuotaFake, tasks: int, work: Path, env: dict, concurrency: int):
    """N `imgvec embed --shard i/N` processes over one work dir, all at once; when they started."""
    started = time.monotonic()
    children = [
        subprocess.Popen(
            [
                *IMGVEC,
                "embed",
                "--work-dir",
                str(work),
                "--shard",
                f"{i}/{tasks}",
                "--backend",
                "vertex",
                "--project",
                f"task{i}",
                "--dimension",
                "128",
                "--api-endpoint",
                fake.endpoint,
                "--rate-limit",
                "60000",
                "--concurrency",
                str(concurrency),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(tasks)
    ]
    for child in children:
        out, err = child.communicate()
        if child.returncode:
            raise SystemExit(f"imgvec embed exited {child.returncode}: {out}{err}")
    return started


def throughput(args, scratch: Path, env: dict) -> None:
    print(
        f"(a) `imgvec embed --shard i/N`, quota not binding: {args.concurrency} requests in "
        f"flight per task, {args.latency * 1000:.0f} ms each"
    )
    per_task = int(args.seconds * args.concurrency / args.latency)
    make_pngs(scratch / "images", per_task * 8)
    one = None
    overheads: dict[int, list[float]] = {}
    for tasks in (1, 2, 4, 8):
        folder, work = scratch / f"images-{tasks}", scratch / f"work-{tasks}"
        folder.mkdir()
        for path in sorted((scratch / "images").iterdir())[: per_task * tasks]:
            os.link(path, folder / path.name)
        listing = [*IMGVEC, "list", str(folder), "--work-dir", str(work)]
        subprocess.run(listing, env=env, check=True, capture_output=True)
        fake = ScaledQuotaFake(args.latency, quota=None)
        try:
            started = embed_tasks(fake, tasks, work, env, args.concurrency)
        finally:
            fake.stop()
        # Counted while every task runs: not the start-up of the last nor the tail of the first.
        since, until = max(fake.first.values()), min(fake.last.values())
        if until <= since:
            raise SystemExit(f"N={tasks}: a task ended before the last began: raise --seconds")
        answered = sum(since <= t <= until for t in fake.success_times)
        rate = answered / (until - since)
        one = one or rate
        overheads[tasks] = [fake.first[f"task{i}"] - started for i in range(tasks)]
        print(
            f"    N={tasks}: {rate:6.1f} requests/s = {rate / one:4.2f} x one task "
            f"({rate / one / tasks:.0%} of N x); {per_task * tasks} objects, "
            f"{fake.stats['ok']} requests, {fake.stats['429']} 429s"
        )
    print("(c) an `imgvec embed --shard` task's start to its first request")
    for tasks, seconds in overheads.items():
        print(f"    N={tasks}: median {statistics.median(seconds):.2f} s, max {max(seconds):.2f} s")


def total_time(args) -> None:
    quota, tasks = 600, 8
    ideal = args.objects / quota  # minutes
    print(
        f"(b) {args.objects} objects, {tasks} tasks, quota {quota}/min (a minute scaled down "
        f"{args.speedup:g}x), {args.latency * 1000:.0f} ms per request"
    )
    for proportional in (False, True):
        fake = ScaledQuotaFake(args.latency, quota=quota, speedup=args.speedup)
        try:  # 16 in flight (the backend's default): the quota binds, not the latency
            run = run_tasks(fake, tasks, args.objects, quota * args.speedup, 16, proportional)
        finally:
            fake.stop()
        # From the go to the last answer, scaled; the start-up (and the processes' exit) take the
        # same seconds at any quota: not scaled.
        start_up = max(run["ready"])
        minutes = (max(fake.last.values()) - run["went"]) * args.speedup / 60
        shares = run["embedded"]
        print(
            f"    each at {'its share of the objects' if proportional else '1/N'} of the quota: "
            f"{minutes:.2f} min (scaled) vs ideal {ideal:.2f} min: {minutes / ideal - 1:+.1%}, "
            f"+ {start_up:.1f} s of start-up (not scaled): "
            f"{(minutes + start_up / 60) / ideal - 1:+.1%}; {fake.stats['429']} 429s; "
            f"shares {min(shares)}-{max(shares)} (the largest "
            f"{max(shares) * tasks / args.objects - 1:+.1%} over an even share)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", help=argparse.SUPPRESS)
    parser.add_argument("--objects", type=int, default=20_000, help="objects in (b)")
    parser.add_argument("--speedup", type=float, default=10.0, help="how much shorter (b)'s minute")
    parser.add_argument("--latency", type=float, default=0.3, help="seconds per request")
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight per task")
    parser.add_argument("--seconds", type=float, default=10.0, help="each (a) task's share, in s")
    args = parser.parse_args()
    if args.task:
        task(json.loads(args.task))
        return
    from pipeline.db.embedded import EmbeddedPostgres

    scratch = Path(tempfile.mkdtemp(prefix="imgvec-bench-scale-", dir="/tmp"))
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["IMGVEC_HOME"] = str(scratch / "home")
    try:
        throughput(args, scratch, env)
    finally:
        EmbeddedPostgres(scratch / "home" / "pgdata").stop()
        shutil.rmtree(scratch, ignore_errors=True)
    total_time(args)


if __name__ == "__main__":
    main()
