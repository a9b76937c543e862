"""docker-compose.yml and the Dockerfile, checked without a Docker daemon: rendered by the compose
binary when one is installed (Debian 12's docker-compose 1.29, or `docker compose` v2), read with
PyYAML always; and the credentials as the container passes them (PGPASSWORD beside a
DATABASE_URL without it) reaching imgvec's own connection code."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from pipeline.db.embedded import EmbeddedPostgres
from tests.conftest import _admin, run_imgvec

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
HOSTILE_PASSWORD = "p@ss:w/rd #$1 \"'%?&="


def compose_command() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
        if probe.returncode == 0:
            return ["docker", "compose"]
    return None


def _imgvec_service(doc: dict) -> dict:
    return doc["services"]["imgvec"]


def _check_points(doc: dict, password: str) -> None:
    imgvec = _imgvec_service(doc)
    # An image built once from the Dockerfile; nothing installed at run time.
    assert imgvec.get("build") not in (None, "") and "pip" not in str(imgvec.get("entrypoint"))
    assert "pip" not in str(imgvec.get("command"))
    # The work dir on the `work` volume.
    env = imgvec["environment"]
    assert env["IMGVEC_WORK_DIR"] == "/work"
    mounts = [str(v) for v in imgvec["volumes"]]
    assert any(m.startswith("work:/work") for m in mounts), mounts
    assert "work" in doc["volumes"]
    # The password travels as PGPASSWORD, the same as the server's, and never inside the URL.
    assert env["PGPASSWORD"] == password
    assert doc["services"]["db"]["environment"]["POSTGRES_PASSWORD"] == password
    url = urlsplit(env["DATABASE_URL"])
    assert url.username == doc["services"]["db"]["environment"]["POSTGRES_USER"]
    assert url.password is None and password not in env["DATABASE_URL"]


def test_compose_file_as_written():
    text = COMPOSE.read_text(encoding="utf-8")
    # Compose interpolates $NAME, ${NAME…}; a literal $ is $$. docker-compose 1.29 rejects any
    # other $ (e.g. "$@"), where v2 lets it through.
    body = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    bad = re.findall(
        r"\$(?!\$|\{[A-Za-z_][A-Za-z0-9_]*(?:[:?-][^}]*)?\}|[A-Za-z_])", body.replace("$$", "")
    )
    assert not bad, bad
    doc = yaml.safe_load(text)
    _check_points(doc, "${IMGVEC_DB_PASSWORD:-imgvec}")
    assert _imgvec_service(doc)["build"] == "."


def test_serve_service_needs_a_token_and_publishes_on_loopback_only():
    doc = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    serve = doc["services"]["imgvec-serve"]
    assert serve["image"] == _imgvec_service(doc)["image"]  # the image `imgvec` builds
    assert serve["command"][0] == "serve" and "0.0.0.0" in serve["command"]
    # Listening on every interface in the container: `imgvec serve` then requires a token.
    assert serve["environment"]["IMGVEC_API_TOKEN"] == "${IMGVEC_API_TOKEN:-}"
    assert (
        serve["environment"]["DATABASE_URL"] == _imgvec_service(doc)["environment"]["DATABASE_URL"]
    )
    assert all(str(port).startswith("127.0.0.1:") for port in serve["ports"])


def test_compose_config_renders_with_a_hostile_password(tmp_path):
    command = compose_command()
    if command is None:
        pytest.skip("no compose binary (apt-get install docker-compose)")
    env = dict(os.environ, IMGVEC_DB_PASSWORD=HOSTILE_PASSWORD, IMGVEC_IMAGES=str(tmp_path))
    result = subprocess.run(
        [*command, "-f", str(COMPOSE), "config"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    doc = yaml.safe_load(result.stdout)
    # `config` prints a file to reuse, so a literal $ is written escaped as $$.
    for service in doc["services"].values():
        for key, value in service.get("environment", {}).items():
            service["environment"][key] = str(value).replace("$$", "$")
    _check_points(doc, HOSTILE_PASSWORD)


def test_dockerfile_builds_cpu_torch_and_the_extras():
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert dockerfile.startswith("#") and "\nFROM python:3.12-slim\n" in dockerfile
    torch_line = next(
        line for line in dockerfile.splitlines() if " torch" in line and "pip" in line
    )
    assert "download.pytorch.org/whl/cpu" in torch_line
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    wanted = ",".join(sorted(set(extras) - {"dev"}))
    assert f"pip install '.[{wanted}]'" in dockerfile
    assert "ENV IMGVEC_WORK_DIR=/work" in dockerfile and 'ENTRYPOINT ["imgvec"]' in dockerfile
    # Everything the package build reads is in the build context.
    ignore = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    copied = {
        source
        for line in dockerfile.splitlines()
        if line.startswith("COPY ")
        for source in line.split()[1:-1]
    }
    for needed in ("pyproject.toml", "README.md", "pipeline/", "migrations/", "sql/"):
        assert f"!{needed}" in ignore
        assert needed.rstrip("/") in copied


def test_pgpassword_beside_a_url_without_one_reaches_imgvec_and_psycopg(tmp_path):
    """As in the container: DATABASE_URL names the user but no password; PGPASSWORD (any
    characters) is beside it. A server of the test's own that checks passwords (scram) for the
    role (a superuser, as POSTGRES_USER is): imgvec's connection (asyncpg), `imgvec psql` and psycopg
    log in, a wrong one is refused."""
    server = EmbeddedPostgres(tmp_path / "pgdata")
    status = server.start()
    try:
        admin_url = status.url("postgres")
        literal = HOSTILE_PASSWORD.replace("'", "''")
        asyncio.run(_admin(admin_url, f"CREATE ROLE {ROLE} LOGIN SUPERUSER PASSWORD '{literal}'"))
        hba = server.pgdata / "pg_hba.conf"
        hba.write_text(f"local all {ROLE} scram-sha-256\n" + hba.read_text())
        asyncio.run(_admin(admin_url, "SELECT pg_reload_conf()"))
        url = admin_url.replace("postgresql://postgres@/", f"postgresql://{ROLE}@/")
        env = dict(os.environ, DATABASE_URL=url, PGPASSWORD=HOSTILE_PASSWORD)

        def whoami(env: dict) -> subprocess.CompletedProcess:
            return subprocess.run(
                [sys.executable, "-c", WHOAMI], env=env, capture_output=True, text=True, timeout=60
            )

        result = whoami(env)
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == [ROLE, ROLE]
        refused = whoami(env | {"PGPASSWORD": "wrong"})
        assert refused.returncode != 0 and "password" in refused.stderr
        if shutil.which("psql"):
            out = run_imgvec("psql", "-tA", "-c", "SELECT current_user", env=env)
            assert out.stdout.strip() == ROLE
    finally:
        server.stop()


ROLE = "compose_user"
# imgvec's own connection code (asyncpg) and psycopg (the analysts' recipe) on DATABASE_URL.
WHOAMI = """
import asyncio, os
import psycopg
from pipeline.db.connection import connect, resolve_url
from pipeline.settings import Settings

async def main():
    conn = await connect(await resolve_url(Settings()), register_vector=False, timeout=3)
    print(await conn.fetchval("SELECT current_user"))
    await conn.close()

asyncio.run(main())
with psycopg.connect(os.environ["DATABASE_URL"]) as conn:
    print(conn.execute("SELECT current_user").fetchone()[0])
"""
