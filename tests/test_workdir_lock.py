"""One embed run per work dir and space: a second run exits clearly (exit 75, naming the holder),
a lock left by a killed run is taken over, and bytes embedded through another work dir are not
embedded again. Real processes, a real PostgreSQL, open_clip with random weights."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from pipeline.db import connect
from tests.conftest import IMGVEC, run_imgvec
from tests.images import encode, photo, write_images

pytest.importorskip("open_clip")

IMAGES = 120


def test_a_second_run_on_the_same_work_dir_exits_naming_the_holder(tmp_path, fresh_url):
    # The first run must still be embedding after the two refused commands have started and
    # exited (64 images were all done first in a clean-clone CI run): eager torch, one image a
    # batch, ~8 images/s on this machine's 2 cores.
    folder = tmp_path / "images"
    write_images(folder, {f"img{i:03d}.png": encode(photo(i), "PNG") for i in range(IMAGES)})
    work = tmp_path / "work"
    env = dict(os.environ) | {"DATABASE_URL": fresh_url}
    run_imgvec("list", str(folder), "--work-dir", str(work), env=env)
    args = [*IMGVEC, "embed", "--work-dir", str(work), "--pretrained", "none", "--part-size", "4"]
    args += ["--runtime", "torch", "--batch-size", "1"]
    first = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while not list(work.glob("embeddings/*/part-*.csv")):
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        second = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
        assert second.returncode == 75, second.stderr
        assert f"pid {first.pid}" in second.stderr and "is being embedded" in second.stderr
        assert "Traceback" not in second.stderr
        manifests = sorted(work.glob("manifests/*.csv"))
        run = subprocess.run(
            [*IMGVEC, "run", str(folder), "--work-dir", str(work), "--pretrained", "none"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 75 and f"pid {first.pid}" in run.stderr, run.stderr
        assert sorted(work.glob("manifests/*.csv")) == manifests  # refused before it listed
        first.send_signal(signal.SIGKILL)  # dies holding the lock
        first.wait()
    finally:
        if first.poll() is None:
            first.kill()
    # The lock died with its holder: the next run takes over and finishes the work.
    third = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert third.returncode == 0, third.stderr
    rows = sum(len(p.read_text().splitlines()) - 1 for p in work.glob("embeddings/*/part-*.csv"))
    assert rows == IMAGES
    # The killed run does not show `running` for ever: the next run closed it.
    runs = run_imgvec(
        "psql", "-A", "-t", "-F", "|", "-c",
        "SELECT status, error FROM runs WHERE stage = 'embed' ORDER BY run_id", env=env,
    ).stdout.splitlines()  # fmt: skip
    assert runs[0].startswith("interrupted|its process ended without closing the run"), runs
    assert all(not line.startswith("running") for line in runs), runs


async def test_bytes_loaded_through_another_work_dir_are_not_embedded_again(tmp_path, fresh_url):
    images = {f"img{i:02d}.png": encode(photo(i), "PNG") for i in range(12)}
    write_images(tmp_path / "a", images)
    write_images(tmp_path / "b", images | {"new.png": encode(photo(99), "PNG")})
    env = {"DATABASE_URL": fresh_url}
    common = ["--pretrained", "none"]
    run_imgvec("run", str(tmp_path / "a"), "--work-dir", str(tmp_path / "wa"), *common, env=env)
    again = run_imgvec(
        "run", str(tmp_path / "b"), "--work-dir", str(tmp_path / "wb"), *common, env=env
    )
    # Before: "13 embedded" — the README promised once per space, whatever the work dir.
    assert "1 embedded" in again.stdout and "12 already in the database" in again.stdout
    conn = await connect(fresh_url)
    try:
        missing = await conn.fetchval(
            "SELECT count(*) FROM objects o WHERE NOT EXISTS "
            "(SELECT 1 FROM embeddings e WHERE e.object_id = o.object_id)"
        )
        pairs = await conn.fetchval(
            "SELECT count(*) FROM objects a JOIN objects b ON a.content_hash = b.content_hash "
            "AND a.object_id < b.object_id "
            "JOIN embeddings ea ON ea.object_id = a.object_id "
            "JOIN embeddings eb ON eb.object_id = b.object_id "
            "WHERE ea.embedding = eb.embedding"
        )
    finally:
        await conn.close()
    assert missing == 0  # every object of b has its vector, reused from a's
    assert pairs == 12
