"""The Alembic-owned schema on a real embedded PostgreSQL + pgvector."""

from __future__ import annotations

import subprocess
from pathlib import Path

import asyncpg
import numpy as np
import pytest

from pipeline.core.space import EmbeddingSpace
from pipeline.db import connect, open_database
from pipeline.db.default_view import set_default_space
from pipeline.db.schema import current_revision, downgrade, head_revision, upgrade
from pipeline.db.spaces import register_space
from pipeline.loading.indexing import create_hnsw_index

ROOT = Path(__file__).resolve().parents[1]
CLIP = EmbeddingSpace("clip", "ViT-B-32", "none", 512)
VERTEX_128 = EmbeddingSpace("vertex", "multimodalembedding@001", "v1", 128)

RELATIONS = """
    SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v') ORDER BY 1
"""


async def test_upgrade_downgrade_upgrade(fresh_url):
    await upgrade(fresh_url)
    conn = await connect(fresh_url)
    try:
        assert await current_revision(conn) == head_revision()
        tables = [r[0] for r in await conn.fetch(RELATIONS)]
        assert {
            "objects",
            "embedding_spaces",
            "embeddings",
            "runs",
            "failures",
            "image_embeddings",
        } <= set(tables)
        assert (
            await conn.fetchval("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
            >= "0.8"
        )

        await downgrade(fresh_url, "base")
        assert await current_revision(conn) is None
        assert [r[0] for r in await conn.fetch(RELATIONS)] == ["alembic_version"]

        await upgrade(fresh_url)
        assert [r[0] for r in await conn.fetch(RELATIONS)] == tables
    finally:
        await conn.close()


async def test_every_table_view_and_column_has_a_comment(fresh_settings):
    async with open_database(fresh_settings) as conn:
        # Partitions are created at run time: they must be commented too.
        await register_space(conn, CLIP)
        missing = await conn.fetch(
            """
            SELECT c.relname, NULL AS attname FROM pg_class c
            JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v')
              AND obj_description(c.oid, 'pg_class') IS NULL
            UNION ALL
            SELECT c.relname, a.attname FROM pg_class c
            JOIN pg_namespace n ON n.oid = c.relnamespace
            JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
            WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v')
              AND col_description(c.oid, a.attnum) IS NULL
            """
        )
        assert [tuple(r) for r in missing] == []
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM pg_class WHERE relname = 'embeddings_space_1'"
            )
            == 1
        )


async def _load_space(conn, space_id: int, object_ids: list[int], vectors: np.ndarray) -> None:
    # Binary COPY with pgvector's codec: the load stage's path.
    await conn.copy_records_to_table(
        "embeddings",
        records=[(space_id, oid, vec) for oid, vec in zip(object_ids, vectors, strict=False)],
        columns=["space_id", "object_id", "embedding"],
    )
    await conn.execute("ANALYZE")  # as the load stage does: the planner needs row counts


async def _insert_objects(conn, n: int) -> list[int]:
    """n objects of the source gs://photos/2026/ (the default source), as a listing records them."""
    await conn.execute(
        "INSERT INTO sources (root, kind, spec) VALUES ('gs://photos/2026/', 'gs', 'gs://photos/2026/') "
        "ON CONFLICT DO NOTHING"
    )
    await conn.execute("SELECT set_default_source('gs://photos/2026/')")
    rows = await conn.fetch(
        """
        INSERT INTO objects (locator, scheme, bucket, key, name)
        SELECT 'gs://photos/2026/' || name, 'gs', 'photos', '2026/' || name, name
        FROM (SELECT format('IMG%s.jpg', lpad(i::text, 5, '0')) AS name FROM generate_series(1, $1) i) s
        RETURNING object_id
        """,
        n,
    )
    return [r["object_id"] for r in rows]


