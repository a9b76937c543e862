"""Filtered search benchmark (issue 15), figures taken in one run.

200k clustered, normalised 512-d vectors (bench_load's (b) data, so recall means something) in a
space registered the way imgvec registers one, with its HNSW index (m=16, ef_construction=64, as
`imgvec load` builds it; --m and --ef-construction for another), on the embedded PostgreSQL as
imgvec starts it (shared_buffers sized to the machine; --shared-buffers for another);
each object carries attributes `{"label": "c000".."c999", "group": "g0".."g9"}` (class names, as
ImageNet's folders give), drawn at random, independent
of the clusters (as a class rarely matches an embedding cluster exactly), in `objects.attributes`
with its GIN index (migration 0010). A filter on `label` keeps 0.1 % of the rows, one on `group`
10 %. For each selectivity, hnsw.ef_search and `hnsw.iterative_scan` (off / relaxed_order /
strict_order), 100 queries (data points plus a little noise, each with a random filter value)
through imgvec's search query (the SQL of pipeline.search.query._nearest, with `--where
label=c042` compiled by pipeline.search.where: `o.attributes @> $6::jsonb`) give:

- recall@10 against the exact filtered search (the same query ordered by the un-indexed
  expression, so no HNSW index can serve it: the GIN index and an exact sort);
- the share of queries that got exactly k = 10 rows;
- p50 and p99 latency (client-side, one query on an open connection);
- the plan the planner chose: HNSW index scan, or the exact scan fed by the GIN index.

"planner" rows are the planner's own choice (plans: how many of the 100 filter values got the
HNSW plan, how many the exact one); "HNSW forced" rows turn off sorts, so the HNSW index is used
even where the planner would not: what iterative scans do on their own. Every query is planned
for its own filter value (plan_cache_mode = force_custom_plan), as `imgvec search` runs it once:
after five runs of one prepared statement PostgreSQL may switch to a generic plan, which knows no
value and so no selectivity. The query rounds run three times, interleaved (this machine is
shared): medians of the three ("HNSW forced": one round). With --small a label matches ~20 rows:
recall counts the rows that exist.

    .venv/bin/python bench/bench_filter.py            # 200k vectors, ~10 minutes on 2 cores
    .venv/bin/python bench/bench_filter.py --small    # 20k vectors, a quick check
    # the ef_search sweep of issue 15, then the same data with PostgreSQL's default memory:
    .venv/bin/python bench/bench_filter.py --keep /tmp/bf --ef 200,250,300,400
    .venv/bin/python bench/bench_filter.py --keep /tmp/bf --ef 200,250,300,400 --shared-buffers 128MB

--keep DIR keeps the server's data in DIR and reuses what a previous run left there: the rows are
loaded once, the index is built again only when --m / --ef-construction differ from its own.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_load import SPACE, clustered, fresh_database  # noqa: E402

from pipeline.db import connect, open_database  # noqa: E402
from pipeline.db.connection import resolve_url  # noqa: E402
from pipeline.db.spaces import partition_name, register_space  # noqa: E402
from pipeline.loading.binary_copy import binary_copy  # noqa: E402
from pipeline.loading.indexing import build_index  # noqa: E402
from pipeline.search.where import where_sql  # noqa: E402
from pipeline.settings import Settings  # noqa: E402

DATABASE = "bench_filter"
K = 10
QUERIES = 100
ROUNDS = 3
# attribute -> (number of values, how a value is spelled): selectivity 1/values
ATTRIBUTES = {"label": (1_000, "c{:03d}"), "group": (10, "g{}")}
ITERATIVE_SCANS = ("off", "relaxed_order", "strict_order")
EF_SEARCH = (40, 100, 400)  # 40: pgvector's default; imgvec search takes 400 with --where

# imgvec's search query (pipeline.search.query._nearest; it sets hnsw.iterative_scan itself,
# which a benchmark of the three settings cannot use) with the --where condition.
SEARCH = """
    SELECT o.object_id, o.locator, o.name, e.embedding::vector({dim}) <-> $1 AS distance
    FROM embeddings e JOIN objects o ON o.object_id = e.object_id
    WHERE e.space_id = $2 AND o.deleted_at IS NULL AND o.locator IS DISTINCT FROM $4
      AND ($5::integer IS NULL OR o.source_id = $5) AND {condition}
    ORDER BY distance LIMIT $3
