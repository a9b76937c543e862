"""Permission problems are a next step, not a bug report: a Debian-style role without privileges
(LOGIN and a password, nothing more) in a database someone else owns, on the embedded server.
Each refusal is one line that names the role and the database, and a hint whose command, run by
the one who may, lets the same imgvec command through."""

from __future__ import annotations

import re
import subprocess
import uuid
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.conftest import run_imgvec

PASSWORD = "Role-pa55word-never-shown"


def as_role(url: str, role: str) -> str:
    return make_url(url).set(username=role).render_as_string(hide_password=False)


def psql(url: str, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        ["psql", url, "-X", "-tA", "-v", "ON_ERROR_STOP=1", *args], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return result


def hinted_sql(stderr: str) -> str:
    """The SQL of the first `psql -d DB -c '…'` in the hint."""
    hint = next(line for line in stderr.splitlines() if line.startswith("imgvec: hint:"))
    found = re.search(r"-c '([^']+)'", hint)
    assert found, hint
    return found.group(1)


def clear_refusal(result: subprocess.CompletedProcess, *named: str) -> str:
    assert result.returncode == 1, (result.returncode, result.stderr)
    assert "unexpected" not in result.stderr and "report it" not in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and PASSWORD not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("imgvec: error:"), result.stderr
    for name in named:
        assert name in result.stderr, (name, result.stderr)
    return result.stderr


@pytest.fixture
def roles(server_url):
    made: list[str] = []

    def make(prefix: str, *options: str) -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:8]}"
        psql(
            server_url, "-c", f"CREATE ROLE {name} LOGIN PASSWORD '{PASSWORD}' {' '.join(options)}"
        )
        made.append(name)
        return name

    yield make
    for name in made:
        for database in psql(
            server_url, "-c", "SELECT datname FROM pg_database WHERE datallowconn"
        ).stdout.split():
            subprocess.run(
                [
                    "psql",
                    server_url.replace("/imgvec?", f"/{database}?"),
                    "-X",
                    "-q",
                    "-c",
                    f"DROP OWNED BY {name} CASCADE",
                ],
                capture_output=True,
            )
        subprocess.run(["psql", server_url, "-X", "-q", "-c", f"DROP ROLE IF EXISTS {name}"])


def test_a_role_without_privileges_is_told_each_next_step(fresh_url, roles):
    """Debian-style: the database belongs to the superuser, public's CREATE is not granted
    (PostgreSQL 15+), the role has LOGIN only. Each hint, run as its owner, is the fix."""
    database = make_url(fresh_url).database
    app = roles("app")
    env = {"DATABASE_URL": as_role(fresh_url, app)}
    psql(fresh_url, "-c", "REVOKE CREATE ON SCHEMA public FROM PUBLIC")

    # 1. No CREATE on schema public (Alembic's own table comes first).
    first = run_imgvec("db", "upgrade", env=env, check=False)
    stderr = clear_refusal(first, app, database, "schema public")
    fix = hinted_sql(stderr)
    assert fix == f"GRANT CREATE ON SCHEMA public TO {app};"
    psql(fresh_url, "-c", fix)

    # 2. No pgvector extension yet, and only a superuser may create it.
    second = run_imgvec("db", "upgrade", env=env, check=False)
    stderr = clear_refusal(second, app, database)
    assert "CREATE EXTENSION vector;" in stderr and "superuser" in stderr
    fix = hinted_sql(stderr)
    assert fix == "CREATE EXTENSION vector;"
    assert f"psql -d {database} -c" in stderr
    psql(fresh_url, "-c", fix)

    # 3. Now it goes through.
    third = run_imgvec("db", "upgrade", env=env, check=False)
    assert third.returncode == 0, third.stderr
    assert third.stdout.startswith("schema at 0")

    # 4. Another role, no SELECT on imgvec's tables (alembic_version first).
    other = roles("other")
    fourth = run_imgvec("db", "status", env={"DATABASE_URL": as_role(fresh_url, other)})
    assert "problem: the schema cannot be read" in fourth.stdout  # status reports, exit 0
    refused = run_imgvec(
        "search", "red", env={"DATABASE_URL": as_role(fresh_url, other)}, check=False
    )
    stderr = clear_refusal(refused, other, database, "alembic_version")
    assert f"have it run: imgvec db grant-reader {other}" in stderr
    run_imgvec("db", "grant-reader", other, env=env)  # as app, the tables' owner
    read = run_imgvec("db", "upgrade", env={"DATABASE_URL": as_role(fresh_url, other)})
    assert read.stdout.startswith("schema at 0"), read.stdout

    # 5. grant-reader by a role without CREATEROLE: an administrator creates the role, and
    # grant-reader (granting only) then goes through.
    reader = f"reader_{uuid.uuid4().hex[:8]}"
    fifth = run_imgvec("db", "grant-reader", reader, env=env, check=False)
    stderr = clear_refusal(fifth, app, database, "CREATEROLE")
    fix = hinted_sql(stderr)
    assert fix == f"CREATE ROLE {reader} LOGIN;"
    psql(fresh_url, "-c", fix)
    try:
        sixth = run_imgvec("db", "grant-reader", reader, env=env)
        assert sixth.stdout.startswith(f"role {reader}: read-only access"), sixth.stdout
        assert (
            psql(as_role(fresh_url, reader), "-c", "SELECT count(*) FROM runs").stdout.strip()
            == "0"
        )
    finally:
        subprocess.run(
            [
                "psql",
                fresh_url,
                "-X",
                "-q",
                "-c",
                f"DROP OWNED BY {reader}",
                "-c",
                f"DROP ROLE IF EXISTS {reader}",
            ],
            capture_output=True,
        )


