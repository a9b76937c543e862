"""`imgvec db grant-reader`: an analysts' role that can run every sql/ query and write nothing."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.conftest import run_imgvec
from tests.reliability.conftest import make_source, vertex_args

SQL = Path(__file__).resolve().parents[2] / "sql"


def as_role(url: str, role: str) -> str:
    return make_url(url).set(username=role).render_as_string(hide_password=False)


def psql(url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["psql", url, "-X", "-tA", "-v", "ON_ERROR_STOP=1", *args], capture_output=True, text=True
    )


async def test_reader_runs_every_sql_file_and_cannot_write(tmp_path, new_database, vertex):
    url = await new_database()
    env = {"DATABASE_URL": url}
    make_source(tmp_path / "images", 12)
    (tmp_path / "images" / "broken.png").write_bytes(
        b"not an image"
    )  # so recent_failures has a row
    first = run_imgvec(
        "run",
        str(tmp_path / "images"),
        "--work-dir",
        str(tmp_path / "work"),
        *vertex_args(vertex),
        env=env,
        check=False,
    )
    assert first.returncode == 3, first.stderr
    run_imgvec("text-embed", "red car", *vertex_args(vertex), env=env)
    out = run_imgvec("db", "grant-reader", "analyst's team", env=env)  # a name that needs quoting
    assert "created role analyst's team" in out.stdout
    # Idempotent: the second call finds the role (and creates nothing), and grants the same again.
    again = run_imgvec("db", "grant-reader", "analyst's team", env=env).stdout
    assert again.startswith("role analyst's team: read-only access"), again

    reader = as_role(url, "analyst's team")
    variables = {
        "similar_images.sql": ["-v", "image=img0003.png"],
        "filtered_search.sql": ["-v", "image=img0003.png"],
        "near_duplicates.sql": ["-v", "max_distance=2"],
    }
    for file in sorted(SQL.glob("*.sql")):
        result = psql(reader, *variables.get(file.name, []), "-f", str(file))
        assert result.returncode == 0, (file.name, result.stderr)
        assert result.stdout.strip(), file.name  # each returns rows on this data
    assert (
        psql(reader, "-c", "SELECT count(*) FROM similar_images('img0003.png', 3)").stdout.strip()
        == "3"
    )

    for statement in (
        "INSERT INTO text_queries (text) VALUES ('blue boat')",
        "DELETE FROM objects",
        "UPDATE embeddings SET content_hash = NULL",
        "TRUNCATE runs",
        "CREATE TABLE mine (x int)",
        "DROP VIEW image_embeddings",
    ):
        result = psql(reader, "-c", statement)
        assert result.returncode != 0 and (
            "permission denied" in result.stderr or "must be owner" in result.stderr
        ), (statement, result.stderr)
    # A space registered later (a new partition) is readable too.
    other = [a if a != "128" else "256" for a in vertex_args(vertex)]
    run_imgvec(
        "run",
        str(tmp_path / "images"),
        "--work-dir",
        str(tmp_path / "work"),
        *other,
        env=env,
        check=False,
    )
    assert psql(reader, "-c", "SELECT count(*) FROM embeddings").stdout.strip() == "24"


@pytest.fixture(autouse=True)
def _no_leftover_role(server_url):
    yield
    subprocess.run(
        [
            "psql",
            server_url,
            "-X",
            "-q",
            "-c",
            'DROP OWNED BY "analyst\'s team" CASCADE',
            "-c",
            'DROP ROLE IF EXISTS "analyst\'s team"',
        ],
        capture_output=True,
    )