"""
# The same rows ordered by an expression no index has: the exact filtered search.
EXACT = SEARCH.replace("e.embedding::vector({dim}) <-> $1", "e.embedding <-> $1")


@dataclass
class Setting:
    """One way of running the query: the session settings, and what it measured per round."""

    label: str
    settings: dict[str, str]
    recalls: list[float] = field(default_factory=list)
    full: list[float] = field(default_factory=list)
    p50: list[float] = field(default_factory=list)
    p99: list[float] = field(default_factory=list)
    plans: Counter[str] = field(default_factory=Counter)
    rounds: int = ROUNDS


def settings_to_measure(ef_search: list[int]) -> list[Setting]:
    measured = [Setting("exact (GIN + sort)", {})]
    for ef in ef_search:
        for mode in ITERATIVE_SCANS:
            settings = {"hnsw.ef_search": str(ef), "hnsw.iterative_scan": mode}
            measured.append(Setting(f"planner     ef={ef:3d} {mode:13s}", settings))
    # One round, at the default ef_search: at 0.1 % an iterative scan reads up to
    # hnsw.max_scan_tuples (20,000) rows a query, ~0.4 s, and ef_search changes little there.
    for mode in ITERATIVE_SCANS:
        # The exact plan ends in a sort; the HNSW scan delivers rows in order.
        settings = {"hnsw.ef_search": "40", "hnsw.iterative_scan": mode, "enable_sort": "off"}
        measured.append(Setting(f"HNSW forced ef= 40 {mode:13s}", settings, rounds=1))
    return measured


def attribute_values(n: int) -> dict[str, np.ndarray]:
    """Each attribute's values, in row order (the same every run: --keep reuses the rows)."""
    rng = np.random.default_rng(3)
    return {name: rng.integers(0, count, n) for name, (count, _) in ATTRIBUTES.items()}


async def load(conn, vectors: np.ndarray, values: dict[str, np.ndarray]) -> int:
    """Objects with attributes and their vectors in a new space; returns the space."""
    n = len(vectors)
    await conn.copy_records_to_table(
        "objects",
        columns=["locator", "scheme", "key", "name", "content_hash", "attributes"],
        records=(
            (
                f"file:///bench/{i}.jpg",
                "file",
                f"/bench/{i}.jpg",
                f"{i}.jpg",
                f"md5:{i:032x}",
                json.dumps({name: ATTRIBUTES[name][1].format(v[i]) for name, v in values.items()}),
            )
            for i in range(n)
        ),
    )
    space_id = await register_space(conn, SPACE)
    ids = [r[0] for r in await conn.fetch("SELECT object_id FROM objects ORDER BY object_id")]
    await conn.copy_to_table(
        "embeddings",
        columns=["space_id", "object_id", "embedding"],
        source=binary_copy([("int4", space_id), ("int8", ids), ("vector", vectors)], n),
        format="binary",
    )
    await conn.execute("VACUUM ANALYZE objects")
    return space_id


async def index(conn, space_id: int, m: int, ef_construction: int) -> None:
    """The space's HNSW index with these parameters: built as `imgvec index --rebuild` builds it,
    unless a kept database has it already."""
    built = await conn.fetchval(
        "SELECT c.reloptions FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "JOIN pg_am a ON a.oid = c.relam WHERE i.indrelid = $1::regclass AND a.amname = 'hnsw'",
        partition_name(space_id),
    )
    if sorted(built or []) == sorted([f"m={m}", f"ef_construction={ef_construction}"]):
        print(f"    HNSW index m={m}, ef_construction={ef_construction}: kept", flush=True)
        return
    started = time.perf_counter()
    await build_index(
        conn,
        space_id,
        rebuild=True,
        m=m,
        ef_construction=ef_construction,
        maintenance_work_mem="2GB",
    )
    took = time.perf_counter() - started
    print(f"    HNSW build m={m}, ef_construction={ef_construction}: {took:.0f} s", flush=True)


def plan_kind(plan: str) -> str:
    if "_hnsw_" in plan:
        return "HNSW"
    if "ix_objects_attributes" in plan:
        return "GIN+exact"
    return "seq+exact"


async def run_queries(conn, sql: str, setting: Setting, queries, truth) -> list[set[int]]:
    """One round of the queries under the setting's session settings; returns the ids found."""
    for name, value in setting.settings.items():
        await conn.execute(f"SET {name} = '{value}'")
    try:
        if not setting.plans:  # once: each filter value gets its own plan
            for args in queries:
                plan = "\n".join(r[0] for r in await conn.fetch(f"EXPLAIN {sql}", *args))
                setting.plans[plan_kind(plan)] += 1
        found, latencies = [], []
        for args in queries:
            started = time.perf_counter()
            rows = await conn.fetch(sql, *args)
            latencies.append((time.perf_counter() - started) * 1000)
            found.append({r["object_id"] for r in rows})
    finally:
        for name in setting.settings:
            await conn.execute(f"RESET {name}")
    if truth is not None:
        # Of the rows that exist: a filter may match fewer than k (the --small run's rare labels).
        recalls = [len(f & t) / len(t) if t else 1.0 for f, t in zip(found, truth, strict=True)]
        setting.recalls.append(float(np.mean(recalls)))
    setting.full.append(sum(len(f) == K for f in found) / len(found))
    p50, p99 = np.percentile(latencies, [50, 99])
    setting.p50.append(float(p50))
    setting.p99.append(float(p99))
    return found


