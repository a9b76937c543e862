"""pgvector versions: the gate at what the schema needs (0.5: the vector type and HNSW), iterative
scans (0.8) checked where they are used, the right hint for an extension older than the server's,
and `imgvec db status` reporting the state.

The embedded server ships pgvector 0.8's library only (and 0.8.2's install script), so an older
extension is made the way a database that was created on an older pgvector and never updated
looks from SQL: its pg_extension row says the older version."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from sqlalchemy.engine import make_url

from tests.conftest import run_imgvec
from tests.reliability.conftest import make_source, vertex_args

SQL = Path(__file__).resolve().parents[1] / "sql"


def psql(url: str, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        ["psql", url, "-X", "-tA", "-v", "ON_ERROR_STOP=1", *args], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return result


def installed_as(url: str, version: str) -> None:
    psql(url, "-c", f"UPDATE pg_extension SET extversion = '{version}' WHERE extname = 'vector'")


def pinned(url: str) -> str:
    return psql(
        url,
        "-c",
        "SELECT coalesce(array_to_string(proconfig, ','), '') FROM pg_proc "
        "WHERE oid = to_regprocedure('similar_images(text, integer, integer, jsonb)')",
    ).stdout.strip()


def test_an_extension_older_than_the_gate_is_told_to_update(fresh_url):
    env = {"DATABASE_URL": fresh_url}
    run_imgvec("db", "upgrade", env=env)
    installed_as(fresh_url, "0.4.0")
    database = make_url(fresh_url).database

    refused = run_imgvec("db", "upgrade", env=env, check=False)
    assert refused.returncode == 1, refused.stderr
    assert "pgvector 0.4.0 installed" in refused.stderr and "offers 0.8" in refused.stderr
    hint = refused.stderr.splitlines()[-1]
    assert f"psql -d {database} -c 'ALTER EXTENSION vector UPDATE;'" in hint, hint
    assert "install" not in hint, hint
    assert "unexpected" not in refused.stderr

    # db status reports it, and exits 0.
    status = run_imgvec("db", "status", env=env, check=False)
    assert status.returncode == 0, status.stderr
    assert "pgvector 0.4.0" in status.stdout
    assert "problem:" in status.stdout and "ALTER EXTENSION vector UPDATE" in status.stdout
    info = json.loads(run_imgvec("db", "status", "--json", env=env).stdout)
    assert info["pgvector_installed"] == "0.4.0" and info["pgvector_available"].startswith("0.8")
    assert info["problems"] and not info["iterative_scans"]


def test_pgvector_06_passes_the_gate_and_searches_without_iterative_scans(
    tmp_path, fresh_url, vertex
):
    env = {"DATABASE_URL": fresh_url}
    # A database migrated while its extension was 0.7: similar_images() is not pinned to
    # iterative scans (migration 0006 leaves 0.7 alone).
    psql(fresh_url, "-c", "CREATE EXTENSION vector")
    installed_as(fresh_url, "0.7.4")
    make_source(tmp_path / "images", 6)
    run = run_imgvec(
        "run", str(tmp_path / "images"), "--work-dir", str(tmp_path / "work"),
        *vertex_args(vertex), env=env, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert pinned(fresh_url) == ""

    # On 0.6 (older than the old gate, 0.7): every command works, status says what is missing.
    installed_as(fresh_url, "0.6.0")
    status = run_imgvec("db", "status", env=env, check=False)
    assert status.returncode == 0, status.stderr
    assert "pgvector 0.6.0" in status.stdout and "problem:" not in status.stdout
    assert "no iterative index scans" in status.stdout
    assert "ALTER EXTENSION vector UPDATE" in status.stdout
    assert run_imgvec("db", "upgrade", env=env).returncode == 0
    nearest = run_imgvec(
        "search", "--image", "img0003.png", "--k", "3", *vertex_args(vertex), env=env, check=False
    )
    assert nearest.returncode == 0, nearest.stderr
    assert "img0003.png" not in nearest.stdout and nearest.stdout.count(".png") >= 3
    assert pinned(fresh_url) == ""  # no pin on a pgvector without the setting

    # sql/filtered_search.sql: a note on stderr instead of the 0.8 setting, rows all the same.
    filtered = run_imgvec(
        "psql", "-v", "image=img0003.png", "-f", str(SQL / "filtered_search.sql"),
        env=env, check=False,
    )  # fmt: skip
    assert filtered.returncode == 0, filtered.stderr
    assert "older than 0.8" in filtered.stderr and "ALTER EXTENSION vector UPDATE" in (
        filtered.stderr
    )
    assert "SET" not in filtered.stdout.split()  # hnsw.iterative_scan left alone
    assert filtered.stdout.count(".png") == 5

    # ALTER EXTENSION vector UPDATE (to 0.8): the next command pins similar_images(), and
    # filtered_search.sql uses iterative scans.
    installed_as(fresh_url, "0.8.2")
    run_imgvec("db", "upgrade", env=env)
    assert pinned(fresh_url) == "hnsw.iterative_scan=strict_order"
    filtered = run_imgvec(
        "psql", "-v", "image=img0003.png", "-f", str(SQL / "filtered_search.sql"), env=env
    )
    assert "older than 0.8" not in filtered.stderr and "SET" in filtered.stdout.split()
    status = run_imgvec("db", "status", env=env)
    assert "note:" not in status.stdout and "problem:" not in status.stdout
