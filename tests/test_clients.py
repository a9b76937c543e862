"""The README's analysts' recipe (pandas + SQLAlchemy + pgvector-python, and plain psycopg), run
as written in imgvec's own environment on the URL `imgvec db url --show-password` prints."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

from pipeline.core.space import EmbeddingSpace
from pipeline.db import open_database
from pipeline.db.spaces import register_space
from pipeline.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
SPACE = EmbeddingSpace("clip", "ViT-B-32", "none", 8)


def readme_recipe() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("**Analysts' clients", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


async def _images(settings: Settings) -> np.ndarray:
    """IMG001.jpg … IMG006.jpg in the default source and space; IMG00k is k steps from IMG001."""
    vectors = np.zeros((6, 8), dtype=np.float32)
    vectors[:, 0] = 1.0
    vectors[:, 1] = np.arange(6) * 0.1
    async with open_database(settings) as conn:
        await conn.execute(
            "INSERT INTO sources (root, kind, spec) VALUES ('gs://p/', 'gs', 'gs://p/')"
        )
        await conn.execute("SELECT set_default_source('gs://p/')")
        ids = [
            await conn.fetchval(
                "INSERT INTO objects (locator, scheme, bucket, key, name) "
                "VALUES ('gs://p/' || $1, 'gs', 'p', $1, $1) RETURNING object_id",
                f"IMG{i + 1:03d}.jpg",
            )
            for i in range(6)
        ]
        space = await register_space(conn, SPACE)  # the first space: the default
        await conn.copy_records_to_table(
            "embeddings",
            records=[(space, oid, v) for oid, v in zip(ids, vectors, strict=True)],
            columns=["space_id", "object_id", "embedding"],
        )
    return vectors


async def test_readme_recipe_runs_on_the_printed_url(fresh_settings, tmp_path):
    await _images(fresh_settings)
    url = fresh_settings.database_url.get_secret_value()
    assert url.startswith("postgresql://postgres@/") and "?host=/" in url  # the unix-socket form

    script = tmp_path / "recipe.py"
    script.write_text(readme_recipe(), encoding="utf-8")
    env = dict(os.environ, DATABASE_URL=url)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"  # imgvec's own install
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    # The five nearest, in order, with their distances (0.1 apart).
    table = [line.split() for line in lines if re.match(r"\d+\s+IMG", line)]
    assert [row[1] for row in table] == [f"IMG{k:03d}.jpg" for k in range(2, 7)]
    distances = [float(row[2]) for row in table]
    assert np.allclose(distances, [0.1 * k for k in range(1, 6)], atol=1e-5)
    # Vectors of the space's dimension, through SQLAlchemy and through psycopg alone.
    assert lines[-2:] == ["(6, 8)", "(8,)"]
