"""Load stage and query benchmark, figures taken in one run:

(a) load rows/s from embed-stage CSV parts (imgvec load) vs raw binary COPY of the same vectors
    (the physical limit) vs one INSERT per row (the classic tutorial's way), 100k x 512-d, and the
    load's peak RSS (a fresh process);
(b) HNSW build time, then query p50/p99 and recall@10 vs exact search on 200k clustered,
    normalised 512-d vectors at three hnsw.ef_search settings;
(c) `imgvec run` rerun over an unchanged 10,000-object source: seconds, embeddings computed.

    .venv/bin/python bench/bench_load.py                 # all three
    .venv/bin/python bench/bench_load.py a               # one of them
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from peak_rss import peak_rss_mb  # noqa: E402

from pipeline.core.space import EmbeddingSpace  # noqa: E402
from pipeline.db import connect, open_database  # noqa: E402
from pipeline.db.connection import resolve_url  # noqa: E402
from pipeline.db.spaces import partition_name, register_space  # noqa: E402
from pipeline.loading.binary_copy import binary_copy  # noqa: E402
from pipeline.loading.indexing import create_hnsw_index  # noqa: E402
from pipeline.settings import Settings  # noqa: E402

SPACE = EmbeddingSpace("bench", "clustered", "seed0", 512)


def clustered(
    n: int, d: int = 512, clusters: int = 1000, seed: int = 0, intrinsic: int = 32
) -> np.ndarray:
    """Unit vectors in clusters whose spread lies in a low-dimensional subspace, as image embeddings
    do (their intrinsic dimension is tens, not 512). Isotropic 512-d noise would make every point
    of a cluster equidistant from every other: no real collection looks like that."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, d)).astype(np.float32)
    basis = rng.standard_normal((intrinsic, d)).astype(np.float32)
    spread = (rng.standard_normal((n, intrinsic)).astype(np.float32) @ basis) * 0.5
    v = centres[rng.integers(0, clusters, n)] + spread
    return v / np.linalg.norm(v, axis=1, keepdims=True)


async def fresh_database(settings: Settings, name: str) -> str:
    url = await resolve_url(settings)
    admin = await connect(url, register_vector=False)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return url.replace("/imgvec?", f"/{name}?")


async def insert_objects(conn, n: int) -> None:
    await conn.copy_records_to_table(
        "objects",
        columns=["locator", "scheme", "key", "name", "content_hash"],
        records=(
            (f"file:///bench/{i}.jpg", "file", f"/bench/{i}.jpg", f"{i}.jpg", f"md5:{i:032x}")
            for i in range(n)
        ),
    )


# -- (a) ---------------------------------------------------------------------------------------


def write_parts(work: Path, vectors: np.ndarray, part_size: int = 256) -> None:
    from pipeline.checkpoints.parts import Embedded, PartWriter, space_folder
    from pipeline.workdir import WorkDir

    writer = PartWriter(WorkDir(work), space_folder(SPACE), SPACE, 0)
    for start in range(0, len(vectors), part_size):
        rows = [
            Embedded(f"file:///bench/{i}.jpg", f"md5:{i:032x}", vectors[i])
            for i in range(start, min(start + part_size, len(vectors)))
        ]
        writer.write(rows, [])


async def raw_copy_into_partition(
    conn, label: str, ids: list[int], vectors: np.ndarray, hashes: list[str]
) -> float:
    """rows/s of one binary COPY of the rows into a new space's partition: as asyncpg records
    (label "records-..."), or as one buffer laid out before the clock starts."""
    space_id = await register_space(
        conn, EmbeddingSpace("bench", f"raw-copy-{label}", "seed0", 512)
    )
    table, columns = (
        partition_name(space_id),
        ["space_id", "object_id", "embedding", "content_hash"],
    )
    # Throwaway table: keep autovacuum off it so it does not run during the next contender.
    await conn.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = off)")
    buffer = binary_copy(
        [("int4", space_id), ("int8", ids), ("vector", vectors), ("text", hashes)], len(ids)
    )
    await conn.execute("CHECKPOINT")  # each contender starts with no dirty pages to flush
    started = time.perf_counter()
    if label.startswith("records"):
        await conn.copy_records_to_table(
            table, columns=columns, records=zip(itertools.repeat(space_id), ids, vectors, hashes)
        )
    else:
        await conn.copy_to_table(table, columns=columns, source=buffer, format="binary")
    return len(ids) / (time.perf_counter() - started)


