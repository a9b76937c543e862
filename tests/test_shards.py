"""Shards: parsing, the batch engines' variables, and a stable, balanced assignment."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from pipeline.core.shards import Shard, run_id_from_environment, shard_from_environment
from pipeline.db import connect
from tests.conftest import IMGVEC, create_database, drop_database, run_imgvec
from tests.shard_tasks import CLIP, finish, task


def test_parse() -> None:
    assert Shard.parse("0/4") == Shard(0, 4)
    assert Shard.parse(" 3/4 ") == Shard(3, 4)
    assert str(Shard(2, 8)) == "2/8"
    for wrong in ("4/4", "1", "a/2", "-1/2", "0/0", "1/2/3", ""):
        with pytest.raises(ValueError, match="shard"):
            Shard.parse(wrong)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"IMGVEC_SHARD": "1/3"}, Shard(1, 3)),
        ({"IMGVEC_SHARD": "2", "IMGVEC_SHARDS": "5"}, Shard(2, 5)),
        ({"CLOUD_RUN_TASK_INDEX": "2", "CLOUD_RUN_TASK_COUNT": "4"}, Shard(2, 4)),
        (
            {"IMGVEC_SHARD": "0/2", "CLOUD_RUN_TASK_INDEX": "2", "CLOUD_RUN_TASK_COUNT": "4"},
            Shard(0, 2),
        ),
        ({"JOB_COMPLETION_INDEX": "3", "IMGVEC_SHARDS": "4"}, Shard(3, 4)),
        ({"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_COUNT": "4"}, Shard(2, 4)),
        (
            {
                "SLURM_ARRAY_TASK_ID": "5",
                "SLURM_ARRAY_TASK_MIN": "1",
                "SLURM_ARRAY_TASK_COUNT": "8",
            },
            Shard(4, 8),
        ),
        (
            {
                "SLURM_ARRAY_TASK_ID": "6",
                "SLURM_ARRAY_TASK_MIN": "0",
                "SLURM_ARRAY_TASK_STEP": "2",
                "SLURM_ARRAY_TASK_COUNT": "4",
            },
            Shard(3, 4),
        ),
        ({"AWS_BATCH_JOB_ARRAY_INDEX": "1", "IMGVEC_SHARDS": "2"}, Shard(1, 2)),
    ],
)
def test_shard_from_environment(env: dict[str, str], expected: Shard | None) -> None:
    assert shard_from_environment(env) == expected


@pytest.mark.parametrize("variable", ["JOB_COMPLETION_INDEX", "AWS_BATCH_JOB_ARRAY_INDEX"])
def test_an_index_without_a_count_asks_for_it(variable: str) -> None:
    with pytest.raises(ValueError, match="IMGVEC_SHARDS"):
        shard_from_environment({variable: "0"})


def test_a_bad_variable_is_named() -> None:
    with pytest.raises(ValueError, match="CLOUD_RUN_TASK_COUNT"):
        shard_from_environment({"CLOUD_RUN_TASK_INDEX": "0", "CLOUD_RUN_TASK_COUNT": "x"})


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"CLOUD_RUN_EXECUTION": "job-abc12"}, "job-abc12"),
        ({"IMGVEC_RUN_ID": "nightly-7", "CLOUD_RUN_EXECUTION": "job-abc12"}, "nightly-7"),
        ({"SLURM_ARRAY_JOB_ID": "4242"}, "4242"),
        ({"AWS_BATCH_JOB_ID": "a1b2-c3:7"}, "a1b2-c3"),
    ],
)
def test_run_id_from_environment(env: dict[str, str], expected: str | None) -> None:
    assert run_id_from_environment(env) == expected


KEYS = [f"md5:{i:032x}" for i in range(4000)]


def test_every_key_has_exactly_one_owner_and_the_shards_are_balanced() -> None:
    for count in (1, 2, 3, 4, 8):
        owners = Counter(next(i for i in range(count) if Shard(i, count).owns(key)) for key in KEYS)
        assert sum(owners.values()) == len(KEYS)
        for key in KEYS[:200]:
            assert sum(Shard(i, count).owns(key) for i in range(count)) == 1
        assert min(owners.values()) > 0.85 * len(KEYS) / count, owners


def test_the_assignment_is_stable_across_processes() -> None:
    # A salted hash would differ from one process to the next: another interpreter must agree.
    script = (
        f"from pipeline.core.shards import shard_of\nprint([shard_of(k, 4) for k in {KEYS[:50]!r}])"
    )
    other = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    from pipeline.core.shards import shard_of

    assert other.stdout.strip() == str([shard_of(k, 4) for k in KEYS[:50]])


# -- N tasks of one run: real processes, a real PostgreSQL, open_clip with random weights ----------

IMAGES = 24  # distinct contents; two more files repeat bytes, so dedupe is exercised across shards


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    from tests.images import encode, photo, write_images

    folder = tmp_path_factory.mktemp("shard-images")
    files = {f"img{i:02d}.png": encode(photo(i), "PNG") for i in range(IMAGES)}
    files |= {"copy-of-img03.png": files["img03.png"], "copy-of-img17.png": files["img17.png"]}
    write_images(folder, files)
    return folder


@pytest.fixture(scope="module")
async def single_worker(images, server_url, tmp_path_factory) -> list[tuple[str, str]]:
    """The database state one unsharded `imgvec run` gives: what every sharded run must match."""
    name, url = await create_database(server_url, "single")
    try:
        work = tmp_path_factory.mktemp("single-work")
        run_imgvec("run", str(images), "--work-dir", str(work), *CLIP, env={"DATABASE_URL": url})
        return await database_state(url)
    finally:
        await drop_database(server_url, name)


async def database_state(url: str, indexed: bool = True) -> list[tuple[str, str]]:
    """(locator, vector as text) of every object, sorted; asserts the space's one HNSW index
    (or none, before the last shard is done)."""
    conn = await connect(url)
    try:
        rows = await conn.fetch(
            "SELECT o.locator, e.embedding::text FROM objects o "
            "LEFT JOIN embeddings e ON e.object_id = o.object_id ORDER BY 1, 2"
        )
        indexes = await conn.fetchval("SELECT count(*) FROM pg_indexes WHERE indexdef ~ 'hnsw'")
    finally:
        await conn.close()
    assert indexes == (1 if indexed else 0)
    return [(r[0], r[1]) for r in rows]


def embedded_rows(work: Path) -> int:
    """Vectors the parts hold: each content embedded once over all shards."""
    return sum(len(p.read_text().splitlines()) - 1 for p in work.glob("embeddings/*/*part-*.csv"))


@pytest.mark.parametrize("count", [2, 4])
async def test_n_concurrent_tasks_give_the_single_worker_result(
    count, images, single_worker, fresh_url, tmp_path
) -> None:
    work = tmp_path / "work"
    tasks = [task(images, work, fresh_url, f"{i}/{count}") for i in range(count)]
    outputs = [finish(t) for t in tasks]
    assert await database_state(fresh_url) == single_worker
    assert len(single_worker) == IMAGES + 2 and all(vector for _, vector in single_worker)
    assert embedded_rows(work) == IMAGES
    assert len(list(work.glob("manifests/*-nightly-1.csv"))) == 1  # task 0 alone listed
    assert sum("by task 0 of the run" in out for out in outputs) == count - 1
    # Each part is loaded once, by one task, and that task's summary says so (the last task's
    # too: it loads twice, its own and then the others' last parts before the index).
    loaded = [re.search(r"loaded: (\d+) parts loaded", out) for out in outputs]
    assert sum(int(m.group(1)) for m in loaded if m) == len(
        list(work.glob("embeddings/*/*part-*.csv"))
    )


async def test_a_late_task_0_and_a_killed_task_rerun_agree(
    images, single_worker, fresh_url, tmp_path
) -> None:
    work = tmp_path / "work"
    first = task(images, work, fresh_url, "1/2")  # waits for the listing task 0 has not begun
    time.sleep(3)
    assert first.poll() is None and not list(work.glob("manifests/*.csv"))
    late = task(images, work, fresh_url, "0/2")
    deadline = time.monotonic() + 240
    while not list(work.glob("embeddings/*/shard-1of2-part-*.csv")):
        assert first.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    first.kill()  # SIGKILL mid-run: no clean-up of any kind
    first.wait()
    finish(late)
    assert await database_state(fresh_url, indexed=False) != single_worker  # shard 1 unfinished
    finish(task(images, work, fresh_url, "1/2"))  # the engine reruns only that task
    assert await database_state(fresh_url) == single_worker
    assert embedded_rows(work) == IMAGES


async def test_separate_steps_embed_by_shard_then_load(
    images, single_worker, fresh_url, tmp_path
) -> None:
    work = tmp_path / "work"
    env = {"DATABASE_URL": fresh_url}
    run_imgvec("list", str(images), "--work-dir", str(work), env=env)
    embeds = [
        subprocess.Popen(
            [*IMGVEC, "embed", "--work-dir", str(work), *CLIP],
            env=dict(os.environ) | env | {"JOB_COMPLETION_INDEX": str(i), "IMGVEC_SHARDS": "2"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outputs = [finish(e) for e in embeds]
    assert all("left to other shards" in out for out in outputs)
    run_imgvec("load", "--work-dir", str(work), env=env)
    assert await database_state(fresh_url) == single_worker
    assert embedded_rows(work) == IMAGES


async def test_sigterm_stops_a_task_cleanly_and_its_rerun_resumes(
    images, single_worker, fresh_url, tmp_path
) -> None:
    work = tmp_path / "work"
    tasks = [task(images, work, fresh_url, f"{i}/2") for i in range(2)]
    deadline = time.monotonic() + 240
    while not list(work.glob("embeddings/*/shard-1of2-part-*.csv")):
        assert tasks[1].poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    tasks[1].send_signal(signal.SIGTERM)  # what the engines send some seconds before a kill
    _, err = tasks[1].communicate(timeout=120)
    assert tasks[1].returncode == 143, err
    assert "Traceback" not in err
    kept = embedded_rows(work)
    finish(tasks[0])
    finish(task(images, work, fresh_url, "1/2"))
    assert await database_state(fresh_url) == single_worker
    assert kept > 0 and embedded_rows(work) == IMAGES  # what the stopped task kept was not redone


def test_a_task_waits_for_task_0_within_bounds(images, fresh_url, tmp_path) -> None:
    env = {"DATABASE_URL": fresh_url}
    args = ["run", str(images), "--work-dir", str(tmp_path / "work"), *CLIP]
    waited = run_imgvec(
        *args, "--shard", "1/2", "--run-id", "r1", "--wait", "1", env=env, check=False
    )
    assert waited.returncode == 75, waited.stderr  # the engine retries the task
    assert "waited 1 s for run r1's listing by task 0" in waited.stderr
    assert "Traceback" not in waited.stderr


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--shard", "1/2"], {}, "needs the run's id"),
        (["--shard", "2/2", "--run-id", "r"], {}, "between 0 and 1"),
        ([], {"JOB_COMPLETION_INDEX": "1"}, "set IMGVEC_SHARDS"),
    ],
)
def test_a_wrong_shard_exits_2_saying_why(args, env, message, tmp_path) -> None:
    result = run_imgvec(
        "run", str(tmp_path), "--work-dir", str(tmp_path / "work"), *args, env=env, check=False
    )
    assert result.returncode == 2 and message in result.stderr, result.stderr


def test_each_task_takes_the_quota_in_proportion_to_its_share(tmp_path) -> None:
    """Paced at rate x own / total, every task ends together however unequal the hash shares."""
    from pipeline.checkpoints.manifest import ManifestWriter
    from pipeline.core.objects import ObjectInfo, content_key
    from pipeline.runner import quota_share
    from pipeline.workdir import WorkDir

    work = WorkDir(tmp_path)
    writer = ManifestWriter(work, "manifests/m.csv")
    objects = [
        ObjectInfo(f"file:///i/{i}.png", "file", None, f"/i/{i}.png", f"{i}.png",
                   content_hash=f"md5:{i:032x}")
        for i in range(200)
    ]  # fmt: skip
    writer.write([(o, "new", None) for o in objects] + [(objects[0], "deleted", None)])
    writer.publish()
    shards = [Shard(i, 3) for i in range(3)]
    owned = [sum(s.owns(content_key(o.locator, o.content_hash)) for o in objects) for s in shards]
    shares = [quota_share(work, "manifests/m.csv", s) for s in shards]
    assert shares == [pytest.approx(200 / n) for n in owned]  # the deleted row counts for none
    assert sum(1 / s for s in shares) == pytest.approx(1)  # together: the whole quota