@pytest.mark.parametrize(
    ("module", "extra"),
    [("PIL", "pip install 'imgvec[clip]'"), ("open_clip", "pip install 'imgvec[clip]'")],
)
def test_a_missing_extra_names_what_to_install(tmp_path, fresh_url, module, extra):
    """A plain install without Pillow or open_clip: which extra to install, not a bug report."""
    # As if not installed: an import fails, importlib.util.find_spec finds nothing.
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    (blocked / "sitecustomize.py").write_text(f"import sys\nsys.modules[{module!r}] = None\n")
    images = tmp_path / "images"
    images.mkdir()
    demo = Path(__file__).resolve().parents[1] / "demo-images"
    for path in sorted(demo.glob("*.png"))[:2]:
        (images / path.name).write_bytes(path.read_bytes())
    result = run_imgvec(
        "run",
        str(images),
        "--work-dir",
        str(tmp_path / "work"),
        "--backend",
        "clip",
        env={"DATABASE_URL": fresh_url, "PYTHONPATH": str(tmp_path / "blocked")},
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert "unexpected" not in result.stderr and "report it" not in result.stderr, result.stderr
    assert extra in result.stderr, result.stderr


def test_the_other_fix_a_schema_of_the_roles_own_works(fresh_url, roles):
    """The second way out of "permission denied for schema public": CREATE SCHEMA AUTHORIZATION,
    found first on the default search_path; imgvec's tables land there and grant-reader follows."""
    database = make_url(fresh_url).database
    app = roles("app")
    env = {"DATABASE_URL": as_role(fresh_url, app)}
    psql(
        fresh_url,
        "-c",
        "REVOKE CREATE ON SCHEMA public FROM PUBLIC",
        "-c",
        "CREATE EXTENSION vector",
    )
    refused = run_imgvec("db", "upgrade", env=env, check=False)
    stderr = clear_refusal(refused, app, database)
    assert f"psql -d {database} -c 'CREATE SCHEMA AUTHORIZATION {app};'" in stderr
    psql(fresh_url, "-c", f"CREATE SCHEMA AUTHORIZATION {app}")
    assert run_imgvec("db", "upgrade", env=env).returncode == 0
    assert (
        psql(
            fresh_url, "-c", "SELECT schemaname FROM pg_tables WHERE tablename = 'runs'"
        ).stdout.strip()
        == app
    )


# -- reads never write: search and the analysts' SQL under the read-only role ------------------

# What a read must leave as it was (a search once registered the space it was asked about).
WATCHED = ("embedding_spaces", "runs", "sources", "objects", "text_embeddings", "failures")


async def snapshot(conn) -> dict[str, list]:
    return {
        table: [tuple(r) for r in await conn.fetch(f"SELECT * FROM {table} ORDER BY 1")]
        for table in WATCHED
    } | {"embeddings": await conn.fetchval("SELECT count(*) FROM embeddings")}


async def test_search_and_the_analyst_functions_work_under_the_reader_role(
    tmp_path, fresh_url, imgvec_home, roles
):
    pytest.importorskip("open_clip")
    from pipeline.db import open_database
    from pipeline.listing import list_source
    from pipeline.loading import load_work_dir
    from pipeline.plugins import get_backend
    from pipeline.runner import embed_work_dir
    from pipeline.search import search
    from pipeline.settings import Settings
    from tests.images import encode, photo, write_images

    # As the owner: some images loaded, a text query saved (text_search.sql reads it).
    owner = Settings(home=imgvec_home, database_url=fresh_url)
    clip = get_backend("clip", pretrained="none", device="cpu")
    images = {f"img{i:02d}.png": encode(photo(i), "PNG") for i in range(8)}
    write_images(tmp_path / "images", images)
    work = str(tmp_path / "work")
    await list_source(str(tmp_path / "images"), work_dir=work, settings=owner)
    await embed_work_dir(work_dir=work, backend=clip, settings=owner)
    await load_work_dir(work_dir=work, settings=owner)
    run_imgvec("text-embed", "red car", "--pretrained", "none", env={"DATABASE_URL": fresh_url})
    async with open_database(owner) as conn:  # labels, for the filtered searches
        await conn.execute(
            "UPDATE objects SET attributes = jsonb_build_object('class', "
            "CASE WHEN name < 'img04.png' THEN 'cat' ELSE 'dog' END)"
        )
    reader = roles("analyst")
    run_imgvec("db", "grant-reader", reader, env={"DATABASE_URL": fresh_url})
    async with open_database(owner) as conn:
        before = await snapshot(conn)

    reader_url = as_role(fresh_url, reader)
    outside = tmp_path / "query.png"  # never listed: embedded on the spot
    outside.write_bytes(encode(photo(3), "PNG"))
    never_registered = get_backend("clip", pretrained="none", device="cpu", seed=7)
    async with open_database(Settings(home=imgvec_home, database_url=reader_url)) as conn:
        assert await conn.fetchval("SELECT current_user") == reader
        assert not await conn.fetchval("SELECT has_table_privilege('embedding_spaces', 'INSERT')")
        assert len(await search(conn, clip, text="red car", k=3)) == 3
        by_name = await search(conn, clip, images=["img03.png"], k=3)
        assert len(by_name) == 3 and "img03.png" not in [m.name for m in by_name]
        one_source = await search(conn, clip, text="red car", source=str(tmp_path / "images"))
        assert len(one_source) == len(images)
        by_file = await search(conn, clip, images=[str(outside)], k=1)
        assert by_file[0].name == "img03.png"
        empty = await search(conn, never_registered, text="red car")
        assert not empty and empty.why_empty.startswith(
            f"nothing loaded in space {never_registered.space.name}"
        )
        similar = await conn.fetch("SELECT * FROM similar_images('img05.png', 3)")
        assert len(similar) == 3 and all(0 <= r["score"] <= 1 for r in similar)
        cats = await search(conn, clip, text="red car", where=["class=cat", "size>0"])
        assert sorted(m.name for m in cats) == [f"img0{i}.png" for i in range(4)]
        similar_cats = await conn.fetch(
            "SELECT * FROM similar_images('img05.png', 10, filter => '{\"class\": \"cat\"}')"
        )
        assert sorted(r["image_id"] for r in similar_cats) == [f"img0{i}.png" for i in range(4)]
        assert await conn.fetchval("SELECT image_locator('img05.png')") == (
            f"file://{(tmp_path / 'images' / 'img05.png').resolve()}"
        )
        assert await conn.fetchval("SELECT image_vector('img05.png') IS NOT NULL")

    # The SQL files and `imgvec search`, as the analyst runs them.
    sql = Path(__file__).resolve().parents[1] / "sql"
    for file in sorted(sql.glob("*.sql")):
        psql(reader_url, "-v", "image=img05.png", "-v", "text=red car", "-f", str(file))
    env = {"DATABASE_URL": reader_url}
    by_text = run_imgvec("search", "red car", "--pretrained", "none", "--k", "2", env=env)
    assert len(by_text.stdout.splitlines()) == 2, by_text.stderr
    by_image = run_imgvec("search", "--image", "img03.png", "--pretrained", "none", env=env)
    assert len(by_image.stdout.splitlines()) == 7, by_image.stderr
    dogs = run_imgvec(
        "search", "--image", "img03.png", "--pretrained", "none", "--where", "class=dog", env=env
    )
    assert len(dogs.stdout.splitlines()) == 4, dogs.stderr
    elsewhere = run_imgvec("search", "red car", "--pretrained", "none", "--seed", "7", env=env)
    assert elsewhere.stdout == "" and "imgvec: nothing loaded in space" in elsewhere.stderr

    async with open_database(owner) as conn:
        assert await snapshot(conn) == before
