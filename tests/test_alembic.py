"""The `alembic` command as an operator runs it from the checkout, on a real embedded PostgreSQL:
upgrade with logging, `check`, `revision --autogenerate` and offline `upgrade head --sql`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.core.space import EmbeddingSpace
from pipeline.db import connect, open_database
from pipeline.db.default_view import set_default_space
from pipeline.db.schema import current_revision, head_revision, upgrade
from pipeline.db.spaces import register_space
from pipeline.loading.indexing import create_hnsw_index
from pipeline.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
ALEMBIC = [sys.executable, "-m", "alembic"]
CLIP = EmbeddingSpace("clip", "ViT-B-32", "none", 512)


def alembic(*args: str, url: str | None = None, config: Path | None = None):
    env = dict(os.environ)
    if url is not None:
        env["DATABASE_URL"] = url
    command = [*ALEMBIC, *(["-c", str(config)] if config else []), *args]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


async def _with_a_space(url: str, imgvec_home: Path) -> None:
    """A space with its partition embeddings_space_<id>, HNSW index and the default view."""
    async with open_database(Settings(home=imgvec_home, database_url=url)) as conn:
        space_id = await register_space(conn, CLIP)
        await create_hnsw_index(conn, space_id)
        await set_default_space(conn, space_id)


async def test_upgrade_logs_and_check_passes_on_a_fresh_database(fresh_url, imgvec_home):
    result = alembic("upgrade", "head", url=fresh_url)
    assert result.returncode == 0, result.stderr
    # alembic.ini's logging: an operator sees what ran.
    assert "Running upgrade  -> 0001_initial" in result.stderr
    assert f"-> {head_revision()}" in result.stderr

    result = alembic("check", url=fresh_url)
    assert result.returncode == 0, result.stderr
    assert "No new upgrade operations detected" in result.stdout + result.stderr

    # Spaces add partitions and HNSW indexes at run time: not differences.
    await _with_a_space(fresh_url, imgvec_home)
    result = alembic("check", url=fresh_url)
    assert result.returncode == 0, result.stderr


async def test_autogenerate_on_a_fresh_schema_writes_an_empty_migration(
    fresh_url, imgvec_home, tmp_path
):
    await upgrade(fresh_url)
    await _with_a_space(fresh_url, imgvec_home)
    # The real command, writing into a directory of its own rather than migrations/versions.
    versions = tmp_path / "versions"
    versions.mkdir()
    config = tmp_path / "alembic.ini"
    ini = (ROOT / "alembic.ini").read_text(encoding="utf-8")
    ini = ini.replace("%(here)s/migrations", str(ROOT / "migrations"))
    ini = ini.replace("prepend_sys_path = .", f"prepend_sys_path = {ROOT}")
    ini = ini.replace(
        "[alembic]\n",
        f"[alembic]\nversion_locations = {ROOT / 'migrations' / 'versions'} {versions}\n",
    )
    config.write_text(ini, encoding="utf-8")

    result = alembic(
        "revision",
        "--autogenerate",
        "-m",
        "probe",
        "--version-path",
        str(versions),
        url=fresh_url,
        config=config,
    )
    assert result.returncode == 0, result.stderr
    (written,) = versions.glob("*.py")
    script = written.read_text(encoding="utf-8")
    upgrade_body = script.split("def upgrade()")[1].split("def downgrade()")[0]
    assert "op." not in upgrade_body, upgrade_body
    assert "op." not in script.split("def downgrade()")[1]


async def test_offline_sql_runs_in_psql_to_the_same_schema(fresh_url, server_url, tmp_path):
    if shutil.which("psql") is None:
        pytest.skip("no psql")
    result = alembic("upgrade", "head", "--sql")
    assert result.returncode == 0, result.stderr
    sql = result.stdout
    assert "CREATE TABLE objects" in sql and sql.rstrip().endswith("COMMIT;")
    assert f"'{head_revision()}'" in sql
    # Steps that read the data online are decided by the server when the script runs.
    assert "DO $do$" in sql

    script = tmp_path / "upgrade.sql"
    script.write_text(sql, encoding="utf-8")
    applied = subprocess.run(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", fresh_url, "-f", str(script)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert applied.returncode == 0, applied.stderr
    conn = await connect(fresh_url)
    try:
        assert await current_revision(conn) == head_revision()
    finally:
        await conn.close()
    result = alembic("check", url=fresh_url)
    assert result.returncode == 0, result.stderr

    down = alembic("downgrade", f"{head_revision()}:base", "--sql")
    assert down.returncode == 0, down.stderr
    assert "DROP TABLE IF EXISTS objects" in down.stdout


SPACE_AT_0004 = [
    "INSERT INTO embedding_spaces (name, backend, model, weights, dimension, normalized, is_default)"
    " VALUES ('clip/ViT-B-32/none/512', 'clip', 'ViT-B-32', 'none', 512, true, true)",
    "CREATE TABLE embeddings_space_1 PARTITION OF embeddings FOR VALUES IN (1)",
    "INSERT INTO objects (locator, scheme, bucket, key, name)"
    " VALUES ('gs://p/IMG001.jpg', 'gs', 'p', 'IMG001.jpg', 'IMG001.jpg')",
    # The view as making the space the default left it then (pipeline.db.default_view).
    "DROP VIEW image_embeddings",
    "CREATE VIEW image_embeddings AS SELECT o.name AS image_id, o.locator AS content,"
    " e.embedding::vector(512) AS embedding FROM embeddings e"
    " JOIN objects o ON o.object_id = e.object_id WHERE e.space_id = 1 AND o.deleted_at IS NULL",
]
DATA_STEPS = {
    "storage": "SELECT attstorage::text FROM pg_attribute"
    " WHERE attrelid = 'embeddings_space_1'::regclass AND attname = 'embedding'",
    "view": "SELECT pg_get_viewdef('image_embeddings'::regclass)",
    "pin": "SELECT proconfig::text FROM pg_proc WHERE proname = 'similar_images'",
}


async def _at_0004_with_a_space(url: str) -> None:
    await upgrade(url, "0004_analyst_functions")
    conn = await connect(url, register_vector=False)
    try:
        for statement in SPACE_AT_0004:
            await conn.execute(statement)
    finally:
        await conn.close()


async def _data_steps(url: str) -> dict[str, str]:
    conn = await connect(url, register_vector=False)
    try:
        return {name: await conn.fetchval(query) for name, query in DATA_STEPS.items()}
    finally:
        await conn.close()


async def test_offline_sql_does_the_data_steps_as_the_online_upgrade(
    fresh_url, server_url, tmp_path
):
    """0005 and 0006 read the data online (which spaces, the default space, pgvector's version);
    offline their DO blocks decide on the server and leave the same result."""
    if shutil.which("psql") is None:
        pytest.skip("no psql")
    from tests.conftest import create_database, drop_database

    await _at_0004_with_a_space(fresh_url)
    await upgrade(fresh_url)
    online = await _data_steps(fresh_url)
    assert online["storage"] == "p" and "vector(512)" in online["view"]
    assert "iterative_scan" in online["pin"]

    name, offline_url = await create_database(server_url)
    try:
        await _at_0004_with_a_space(offline_url)
        result = alembic("upgrade", "0004_analyst_functions:head", "--sql")
        assert result.returncode == 0, result.stderr
        script = tmp_path / "upgrade.sql"
        script.write_text(result.stdout, encoding="utf-8")
        applied = subprocess.run(
            ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", offline_url, "-f", str(script)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert applied.returncode == 0, applied.stderr
        assert await _data_steps(offline_url) == online
    finally:
        await drop_database(server_url, name)
