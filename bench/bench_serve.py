"""`imgvec serve` benchmark (issue 16), figures taken in one run.

200k clustered, normalised 512-d vectors (bench_load's data) loaded into the space of the default
CLIP backend (ViT-B-32, no weights: the vectors are the clustered ones, so recall means something
and text queries still run the real text tower), objects named like files, the HNSW index built.
Then, against a real `imgvec serve` (a child process, uvicorn on 127.0.0.1):

- `GET /api/images/{id}/similar?k=10` — p50 / p99 latency and requests/s with 1 and 16 concurrent
  clients, beside the same query run directly (`pipeline.search.similar_to` on an asyncpg pool in
  this process, given the space's id as the service is: the one statement the endpoint runs,
  without HTTP, JSON and the service around it). The
  same object ids in the same order for both; the rounds are interleaved (this machine is shared).
- `GET /api/search?text=…` — p50 including the text embedding (the model loaded by a first
  request, which is reported on its own), beside `pipeline.search.search` in this process.

Both clients run in this process, on the same 2 cores as the server and the database, so each
must be thin for the ratio to measure the server: asyncpg on the SQL side, and on the API side a
bare keep-alive HTTP/1.1 client (`KeepAlive`, ~0.05 ms of CPU a request; httpx spends ~0.5 ms,
which the server would be charged for). The ratio is of the whole round trip.

    .venv/bin/python bench/bench_serve.py            # 200k vectors, ~5 minutes on 2 cores
    .venv/bin/python bench/bench_serve.py --small    # 20k vectors, a quick check
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_load import clustered, fresh_database  # noqa: E402

from pipeline.db import open_database  # noqa: E402
from pipeline.db.connection import connect  # noqa: E402
from pipeline.db.spaces import register_space  # noqa: E402
from pipeline.loading.binary_copy import binary_copy  # noqa: E402
from pipeline.loading.indexing import create_hnsw_index  # noqa: E402
from pipeline.plugins import get_backend  # noqa: E402
from pipeline.settings import Settings  # noqa: E402

K = 10
REQUESTS = 2000  # per client count and side, per round (at 16 clients: ~3 s, so its tail is ~1 %)
ROUNDS = 3
TEXTS = ("a red car", "a cat on a sofa", "mountains at dawn", "a bowl of fruit", "city at night")


async def load(conn, vectors: np.ndarray, space) -> tuple[int, list[int]]:
    n = len(vectors)
    await conn.copy_records_to_table(
        "objects",
        columns=["locator", "scheme", "key", "name", "content_hash", "content_type"],
        records=(
            (
                f"file:///bench/{i:06d}.jpg",
                "file",
                f"/bench/{i:06d}.jpg",
                f"{i:06d}.jpg",
                f"md5:{i:032x}",
                "image/jpeg",
            )
            for i in range(n)
        ),
    )
    space_id = await register_space(conn, space)
    ids = [r[0] for r in await conn.fetch("SELECT object_id FROM objects ORDER BY object_id")]
    await conn.copy_to_table(
        "embeddings",
        columns=["space_id", "object_id", "embedding", "content_hash"],
        source=binary_copy(
            [
                ("int4", space_id),
                ("int8", ids),
                ("vector", vectors),
                ("text", [f"md5:{i:032x}" for i in range(n)]),
            ],
            n,
        ),
        format="binary",
    )
    started = time.perf_counter()
    async with conn.transaction():
        await conn.execute("SET LOCAL maintenance_work_mem = '2GB'")
        await conn.execute("SET LOCAL max_parallel_maintenance_workers = 1")
        await create_hnsw_index(conn, space_id)
    print(f"  HNSW build: {time.perf_counter() - started:.0f} s", flush=True)
    await conn.execute("VACUUM ANALYZE objects")
    await conn.execute("ANALYZE embeddings")
    return space_id, ids


def start_server(url: str, port: int, scratch: Path) -> subprocess.Popen:
    env = dict(os.environ, DATABASE_URL=url, IMGVEC_WORK_DIR=str(scratch / "work"))
    server = subprocess.Popen(
        [
            str(ROOT / ".venv/bin/imgvec"),
            "serve",
            "--port",
            str(port),
            "--pretrained",
            "none",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(scratch / "serve.log", "w"),  # the child owns it
    )
    import httpx

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        if server.poll() is not None:
            break
        time.sleep(0.2)
    server.kill()
    raise SystemExit(f"imgvec serve did not start: {(scratch / 'serve.log').read_text()[-2000:]}")


class KeepAlive:
    """One keep-alive HTTP/1.1 connection, GETs one at a time: the bare minimum of a client."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def get(self, path: str) -> tuple[int, bytes]:
        try:
            return await self._get(path)
        except (asyncio.IncompleteReadError, ConnectionError):
            # uvicorn closes a connection idle for 5 s (the other side's round): connect again
            self.close()
            self.streams = None
            return await self._get(path)

    async def _get(self, path: str) -> tuple[int, bytes]:
        if self.streams is None:
            self.streams = await asyncio.open_connection("127.0.0.1", self.port)
        reader, writer = self.streams
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        length = re.search(rb"(?i)content-length: *([0-9]+)", head)
        assert length, head  # (the API's JSON answers all carry their length)
        return int(head[9:12]), await reader.readexactly(int(length[1]))

    def close(self) -> None:
        if self.streams is not None:
            self.streams[1].close()


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time the processes have used (Linux /proc)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:  # (a backend that ended)
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far (Linux /proc/stat): what share of
    both cores a phase used, whoever used them."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields) - idle) / os.sysconf("SC_CLK_TCK"), sum(fields) / os.sysconf("SC_CLK_TCK")


