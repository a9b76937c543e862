"""Filtered search benchmark (issue 15), figures taken in one run.

200k clustered, normalised 512-d vectors (bench_load's (b) data, so recall means something) in a
space registered the way imgvec registers one, with its HNSW index (m=16, ef_construction=64);
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
"""

from __future__ import annotations

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

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_load import SPACE, clustered, fresh_database  # noqa: E402

from pipeline.db import open_database  # noqa: E402
from pipeline.db.spaces import register_space  # noqa: E402
from pipeline.loading.binary_copy import binary_copy  # noqa: E402
from pipeline.loading.indexing import create_hnsw_index  # noqa: E402
from pipeline.search.where import where_sql  # noqa: E402
from pipeline.settings import Settings  # noqa: E402

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


def settings_to_measure() -> list[Setting]:
    measured = [Setting("exact (GIN + sort)", {})]
    for ef in EF_SEARCH:
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


async def load(conn, vectors: np.ndarray) -> tuple[int, dict[str, np.ndarray]]:
    """Objects with attributes, their vectors in a new space, the HNSW index; returns the space
    and each attribute's values, in row order."""
    n = len(vectors)
    rng = np.random.default_rng(3)
    values = {name: rng.integers(0, count, n) for name, (count, _) in ATTRIBUTES.items()}
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
    started = time.perf_counter()
    async with conn.transaction():
        await conn.execute("SET LOCAL maintenance_work_mem = '2GB'")
        await conn.execute("SET LOCAL max_parallel_maintenance_workers = 1")
        await create_hnsw_index(conn, space_id)
    print(f"    HNSW build: {time.perf_counter() - started:.0f} s", flush=True)
    await conn.execute("VACUUM ANALYZE objects")
    await conn.execute("ANALYZE embeddings")
    return space_id, values


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


async def bench(settings: Settings, n: int) -> None:
    print(f"{n:,} clustered, normalised 512-d vectors; label: 1,000 values, group: 10")
    url = await fresh_database(settings, "bench_filter")
    async with open_database(Settings(database_url=url)) as conn:
        vectors = clustered(n, seed=1)
        space_id, values = await load(conn, vectors)
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
            measured = settings_to_measure()
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


def main(n: int) -> None:
    from pipeline.db.embedded import EmbeddedPostgres

    scratch = Path(tempfile.mkdtemp(prefix="imgvec-bench-filter-", dir="/tmp"))
    home = scratch / "home"
    os.environ.pop("DATABASE_URL", None)
    os.environ["IMGVEC_HOME"] = str(home)
    try:
        asyncio.run(bench(Settings(), n))
    finally:
        EmbeddedPostgres(home / "pgdata").stop()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    if sys.argv[1:2] in (["-h"], ["--help"]):
        print(__doc__)
    else:
        main(20_000 if "--small" in sys.argv[1:] else 200_000)