def _unit(rng, n, d):
    v = rng.standard_normal((n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


async def test_two_spaces_side_by_side_each_uses_its_hnsw_index(fresh_settings):
    rng = np.random.default_rng(7)
    async with open_database(fresh_settings) as conn:
        ids = await _insert_objects(conn, 5000)
        clip_id = await register_space(conn, CLIP)
        vertex_id = await register_space(conn, VERTEX_128)
        assert await register_space(conn, CLIP) == clip_id  # idempotent
        clip_vectors, vertex_vectors = _unit(rng, len(ids), 512), _unit(rng, len(ids), 128)
        await _load_space(conn, clip_id, ids, clip_vectors)
        await _load_space(conn, vertex_id, ids, vertex_vectors)
        for space_id in (clip_id, vertex_id):
            await create_hnsw_index(conn, space_id)

        for space_id, dim, vectors in (
            (clip_id, 512, clip_vectors),
            (vertex_id, 128, vertex_vectors),
        ):
            query = f"""
                SELECT object_id FROM embeddings WHERE space_id = {space_id}
                ORDER BY embedding::vector({dim}) <-> $1 LIMIT 5
            """
            plan = "\n".join(r[0] for r in await conn.fetch(f"EXPLAIN {query}", vectors[3]))
            assert f"embeddings_space_{space_id}_hnsw_l2" in plan, plan
            got = [r[0] for r in await conn.fetch(query, vectors[3])]
            assert got[0] == ids[3]
            assert len(got) == 5

        # A third space of another dimension, and a new default: no vector of the others moves.
        other = await register_space(
            conn, EmbeddingSpace("vertex", "multimodalembedding@001", "v1", 1408)
        )
        await set_default_space(conn, other)
        counts = dict(await conn.fetch("SELECT space_id, count(*) FROM embeddings GROUP BY 1"))
        assert counts == {clip_id: len(ids), vertex_id: len(ids)}
        assert await create_hnsw_index(conn, other) == f"embeddings_space_{other}_hnsw_l2"
        too_wide = await register_space(conn, EmbeddingSpace("clip", "big", "none", 3072))
        with pytest.raises(ValueError, match="HNSW indexes at most 2000"):
            await create_hnsw_index(conn, too_wide)

        # Vectors that fit a page are stored inline: the 512-d rows put nothing in the TOAST table.
        storage = dict(
            await conn.fetch(
                "SELECT attrelid::regclass::text, attstorage::text FROM pg_attribute "
                "WHERE attname = 'embedding' AND attrelid::regclass::text ~ '^embeddings_space_[0-9]+$'"
            )
        )
        assert storage == {
            f"embeddings_space_{clip_id}": "p",
            f"embeddings_space_{vertex_id}": "p",
            f"embeddings_space_{other}": "p",
            f"embeddings_space_{too_wide}": "e",
        }
        toast = await conn.fetchval(
            "SELECT pg_relation_size(reltoastrelid) FROM pg_class WHERE relname = $1",
            f"embeddings_space_{clip_id}",
        )
        assert toast == 0


CLASSIC_QUERY = """
SELECT image_id, embedding <-> (SELECT embedding FROM image_embeddings WHERE image_id = $1) AS distance
FROM image_embeddings WHERE image_id != $1 ORDER BY distance LIMIT 5
"""


def _clustered(rng, clusters: int, per_cluster: int, d: int) -> np.ndarray:
    """Images come in groups of near-duplicates (bursts, crops): each group's members are each
    other's nearest neighbours, well apart from the rest, as in real photo collections."""
    centres = _unit(rng, clusters, d)
    v = np.repeat(centres, per_cluster, axis=0) + 0.05 * rng.standard_normal(
        (clusters * per_cluster, d)
    )
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


async def test_compatibility_view_answers_the_classic_query_with_the_index(fresh_settings):
    rng = np.random.default_rng(11)
    async with open_database(fresh_settings) as conn:
        vectors = _clustered(rng, clusters=625, per_cluster=8, d=512)
        ids = await _insert_objects(conn, len(vectors))
        space = await register_space(conn, CLIP)  # first space: becomes the default
        await _load_space(conn, space, ids, vectors)
        await create_hnsw_index(conn, space)

        plan = "\n".join(r[0] for r in await conn.fetch(f"EXPLAIN {CLASSIC_QUERY}", "IMG00042.jpg"))
        assert f"Index Scan using embeddings_space_{space}_hnsw_l2" in plan, plan

        rows = await conn.fetch(CLASSIC_QUERY, "IMG00042.jpg")
        distances = np.linalg.norm(vectors - vectors[41], axis=1)
        expected = [f"IMG{i + 1:05d}.jpg" for i in np.argsort(distances)[1:6]]
        assert [r["image_id"] for r in rows] == expected
        assert [r["distance"] for r in rows] == pytest.approx(sorted(distances)[1:6], rel=1e-5)

        # The same query as an analyst runs it from sql/, in the system psql.
        out = subprocess.run(
            [
                "psql",
                fresh_settings.database_url.get_secret_value(),
                "-X",
                "-tA",
                "-F",
                ",",
                "-v",
                "image=IMG00042.jpg",
                "-f",
                str(ROOT / "sql" / "similar_images.sql"),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        assert [line.split(",")[0] for line in out.stdout.split()] == expected

        # The view's vector is typed and prints in pgvector's text form.
        text = await conn.fetchval(
            "SELECT embedding::text FROM image_embeddings WHERE image_id = 'IMG00001.jpg'"
        )
        assert text.startswith("[") and text.count(",") == 511
        assert np.allclose(
            np.array(text.strip("[]").split(","), dtype=np.float32), vectors[0], atol=1e-6
        )

        # Deleted objects drop out of the view; their vectors stay.
        await conn.execute("UPDATE objects SET deleted_at = now() WHERE name = 'IMG00043.jpg'")
        names = [r["image_id"] for r in await conn.fetch(CLASSIC_QUERY, "IMG00042.jpg")]
        assert "IMG00043.jpg" not in names
        assert await conn.fetchval("SELECT count(*) FROM embeddings") == len(ids)


VIEW_SHAPE = """
    SELECT a.attname, col_description(a.attrelid, a.attnum) IS NOT NULL AS commented
    FROM pg_attribute a WHERE a.attrelid = 'image_embeddings'::regclass AND a.attnum > 0
    ORDER BY a.attnum
"""
SIMILAR_IMAGES = """
    SELECT p.oid::regprocedure::text AS signature, obj_description(p.oid, 'pg_proc') IS NOT NULL
    FROM pg_proc p WHERE p.proname = 'similar_images'
"""


async def test_0010_attributes_down_and_up_on_a_default_space(fresh_settings):
    """0010 adds objects.attributes, the view's column and similar_images' filter; its downgrade
    gives 0009's view (commented) and function back, on a database with a default space."""
    async with open_database(fresh_settings) as conn:
        await set_default_space(conn, await register_space(conn, CLIP))
        url = fresh_settings.database_url.get_secret_value()
        at_head = await conn.fetch(VIEW_SHAPE)
        assert [tuple(r) for r in at_head][-1] == ("attributes", True)
        assert [tuple(r) for r in await conn.fetch(SIMILAR_IMAGES)] == [
            ("similar_images(text,integer,integer,jsonb)", True)
        ]
        assert await conn.fetchval("SELECT attributes FROM objects LIMIT 0") is None

        await downgrade(url, "0009_plugins_exit_codes")
        assert [tuple(r) for r in await conn.fetch(VIEW_SHAPE)] == [
            ("image_id", True),
            ("content", True),
            ("embedding", True),
        ]
        assert [tuple(r) for r in await conn.fetch(SIMILAR_IMAGES)] == [
            ("similar_images(text,integer,integer)", True)
        ]
        assert "::vector(512)" in await conn.fetchval(
            "SELECT pg_get_viewdef('image_embeddings'::regclass)"
        )

        await upgrade(url)
        assert await conn.fetch(VIEW_SHAPE) == at_head


async def test_0011_runs_name_their_task_down_and_up(fresh_settings):
    """0011 adds runs.sharded_run and runs.shard (commented, I/N checked); its downgrade drops
    them and a row written before the upgrade reads NULL in both (an unsharded run)."""
    columns = (
        "SELECT attname, col_description(attrelid, attnum) IS NOT NULL FROM pg_attribute "
        "WHERE attrelid = 'runs'::regclass AND attname IN ('sharded_run', 'shard') ORDER BY 1"
    )
    async with open_database(fresh_settings) as conn:
        url = fresh_settings.database_url.get_secret_value()
        assert [tuple(r) for r in await conn.fetch(columns)] == [
            ("shard", True),
            ("sharded_run", True),
        ]
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute("INSERT INTO runs (stage, shard) VALUES ('embed', 'task 2')")

        await downgrade(url, "0010_attributes")
        assert await conn.fetch(columns) == []
        run_id = await conn.fetchval("INSERT INTO runs (stage) VALUES ('list') RETURNING run_id")

        await upgrade(url)
        assert len(await conn.fetch(columns)) == 2
        row = await conn.fetchrow("SELECT sharded_run, shard FROM runs WHERE run_id = $1", run_id)
        assert tuple(row) == (None, None)
