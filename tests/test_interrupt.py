"""Ctrl-C and SIGTERM during an embed: stop at once, keep what is finished, record the run as
interrupted with its counts, exit 130 / 143; a second signal exits on the spot; the rerun resumes.
Real processes, real signals, a real open_clip model (random weights) and a real PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from pipeline.db import connect
from tests.conftest import IMGVEC, run_imgvec
from tests.images import encode, photo, write_images

pytest.importorskip("open_clip")

IMAGES = 160


@pytest.fixture
def listed(tmp_path, fresh_url) -> tuple[Path, dict]:
    folder = tmp_path / "images"
    write_images(folder, {f"img{i:03d}.png": encode(photo(i), "PNG") for i in range(IMAGES)})
    work = tmp_path / "work"
    env = dict(os.environ) | {"DATABASE_URL": fresh_url, "IMGVEC_PROGRESS_SECONDS": "0"}
    run_imgvec("list", str(folder), "--work-dir", str(work), env=env)
    return work, env


def embed_args(work: Path) -> list[str]:
    return [*IMGVEC, "embed", "--work-dir", str(work), "--pretrained", "none"]


def start_embed(work: Path, env: dict) -> subprocess.Popen:
    args = [*embed_args(work), "--part-size", "8", "--batch-size", "8"]
    return subprocess.Popen(
        args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def wait_for_parts(proc: subprocess.Popen, work: Path, count: int) -> None:
    deadline = time.monotonic() + 180
    while len(list(work.glob("embeddings/*/part-*.csv"))) < count:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.02)


async def last_run(url: str) -> dict:
    conn = await connect(url)
    try:
        row = await conn.fetchrow(
            "SELECT status, counts, error FROM runs WHERE stage = 'embed' ORDER BY run_id DESC"
        )
    finally:
        await conn.close()
    return {"status": row["status"], "counts": json.loads(row["counts"]), "error": row["error"]}


@pytest.mark.parametrize(("signum", "exit_code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
async def test_first_signal_stops_at_once_keeps_parts_and_the_rerun_resumes(
    listed, fresh_url, signum, exit_code
):
    work, env = listed
    proc = start_embed(work, env)
    wait_for_parts(proc, work, 2)
    sent = time.monotonic()
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)
    took = time.monotonic() - sent
    assert proc.returncode == exit_code, err
    # The issue asks for 2 s; the bound here leaves room for a loaded CI machine. (Measured
    # here: 0.3 s; bench/README.md.) Before the fix the run went on to embed all 160 images.
    assert took < 5, f"took {took:.1f} s to stop"
    assert "Traceback" not in err and "rerun the same command" in err

    parts = sorted(work.glob("embeddings/*/part-*.csv"))
    embedded = sum(len(p.read_text().splitlines()) - 1 for p in parts)
    assert 0 < embedded < IMAGES  # stopped early, kept what was done
    run = await last_run(fresh_url)
    assert run["status"] == "interrupted", run
    assert run["counts"]["embedded"] == embedded
    assert signal.Signals(signum).name in run["error"]

    before = {p.name: p.read_bytes() for p in parts}
    rerun = subprocess.run(embed_args(work), env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{IMAGES - embedded} embedded" in rerun.stdout  # resumed, nothing recomputed
    assert f"{embedded} already embedded" in rerun.stdout
    assert all((parts[0].parent / name).read_bytes() == data for name, data in before.items())


def test_a_second_signal_exits_on_the_spot(listed):
    work, env = listed
    proc = start_embed(work, env)
    # During the model load, which cannot be cut short: the first signal waits for it to end.
    line = ""
    while "loading CLIP" not in line:
        line = proc.stderr.readline()
        assert line or proc.poll() is None
    proc.send_signal(signal.SIGINT)
    time.sleep(0.2)
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=30)
    assert proc.returncode == 130
    assert time.monotonic() - sent < 2
    assert not list(work.glob("embeddings/*/part-*.csv"))


def test_a_forced_embed_stopped_says_to_resume_without_force(listed):
    """`embed --force` recomputes every image: its rerun, "the same command", would start over."""
    work, env = listed
    args = [*embed_args(work), "--force", "--part-size", "8", "--batch-size", "8"]
    proc = subprocess.Popen(
        args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    wait_for_parts(proc, work, 1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (proc.returncode, err[-3000:])
    assert "hint: rerun without --force to resume" in err and "the same command" not in err