def child_load(url: str, work: str) -> None:
    from pipeline.loading import load_work_dir

    settings = Settings(database_url=url)
    started, cpu = time.perf_counter(), time.process_time()
    result = asyncio.run(load_work_dir(work_dir=work, settings=settings, index=False))
    print(
        json.dumps(
            {
                "rows": result.counts["rows"],
                "seconds": time.perf_counter() - started,
                "client_cpu_seconds": time.process_time() - cpu,
                "peak_rss_mb": peak_rss_mb(),
            }
        )
    )


async def bench_a(settings: Settings, scratch: Path, n: int = 100_000) -> None:
    print(f"(a) load {n:,} x 512-d vectors")
    vectors = clustered(n)
    work = scratch / "work-a"
    write_parts(work, vectors)
    url = await fresh_database(settings, "bench_a")
    async with open_database(Settings(database_url=url)) as conn:
        await insert_objects(conn, n)
        space_id = await register_space(conn, SPACE)
        await conn.execute("VACUUM ANALYZE objects")
        # The physical limit: the same vectors COPYed into a bare table, with pgvector's default
        # storage (2 KB vectors go to the TOAST table) and inline (as imgvec stores them).
        raw = {}
        for storage in ("EXTERNAL", "PLAIN"):
            table = f"raw_copy_{storage.lower()}"
            # Throwaway tables: keep autovacuum off them so it does not run during the next contender.
            await conn.execute(
                f"CREATE TABLE {table} (id bigint, embedding vector(512)) WITH (autovacuum_enabled = off)"
            )
            await conn.execute(f"ALTER TABLE {table} ALTER COLUMN embedding SET STORAGE {storage}")
            await conn.execute("CHECKPOINT")  # each contender starts with no dirty pages to flush
            started = time.perf_counter()
            await conn.copy_records_to_table(
                table, records=zip(range(n), vectors, strict=False), columns=["id", "embedding"]
            )
            raw[storage] = n / (time.perf_counter() - started)
        # ... and the same rows imgvec writes (vector + content hash) into a space's partition of
        # `embeddings`, with its primary key and its foreign key to objects: the limit for this schema,
        # sent as one buffer encoded before the clock starts (the server's own limit: no client work
        # at all) and the documented way (asyncpg records, pgvector's codec). This shared machine
        # changes speed within minutes: imgvec and these two take turns, three rounds, and each
        # round gives a ratio.
        await conn.execute(
            "CREATE TABLE naive (id bigint, embedding vector(512)) WITH (autovacuum_enabled = off)"
        )
        sample = 5_000
        started = time.perf_counter()
        for i in range(sample):
            await conn.execute("INSERT INTO naive VALUES ($1, $2)", i, vectors[i])
        naive = sample / (time.perf_counter() - started)
        ids = [r[0] for r in await conn.fetch("SELECT object_id FROM objects ORDER BY object_id")]
        hashes = [f"md5:{i:032x}" for i in range(n)]
        rounds = []
        for round_ in range(3):
            buffer = await raw_copy_into_partition(conn, f"buffer-{round_}", ids, vectors, hashes)
            await conn.execute(
                f"TRUNCATE {partition_name(space_id)}"
            )  # imgvec loads everything again
            await conn.execute("TRUNCATE loaded_parts")
            await conn.execute("CHECKPOINT")
            out = subprocess.run(
                [sys.executable, __file__, "--child-load", url, str(work)],
                capture_output=True,
                text=True,
                check=True,
            )
            ours = json.loads(out.stdout.strip().splitlines()[-1])
            records = await raw_copy_into_partition(conn, f"records-{round_}", ids, vectors, hashes)
            rounds.append((ours["rows"] / ours["seconds"], buffer, records, ours))
    rate, buffer, records = (float(np.median([r[i] for r in rounds])) for i in range(3))
    ratios = ", ".join(f"{r[0] / r[1]:.2f}" for r in rounds)
    print(
        f"    imgvec load (parts -> binary COPY):                {rate:8.0f} rows/s   (median of 3 rounds)"
    )
    print("    raw binary COPY into a space's partition:")
    print(
        f"      one pre-encoded buffer (the server's limit):     {buffer:8.0f} rows/s   imgvec = {rate / buffer:.2f} x"
        f"   (rounds: {ratios})"
    )
    print(
        f"      asyncpg records + pgvector's codec:              {records:8.0f} rows/s   imgvec = {rate / records:.2f} x"
    )
    print(
        f"    raw binary COPY, bare table, inline vectors:       {raw['PLAIN']:8.0f} rows/s   imgvec = {rate / raw['PLAIN']:.2f} x"
    )
    print(
        f"    raw binary COPY, bare table, pgvector's default:   {raw['EXTERNAL']:8.0f} rows/s   imgvec = {rate / raw['EXTERNAL']:.2f} x"
    )
    print(
        f"    one INSERT per row, bare table (first {sample:,}):   {naive:8.0f} rows/s   imgvec = {rate / naive:.1f} x"
    )
    peaks = [r[3]["peak_rss_mb"] for r in rounds]
    cpu = np.median([r[3]["client_cpu_seconds"] / r[3]["seconds"] for r in rounds])
    print(
        f"    peak RSS of the load: {min(peaks):.0f}-{max(peaks):.0f} MB ({n // 256 + 1} parts); "
        f"client CPU {cpu:.0%} of its wall time"
    )


