"""Small wrong or empty inputs a new user tries: each is a clear message, never "report it"."""

from __future__ import annotations

import pytest

from pipeline.core.space import EmbeddingSpace
from pipeline.db import connect, open_database
from pipeline.db.spaces import register_space
from pipeline.errors import EXIT_FAILED, EXIT_USAGE
from tests.conftest import run_imgvec


async def test_index_flags_out_of_pgvector_bounds_are_usage_errors(fresh_settings, fresh_url):
    async with open_database(fresh_settings) as conn:  # one space to index, as after a load
        await register_space(conn, EmbeddingSpace("clip", "ViT-B-32", "none", 8))
    env = {"DATABASE_URL": fresh_url}

    def refused(*flags: str) -> list[str]:
        result = run_imgvec("index", "--rebuild", *flags, env=env, check=False)
        assert result.returncode == EXIT_USAGE, result.stderr
        assert "unexpected" not in result.stderr and "report it" not in result.stderr
        return result.stderr.strip().splitlines()

    assert refused("--m", "1")[0] == (
        "imgvec: error: --m 1 is out of range: pgvector's HNSW takes 2 to 100"
    )
    assert "--m 101 is out of range" in refused("--m", "101")[0]
    assert refused("--ef-construction", "2000")[0] == (
        "imgvec: error: --ef-construction 2000 is out of range: pgvector's HNSW takes 4 to 1000"
    )
    assert refused("--m", "48", "--ef-construction", "64") == [
        "imgvec: error: --ef-construction 64 is less than 2 x --m 48: pgvector's HNSW needs "
        "ef_construction >= 2 * m",
        "imgvec: hint: raise --ef-construction to 96 or more, or lower --m",
    ]
    assert refused("--opclass", "vector_cosin_ops") == [
        "imgvec: error: unknown --opclass 'vector_cosin_ops'; did you mean vector_cosine_ops?",
        "imgvec: hint: imgvec builds HNSW indexes with vector_l2_ops (for <->), "
        "vector_cosine_ops (<=>) or vector_ip_ops (<#>)",
    ]
    assert "--maintenance-work-mem '1 TB'" in refused("--maintenance-work-mem", "1 TB")[0]
    # Nothing was dropped by the refused rebuilds; a valid one still builds.
    built = run_imgvec("index", "--rebuild", "--opclass", "vector_cosine_ops", env=env)
    assert built.stdout.strip() == "clip/ViT-B-32/none/8: embeddings_space_1_hnsw_cosine"


@pytest.mark.parametrize("below", ["", "sub"])
def test_imgvec_home_on_a_file_is_a_config_error_naming_it(tmp_path, below):
    home_file = tmp_path / "not-a-folder"
    home_file.write_text("")
    home = home_file / below if below else home_file
    env = {"IMGVEC_HOME": str(home)}  # (and no DATABASE_URL: see conftest)
    for args in (["search", "red", "--pretrained", "none"], ["db", "status"], ["db", "start"]):
        result = run_imgvec(*args, env=env, check=False)
        assert result.returncode == EXIT_FAILED, result.stderr  # a ConfigError's exit code
        assert result.stdout == ""  # (db status said "stopped ... `imgvec db start` starts it")
        assert result.stderr.strip().splitlines() == [
            f"imgvec: error: IMGVEC_HOME is {home}, where the embedded PostgreSQL cannot keep "
            f"its data: {home_file} is not a folder",
            "imgvec: hint: point IMGVEC_HOME at a folder imgvec can write, or set DATABASE_URL "
            "to use a PostgreSQL server of your own",
        ], args


async def test_text_embed_with_nothing_queued_registers_no_space(fresh_settings, fresh_url):
    env = {"DATABASE_URL": fresh_url}

    async def spaces() -> list[str]:
        conn = await connect(fresh_url)
        try:
            return [r[0] for r in await conn.fetch("SELECT name FROM embedding_spaces")]
        finally:
            await conn.close()

    nothing = run_imgvec("text-embed", "--pretrained", "none", env=env)
    assert await spaces() == []  # the gallery's /api/spaces lists no empty space
    space = "clip/ViT-B-32/none-seed0/512"
    assert nothing.stdout.strip() == f"nothing to embed: no texts are queued for space {space}"
    saved = run_imgvec("text-embed", "red car", "--pretrained", "none", env=env)
    assert saved.stdout.strip() == f"embedded 1 text(s) in space {space}"
    again = run_imgvec("text-embed", "red car", "--pretrained", "none", env=env)
    assert again.stdout.strip() == (
        f"nothing to embed: the text(s) given were already embedded in space {space}"
    )
    async with open_database(fresh_settings) as conn:  # queued from SQL, embedded by the next
        await conn.execute("INSERT INTO text_queries (text) VALUES ('blue sky')")
    queued = run_imgvec("text-embed", "--pretrained", "none", env=env)
    assert queued.stdout.strip() == f"embedded 1 text(s) in space {space}"
    assert await spaces() == [space]
