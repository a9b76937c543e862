"""List stage benchmark: N objects in a local GCS emulator, listed end to end (list + manifest +
DB upsert) by imgvec, compared in the same run with
  - the listing alone (the physical limit here: the emulator's paging, no CSV, no DB), and
  - the naive way: one INSERT ... ON CONFLICT per object.
Each measurement runs in a fresh process so peak RSS is its own.

    .venv/bin/python bench/bench_list.py            # 10,000 and 50,000 objects
    .venv/bin/python bench/bench_list.py 2000 5000  # other sizes
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


def child(mode: str, spec: str, work_dir: str) -> None:
    """Runs in its own process: one measurement, printed as JSON."""
    from pipeline.listing import list_source
    from pipeline.listing import store as store_module
    from pipeline.settings import Settings
    from pipeline.sources import open_source
    from pipeline.sources.base import SourceOptions

    settings = Settings()
    upsert_seconds = 0.0
    original_upsert = store_module.ObjectStore.upsert

    async def timed_upsert(self, batch):
        nonlocal upsert_seconds
        started = time.perf_counter()
        try:
            return await original_upsert(self, batch)
        finally:
            upsert_seconds += time.perf_counter() - started

    store_module.ObjectStore.upsert = timed_upsert

    async def run() -> int:
        if mode == "imgvec":
            result = await list_source(spec, work_dir=work_dir, settings=settings)
            return result.counts["listed"]
        source = open_source(spec, SourceOptions())
        if mode == "raw":
            return sum(1 for _ in source.list())
        # naive: what a hand-written loader does, one statement per object
        from pipeline.db import open_database

        count = 0
        async with open_database(settings) as conn:
            for obj in source.list():
                await conn.execute(
                    "INSERT INTO objects (locator, scheme, bucket, key, name, size, generation, md5) "
                    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (locator) DO UPDATE SET last_seen = now()",
                    obj.locator,
                    obj.scheme,
                    obj.bucket,
                    obj.key,
                    obj.name,
                    obj.size,
                    obj.generation,
                    obj.md5,
                )
                count += 1
        return count

    async def empty_objects_table() -> None:
        from pipeline.db import open_database

        async with open_database(settings) as conn:
            await conn.execute("TRUNCATE objects CASCADE")

    if mode != "raw":  # every mode starts from the same empty table: all objects are new
        asyncio.run(empty_objects_table())
    started = time.perf_counter()
    count = asyncio.run(run())
    seconds = time.perf_counter() - started
    peak_mb = peak_rss_mb()
    print(
        json.dumps(
            {
                "mode": mode,
                "objects": count,
                "seconds": seconds,
                "upsert_seconds": upsert_seconds,
                "peak_rss_mb": peak_mb,
            }
        )
    )


def measure(mode: str, spec: str, env: dict, work_dir: str) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", mode, spec, work_dir],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(sizes: list[int]) -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import GcsEmulator

    from pipeline.db.embedded import EmbeddedPostgres

    scratch = Path(tempfile.mkdtemp(prefix="imgvec-bench-list-", dir="/tmp"))
    home = scratch / "home"
    env = dict(os.environ) | {"IMGVEC_HOME": str(home)}
    env.pop("DATABASE_URL", None)
    print(
        f"{'objects':>8} {'mode':>7} {'objects/s':>10} {'vs raw':>7} {'upsert share':>13} {'peak RSS MB':>12}"
    )
    try:
        for n in sizes:
            data = scratch / f"data-{n}" / f"bucket{n}"
            data.mkdir(parents=True)
            for i in range(n):
                (data / f"IMG{i:07d}.jpg").write_bytes(b"x")
            emulator = GcsEmulator(data_dir=data.parent, load_timeout=1800)
            run_env = env | {"STORAGE_EMULATOR_HOST": emulator.url}
            try:
                modes = ["raw", "imgvec"] + (["naive"] if n <= 10_000 else [])
                spec = f"gs://bucket{n}/"
                measure(
                    "raw", spec, run_env, str(scratch / "work")
                )  # warm-up: the emulator's first listing is slow
                results = {m: measure(m, spec, run_env, str(scratch / "work")) for m in modes}
            finally:
                emulator.stop()
            raw_rate = results["raw"]["objects"] / results["raw"]["seconds"]
            for mode, r in results.items():
                rate = r["objects"] / r["seconds"]
                share = f"{r['upsert_seconds'] / r['seconds']:.0%}" if mode == "imgvec" else "-"
                print(
                    f"{n:>8} {mode:>7} {rate:>10.0f} {rate / raw_rate:>7.2f} {share:>13} {r['peak_rss_mb']:>12.0f}"
                )
    finally:
        EmbeddedPostgres(home / "pgdata").stop()
        shutil.rmtree(scratch, ignore_errors=True)  # gigabytes of parts and database


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(*sys.argv[2:5])
    else:
        main([int(a) for a in sys.argv[1:]] or [10_000, 50_000])
