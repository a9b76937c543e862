"""SIGKILL `imgvec run` at random moments, rerun it, and check the invariant; restart PostgreSQL
in the middle of a load. `make test` runs a few trials, `make soak` fifty."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time

import asyncpg
import pytest

from tests.conftest import IMGVEC, run_imgvec
from tests.reliability.conftest import CRASH_TRIALS, make_source, vertex_args
from tests.reliability.invariant import check_invariant


async def _running_stage(url: str) -> str:
    conn = await asyncpg.connect(url)
    try:
        if not await conn.fetchval("SELECT to_regclass('runs') IS NOT NULL"):
            return "start-up"  # before the schema exists
        stage = await conn.fetchval(
            "SELECT stage FROM runs WHERE status = 'running' ORDER BY run_id DESC LIMIT 1"
        )
        return stage or "between stages"
    finally:
        await conn.close()


async def test_sigkill_at_random_moments_then_rerun(tmp_path, new_database, vertex):
    rng = random.Random(int(os.environ.get("IMGVEC_CRASH_SEED", "7")))
    source = tmp_path / "images"
    make_source(source, 120)
    # Calibrate: how long an uninterrupted run takes here.
    url = await new_database()
    work = tmp_path / "work-calibration"
    started = time.monotonic()
    run_imgvec(
        "run",
        str(source),
        "--work-dir",
        str(work),
        *vertex_args(vertex, "--part-size", "4"),
        env={"DATABASE_URL": url},
    )
    duration = time.monotonic() - started
    await check_invariant(url, work)

    killed_in: dict[str, int] = {}
    for trial in range(CRASH_TRIALS):
        url = await new_database()
        work = tmp_path / f"work-{trial}"
        env = dict(os.environ) | {"DATABASE_URL": url}
        args = [
            *IMGVEC,
            "run",
            str(source),
            "--work-dir",
            str(work),
            *vertex_args(vertex, "--part-size", "4"),
        ]
        # Several kills per trial, each at a random moment of a run, then one run to the end.
        for _ in range(rng.randint(1, 3)):
            proc = subprocess.Popen(
                args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            # Aim at a stage (or at any moment), then strike a little later within it.
            target = rng.choice(["list", "embed", "load", "any"])
            deadline = time.monotonic() + (
                rng.uniform(0.3, duration) if target == "any" else 2 * duration
            )
            while time.monotonic() < deadline and proc.poll() is None:
                if target != "any" and await _running_stage(url) == target:
                    await asyncio.sleep(rng.uniform(0, 0.15))
                    break
                await asyncio.sleep(0.01)
            if proc.poll() is None:
                stage = await _running_stage(url)
                proc.send_signal(signal.SIGKILL)
                killed_in[stage] = killed_in.get(stage, 0) + 1
            proc.wait()
        final = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
        assert final.returncode == 0, final.stderr
        outcome = await check_invariant(url, work)
        assert outcome == {"embedded": 120}, (trial, outcome)
        # A second rerun computes nothing.
        again = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
        assert "0 embedded" in again.stdout and again.returncode == 0, again.stdout
    print(
        f"\n{CRASH_TRIALS} trials, calibration run {duration:.1f} s; SIGKILLs by stage running: {killed_in}",
        file=sys.stderr,
    )


async def test_postgres_restarted_in_the_middle_of_a_load(
    tmp_path, new_database, vertex, imgvec_home
):
    url = await new_database()
    env = dict(os.environ) | {"DATABASE_URL": url}
    source, work = tmp_path / "images", tmp_path / "work"
    make_source(source, 40)
    run_imgvec("list", str(source), "--work-dir", str(work), env=env)
    run_imgvec("embed", "--work-dir", str(work), *vertex_args(vertex, "--part-size", "2"), env=env)

    # Hold the load inside its first transaction (it waits to record its parts), then restart
    # the server under it.
    blocker = await asyncpg.connect(url)
    await blocker.execute("BEGIN; LOCK TABLE loaded_parts IN EXCLUSIVE MODE")
    proc = subprocess.Popen(
        [*IMGVEC, "load", "--work-dir", str(work)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not await blocker.fetchval(
        "SELECT count(*) FROM pg_locks WHERE relation = 'loaded_parts'::regclass AND NOT granted"
    ):
        assert time.monotonic() < deadline and proc.poll() is None
        await asyncio.sleep(0.05)
    home_env = {"IMGVEC_HOME": str(imgvec_home)}
    run_imgvec("db", "stop", env=home_env)
    run_imgvec("db", "start", env=home_env)
    out, err = proc.communicate(timeout=120)
    # It failed cleanly — one line and a hint, no traceback — or rode out the restart.
    if proc.returncode != 0:
        assert "Traceback" not in err and err.startswith("imgvec: error:"), err
    rerun = run_imgvec("load", "--work-dir", str(work), env=env)
    assert rerun.returncode == 0
    assert await check_invariant(url, work) == {"embedded": 40}


@pytest.fixture(autouse=True)
def _server_running(imgvec_home):
    yield
    # Whatever a scenario did to it, the session's server is up for the next test.
    run_imgvec("db", "start", env={"IMGVEC_HOME": str(imgvec_home)})