# -- (b) ---------------------------------------------------------------------------------------


async def bench_b(settings: Settings, n: int = 200_000, queries: int = 200) -> None:
    print(f"(b) HNSW on {n:,} clustered, normalised 512-d vectors (m=16, ef_construction=64)")
    vectors = clustered(n, seed=1)
    rng = np.random.default_rng(2)
    picks = rng.integers(0, n, queries)
    probes = vectors[picks] + 0.05 * rng.standard_normal((queries, 512)).astype(np.float32)
    probes /= np.linalg.norm(probes, axis=1, keepdims=True)
    exact = np.argsort(-(probes @ vectors.T), axis=1)[:, :10]  # cosine = L2 order on unit vectors
    url = await fresh_database(settings, "bench_b")
    async with open_database(Settings(database_url=url)) as conn:
        await insert_objects(conn, n)
        space_id = await register_space(conn, SPACE)
        ids = [r[0] for r in await conn.fetch("SELECT object_id FROM objects ORDER BY object_id")]
        await conn.copy_records_to_table(
            "embeddings",
            columns=["space_id", "object_id", "embedding"],
            records=((space_id, ids[i], vectors[i]) for i in range(n)),
        )
        await conn.execute("ANALYZE")
        started = time.perf_counter()
        async with conn.transaction():
            await conn.execute("SET LOCAL maintenance_work_mem = '2GB'")
            await conn.execute("SET LOCAL max_parallel_maintenance_workers = 1")
            await create_hnsw_index(conn, space_id)
        print(f"    build: {time.perf_counter() - started:.0f} s")
        position = {oid: i for i, oid in enumerate(ids)}
        sql = (
            f"SELECT object_id FROM embeddings WHERE space_id = {space_id} "
            "ORDER BY embedding::vector(512) <-> $1 LIMIT 10"
        )
        plan = "\n".join(r[0] for r in await conn.fetch(f"EXPLAIN {sql}", probes[0]))
        assert "hnsw" in plan, plan
        for ef in (40, 100, 200):
            await conn.execute(f"SET hnsw.ef_search = {ef}")
            latencies, recalls = [], []
            for q in range(queries):
                started = time.perf_counter()
                rows = await conn.fetch(sql, probes[q])
                latencies.append((time.perf_counter() - started) * 1000)
                found = {position[r[0]] for r in rows}
                recalls.append(len(found & set(exact[q])) / 10)
            p50, p99 = np.percentile(latencies, [50, 99])
            print(
                f"    ef_search={ef:3d}: p50 {p50:5.1f} ms, p99 {p99:5.1f} ms, recall@10 {np.mean(recalls):.3f}"
            )


# -- (c) ---------------------------------------------------------------------------------------