async def kept_space(settings: Settings, n: int) -> tuple[str, int] | None:
    """The database and space a previous --keep run loaded with the same n rows, or None."""
    url = await resolve_url(settings)
    admin = await connect(url, register_vector=False)
    try:
        if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DATABASE):
            return None
    finally:
        await admin.close()
    url = url.replace("/imgvec?", f"/{DATABASE}?")
    conn = await connect(url, register_vector=False)
    try:
        space_id, rows = await conn.fetchrow("SELECT min(space_id), count(*) FROM embeddings")
    except asyncpg.UndefinedTableError:  # a run stopped before the schema was made
        return None
    finally:
        await conn.close()
    return (url, space_id) if rows == n else None


async def bench(settings: Settings, n: int, args: argparse.Namespace) -> None:
    print(f"{n:,} clustered, normalised 512-d vectors; label: 1,000 values, group: 10")
    vectors, values = clustered(n, seed=1), attribute_values(n)
    kept = await kept_space(settings, n) if args.keep else None
    url = kept[0] if kept else await fresh_database(settings, DATABASE)
    async with open_database(Settings(database_url=url)) as conn:
        space_id = kept[1] if kept else await load(conn, vectors, values)
        await index(conn, space_id, args.m, args.ef_construction)
        memory = await conn.fetchval("SHOW shared_buffers")
        print(f"    shared_buffers {memory}, load average {os.getloadavg()[0]:.1f}", flush=True)
        await conn.execute("SET plan_cache_mode = force_custom_plan")
        rng = np.random.default_rng(4)
        probes = vectors[rng.integers(0, n, QUERIES)]
        probes = probes + 0.05 * rng.standard_normal(probes.shape).astype(np.float32)
        probes /= np.linalg.norm(probes, axis=1, keepdims=True)
        dim = SPACE.dimension
        for attribute, (count, spelling) in ATTRIBUTES.items():
            matching = float(np.mean(values[attribute] == 0))
            print(
                f"  filter on {attribute} ({count} values, {matching:.2%} of the rows match):",
                flush=True,
            )
            queries, condition = [], ""
            for probe in probes:
                value = spelling.format(rng.integers(count))
                condition, bound = where_sql([f"{attribute}={value}"], first_parameter=6)
                queries.append((probe, space_id, K, None, None, *bound))
            measured = settings_to_measure(args.ef)
            for round_ in range(ROUNDS):
                exact = EXACT.format(dim=dim, condition=condition)
                truth = await run_queries(conn, exact, measured[0], queries, None)
                for setting in measured[1:]:
                    if round_ < setting.rounds:
                        search = SEARCH.format(dim=dim, condition=condition)
                        await run_queries(conn, search, setting, queries, truth)
            for setting in measured:
                recall = f"{np.median(setting.recalls):.3f}" if setting.recalls else "1 (truth)"
                plans = ", ".join(f"{kind} {count}" for kind, count in setting.plans.most_common())
                print(
                    f"    {setting.label}: recall@10 {recall:>9s}, exactly k "
                    f"{np.median(setting.full):4.0%}, p50 {np.median(setting.p50):6.1f} ms, "
                    f"p99 {np.median(setting.p99):6.1f} ms, plans: {plans}",
                    flush=True,
                )


def main(args: argparse.Namespace) -> None:
    from pipeline.db.embedded import EmbeddedPostgres

    scratch = Path(args.keep or tempfile.mkdtemp(prefix="imgvec-bench-filter-", dir="/tmp"))
    home = scratch / "home"
    os.environ.pop("DATABASE_URL", None)
    os.environ["IMGVEC_HOME"] = str(home)
    server = EmbeddedPostgres(home / "pgdata")
    server.stop()  # a kept server may run with other memory
    try:
        server.start(shared_buffers=args.shared_buffers)
        asyncio.run(bench(Settings(), 20_000 if args.small else 200_000, args))
    finally:
        server.stop()
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--small", action="store_true", help="20k vectors, not 200k")
    parser.add_argument("--m", type=int, default=16, help="HNSW m (imgvec's: 16)")
    parser.add_argument(
        "--ef-construction", type=int, default=64, help="HNSW ef_construction (imgvec's: 64)"
    )
    parser.add_argument(
        "--ef",
        type=lambda text: [int(ef) for ef in text.split(",")],
        default=list(EF_SEARCH),
        help="hnsw.ef_search values, comma-separated (default: 40,100,400)",
    )
    parser.add_argument(
        "--shared-buffers", help="the server's shared_buffers (default: as imgvec sizes it)"
    )
    parser.add_argument("--keep", metavar="DIR", help="keep the server's data in DIR, reuse it")
    return parser.parse_args()


if __name__ == "__main__":
    main(parse_args())