def database_pids(pgdata: Path) -> list[int]:
    """The embedded server's postmaster and its backends (those serving this run's clients)."""
    postmaster = int((pgdata / "postmaster.pid").read_text().split()[0])
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == postmaster:
                children.append(int(stat.parent.name))
        except (FileNotFoundError, ProcessLookupError):
            continue
    return [postmaster, *children]


async def timed(call, args: list, clients: int) -> tuple[list[float], float]:
    """Latencies (ms) of `call(arg)` for every arg, `clients` at a time; and requests/s."""
    queue = list(reversed(args))
    latencies: list[float] = []

    async def client():
        while queue:
            arg = queue.pop()
            started = time.perf_counter()
            await call(arg)
            latencies.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return latencies, len(args) / (time.perf_counter() - started)


def line(label: str, latencies: list[float], rate: float | None = None) -> str:
    p50, p99 = np.percentile(latencies, [50, 99])
    per_second = f", {rate:7.0f} req/s" if rate is not None else ""
    return f"    {label:34s} p50 {p50:6.2f} ms, p99 {p99:7.2f} ms{per_second}"


async def bench(settings: Settings, n: int, scratch: Path) -> None:
    pgdata = scratch / "home" / "pgdata"  # (main: IMGVEC_HOME)
    import httpx

    from pipeline.search import search, similar_to

    backend = get_backend("clip", model="ViT-B-32", pretrained="none")
    space = backend.space
    print(f"{n:,} clustered, normalised 512-d vectors in space {space.name}")
    url = await fresh_database(settings, "bench_serve")
    async with open_database(Settings(database_url=url)) as conn:
        space_id, ids = await load(conn, clustered(n, seed=1), space)
    port = 18_000 + os.getpid() % 1000
    server = start_server(url, port, scratch)
    pool = [await connect(url) for _ in range(16)]
    free = list(pool)
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}",
            limits=httpx.Limits(max_connections=16, max_keepalive_connections=16),
            timeout=60,
        ) as http:
            keep_alives = [KeepAlive(port) for _ in range(16)]
            idle = list(keep_alives)

            async def api_similar(object_id: int) -> None:
                client = idle.pop()
                try:
                    status, body = await client.get(f"/api/images/{object_id}/similar?k={K}")
                finally:
                    idle.append(client)
                assert status == 200 and len(json.loads(body)["results"]) == K, body[:200]

            async def sql_similar(object_id: int) -> None:
                conn = free.pop()
                try:
                    assert len(await similar_to(conn, space, object_id, K, space_id=space_id)) == K
                finally:
                    free.append(conn)

            rng = np.random.default_rng(5)
            print("  GET /api/images/{id}/similar?k=10 vs the same query on asyncpg:", flush=True)
            results: dict[tuple[str, int], list] = {}
            # CPU time a request, each process apart: on a shared machine wall-clock rates swing
            # with other jobs, while what each side costs the CPU holds still.
            cpu: dict[tuple[str, int], list] = {}
            usage: dict[tuple[str, int], list] = {}  # the share of both cores busy
            processes = {"server": [server.pid], "postgres": [], "client": [os.getpid()]}
            for call in (sql_similar, api_similar):  # not timed: both pools filled, code warm
                await timed(call, [int(i) for i in rng.choice(ids, 64)], 16)
            for _round in range(ROUNDS):
                for clients in (1, 16):
                    chosen = [int(i) for i in rng.choice(ids, REQUESTS)]
                    for side, call in (("direct SQL", sql_similar), ("API", api_similar)):
                        processes["postgres"] = database_pids(pgdata)
                        before = {k: cpu_seconds(p) for k, p in processes.items()}
                        busy = machine_busy()
                        latencies, rate = await timed(call, chosen, clients)
                        busy = [b - a for a, b in zip(busy, machine_busy(), strict=True)]
                        after = {k: cpu_seconds(p) for k, p in processes.items()}
                        usage.setdefault((side, clients), []).append(busy[0] / busy[1])
                        results.setdefault((side, clients), []).append((latencies, rate))
                        cpu.setdefault((side, clients), []).append(
                            [(after[k] - before[k]) * 1000 / len(chosen) for k in processes]
                        )
            for clients in (1, 16):
                for side in ("direct SQL", "API"):
                    runs = results[(side, clients)]
                    latencies = [x for lat, _ in runs for x in lat]
                    rate = float(np.median([r for _, r in runs]))
                    print(line(f"{side}, {clients:2d} client(s)", latencies, rate))
                direct, api = (
                    (
                        np.median([np.median(lat) for lat, _ in results[(s, clients)]]),
                        np.median([r for _, r in results[(s, clients)]]),
                    )
                    for s in ("direct SQL", "API")
                )
                print(
                    f"    -> {clients} client(s): the API adds {api[0] - direct[0]:+.2f} ms to p50; "
                    f"rate {api[1] / direct[1]:.2f}x the direct SQL's",
                    flush=True,
                )
                costs = {s: np.median(cpu[(s, clients)], axis=0) for s in ("direct SQL", "API")}
                for s, (in_server, in_postgres, in_client) in costs.items():
                    print(
                        f"       CPU a request, {s:10s}: server {in_server:.2f} ms, postgres "
                        f"{in_postgres:.2f} ms, client {in_client:.2f} ms; the machine's "
                        f"cores {np.median(usage[(s, clients)]):.0%} busy"
                    )
                print(
                    f"       -> the rate where CPU is what runs out: "
                    f"{costs['direct SQL'].sum() / costs['API'].sum():.2f}x the direct SQL's"
                )

            print("  text search, k=10 (the text embedded on every request):", flush=True)
            started = time.perf_counter()
            (await http.get("/api/search", params={"text": "warm up", "k": K})).raise_for_status()
            print(f"    first request (loads the model): {time.perf_counter() - started:.1f} s")
            backend.check()  # this process's model, loaded outside the timing

            async def api_text(text: str) -> None:
                response = await http.get("/api/search", params={"text": text, "k": K})
                response.raise_for_status()

            async def sql_text(text: str) -> None:
                conn = free.pop()
                try:
                    await search(conn, backend, text=text, k=K)
                finally:
                    free.append(conn)

            texts = [f"{TEXTS[i % len(TEXTS)]} {i}" for i in range(60)]
            for side, call in (
                ("in-process search()", sql_text),
                ("GET /api/search?text=", api_text),
            ):
                latencies, _ = await timed(call, texts, 1)
                print(line(side, latencies))
            for keep_alive in keep_alives:
                keep_alive.close()
    finally:
        for conn in pool:
            await conn.close()
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


def main(n: int) -> None:
    from pipeline.db.embedded import EmbeddedPostgres

    scratch = Path(tempfile.mkdtemp(prefix="imgvec-bench-serve-", dir="/tmp"))
    home = scratch / "home"
    os.environ.pop("DATABASE_URL", None)
    os.environ["IMGVEC_HOME"] = str(home)
    try:
        asyncio.run(bench(Settings(), n, scratch))
    finally:
        EmbeddedPostgres(home / "pgdata").stop()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    if sys.argv[1:2] in (["-h"], ["--help"]):
        print(__doc__)
    else:
        main(20_000 if "--small" in sys.argv[1:] else 200_000)