def bench_c(scratch: Path, env: dict, n: int = 10_000) -> None:
    """The nightly job's usual case: nothing new. With the default backend (CLIP; weights
    `none` since none can be downloaded here), whose parts are made here from random vectors: a
    real first run would embed 10k images for 12 minutes to reach the same state."""
    from PIL import Image

    from pipeline.checkpoints.parts import Embedded, PartWriter, space_folder
    from pipeline.plugins import get_backend
    from pipeline.workdir import WorkDir

    print(f"(c) imgvec run over an unchanged {n:,}-object folder (default backend: CLIP ViT-B-32)")
    folder, work = scratch / "images-c", scratch / "work-c"
    folder.mkdir()
    for i in range(n):
        Image.new("RGB", (8, 8), (i % 256, (i // 256) % 256, 7)).save(folder / f"img{i:05d}.png")
    imgvec = [sys.executable, "-m", "pipeline"]
    subprocess.run(
        [*imgvec, "list", str(folder), "--work-dir", str(work)],
        env=env,
        check=True,
        capture_output=True,
    )
    space = get_backend("clip", pretrained="none").space  # no model is loaded for this
    manifest = next((work / "manifests").glob("*.csv"))
    rows = pd.read_csv(manifest, dtype="string", keep_default_na=False)
    writer = PartWriter(WorkDir(str(work)), space_folder(space), space, 0)
    vectors = np.random.default_rng(0).standard_normal((len(rows), space.dimension), "float32")
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    for start in range(0, len(rows), 256):
        chunk = rows.iloc[start : start + 256]
        writer.write(
            [
                Embedded(r.locator, r.content_hash, v)
                for r, v in zip(chunk.itertuples(), vectors[start : start + 256], strict=True)
            ],
            [],
        )
    subprocess.run(
        [*imgvec, "load", "--work-dir", str(work)], env=env, check=True, capture_output=True
    )
    rerun = [
        "/usr/bin/time",
        "-f",
        "%e %M",
        *imgvec,
        "run",
        str(folder),
        "--work-dir",
        str(work),
        "--pretrained",
        "none",
    ]
    for attempt in range(3):
        out = subprocess.run(
            rerun, env=env | {"PYTHONPROFILEIMPORTTIME": "1"}, capture_output=True, text=True
        )
        seconds, kb = out.stderr.strip().splitlines()[-1].split()
        heavy = sorted(
            {
                m
                for m in ("torch", "open_clip", "google.cloud.aiplatform_v1", "pandas")
                if re.search(rf"\| +{re.escape(m)}$", out.stderr, re.M)
            }
        )
        embedded = next(line for line in out.stdout.splitlines() if line.startswith("embedded"))
        print(
            f"    rerun {attempt + 1}: {float(seconds):4.1f} s, peak RSS {int(kb) / 1024:4.0f} MB, "
            f"exit {out.returncode}; {embedded.split(': ', 2)[2][:40]}; heavy modules: {heavy}"
        )
    helps = []
    for _ in range(5):
        started = time.perf_counter()
        subprocess.run([*imgvec, "--help"], env=env, capture_output=True, check=True)
        helps.append(time.perf_counter() - started)
    print(f"    imgvec --help: {min(helps):.2f} s best of 5, {np.median(helps):.2f} s median")


def main(which: str) -> None:
    from pipeline.db.embedded import EmbeddedPostgres

    scratch = Path(tempfile.mkdtemp(prefix="imgvec-bench-load-", dir="/tmp"))
    home = scratch / "home"
    os.environ.pop("DATABASE_URL", None)
    os.environ["IMGVEC_HOME"] = str(home)
    settings = Settings()
    try:
        if "a" in which:
            asyncio.run(bench_a(settings, scratch))
        if "b" in which:
            asyncio.run(bench_b(settings))
        if "c" in which:
            bench_c(scratch, dict(os.environ))
    finally:
        EmbeddedPostgres(home / "pgdata").stop()
        shutil.rmtree(scratch, ignore_errors=True)  # gigabytes of parts and database


if __name__ == "__main__":
    if sys.argv[1:2] in (["-h"], ["--help"]):
        print(__doc__)
    elif len(sys.argv) > 1 and sys.argv[1] == "--child-load":
        child_load(sys.argv[2], sys.argv[3])
    else:
        main(sys.argv[1] if len(sys.argv) > 1 else "abc")
