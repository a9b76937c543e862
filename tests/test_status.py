"""`imgvec status`: per-shard progress of a sharded run, from real `imgvec run --shard` processes
(a real PostgreSQL, open_clip with random weights)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import run_imgvec
from tests.shard_tasks import finish, task

IMAGES = 8  # distinct contents; one more file repeats bytes (one content, two objects)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    from tests.images import encode, photo, write_images

    folder = tmp_path_factory.mktemp("status-images")
    files = {f"img{i:02d}.png": encode(photo(i), "PNG") for i in range(IMAGES)}
    files["copy-of-img03.png"] = files["img03.png"]
    write_images(folder, files)
    return folder


def status(work: Path, url: str, *args: str) -> subprocess.CompletedProcess:
    return run_imgvec(
        "status", "--run-id", "nightly-1", "--work-dir", str(work), "--pretrained", "none", *args,
        env={"DATABASE_URL": url},
    )  # fmt: skip


def status_json(work: Path, url: str, *args: str) -> dict:
    return json.loads(status(work, url, "--json", *args).stdout)


def test_every_shard_of_a_finished_run_is_done_with_its_counts(images, fresh_url, tmp_path):
    work = tmp_path / "work"
    for process in [task(images, work, fresh_url, f"{i}/2") for i in range(2)]:
        finish(process)
    report = status_json(work, fresh_url)
    assert report["listing"] == "found" and report["manifest"].endswith("-nightly-1.csv")
    assert report["all_done"]
    shards = report["shards"]
    assert [s["shard"] for s in shards] == ["0/2", "1/2"]
    for shard in shards:
        assert shard["done_marker"] and shard["remaining"] == 0 and shard["failed"] == 0
        assert shard["embedded"] == shard["to_do"] == shard["owned"] > 0, shard
        assert shard["covered_elsewhere"] == 0 and shard["parts"] > 0
    assert sum(s["embedded"] for s in shards) == IMAGES  # the copy shares its original's content
    stages = sorted(r["stage"] for r in report["runs"])
    assert stages.count("list") == 1 and stages.count("embed") == 2 and "load" in stages
    # Each row names its task: task 0 listed, each task embedded its shard and loaded.
    by_task = {(r["stage"], r["shard"]) for r in report["runs"]}
    assert {("list", "0/2"), ("embed", "0/2"), ("embed", "1/2")} <= by_task, by_task
    assert {("load", "0/2"), ("load", "1/2")} <= by_task, by_task
    assert all(r["status"] == "succeeded" and r["finished_at"] for r in report["runs"])
    listing = next(r for r in report["runs"] if r["stage"] == "list")
    assert listing["counts"]["listed"] == IMAGES + 1, listing
    embedded = sum(r["counts"].get("embedded", 0) for r in report["runs"] if r["stage"] == "embed")
    assert embedded == IMAGES

    text = status(work, fresh_url).stdout
    assert "listing: found" in text
    for shard in shards:
        assert (
            f"shard {shard['shard']}: done, {shard['embedded']}/{shard['to_do']} embedded" in text
        )
    listing_row = f"{listing['run_id']} list by task 0/2: succeeded"
    assert listing_row in text, text


def test_a_run_stopped_partway_shows_the_lagging_shard(images, fresh_url, tmp_path):
    work = tmp_path / "work"
    waiting = status_json(work, fresh_url, "--shards", "2")
    assert waiting["listing"] == "waiting" and waiting["manifest"] is None
    assert not any(s["done_marker"] for s in waiting["shards"]) and waiting["runs"] == []
    assert "listing: waiting" in status(work, fresh_url, "--shards", "2").stdout

    finish(task(images, work, fresh_url, "0/2"))  # task 1 never ran (or was lost)
    report = status_json(work, fresh_url)  # N from task 0's done-marker
    first, lagging = report["shards"]
    assert not report["all_done"]
    assert first["done_marker"] and first["remaining"] == 0 and first["embedded"] > 0
    assert not lagging["done_marker"]
    assert lagging["embedded"] == 0 and lagging["remaining"] == lagging["to_do"] > 0
    assert first["to_do"] + lagging["to_do"] == IMAGES
    assert "shard 1/2: not done, 0/" in status(work, fresh_url).stdout

    killed = task(images, work, fresh_url, "1/2")
    deadline = time.monotonic() + 240
    while not list(work.glob("embeddings/*/shard-1of2-part-*.csv")):
        assert killed.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    killed.kill()  # SIGKILL once it has written a part: no done-marker
    killed.wait()
    lagging = status_json(work, fresh_url)["shards"][1]
    assert not lagging["done_marker"] and 0 < lagging["embedded"] <= lagging["to_do"], lagging

    finish(task(images, work, fresh_url, "1/2"))  # the engine reruns the task
    report = status_json(work, fresh_url)
    assert report["all_done"] and all(s["remaining"] == 0 for s in report["shards"])
    # The table tells the killed task's embed from its rerun's (the rerun closed the orphan).
    embeds = [r["status"] for r in report["runs"] if r["stage"] == "embed" and r["shard"] == "1/2"]
    assert embeds == ["interrupted", "succeeded"], report["runs"]


def test_a_run_id_without_files_asks_for_the_task_count(fresh_url, tmp_path):
    result = run_imgvec(
        "status", "--run-id", "r9", "--work-dir", str(tmp_path / "w"), "--pretrained", "none",
        env={"DATABASE_URL": fresh_url}, check=False,
    )  # fmt: skip
    assert result.returncode == 2 and "pass --shards N" in result.stderr, result.stderr


def test_vertex_runs_are_watched_without_google_credentials(fresh_url, tmp_path):
    """Status (like diverse and thumbnails) reads stored vectors only: the flags name the space,
    and no credentials or project are asked for (an operator's laptop may have none)."""
    no_credentials = {"GOOGLE_APPLICATION_CREDENTIALS": str(tmp_path / "missing.json")}
    result = run_imgvec(
        "status", "--run-id", "nightly-1", "--work-dir", str(tmp_path / "w"), "--shards", "2",
        "--backend", "vertex", "--dimension", "512", "--json",
        env={"DATABASE_URL": fresh_url, **no_credentials},
    )  # fmt: skip
    assert json.loads(result.stdout)["space"] == "vertex/multimodalembedding@001/v1/512"
    picked = run_imgvec(
        "diverse", "--backend", "vertex", "--dimension", "128",
        env={"DATABASE_URL": fresh_url, **no_credentials},
    )  # fmt: skip
    assert "nothing loaded in space vertex/multimodalembedding@001/v1/128" in picked.stderr
    bad = run_imgvec(
        "status", "--run-id", "nightly-1", "--shards", "2", "--backend", "vertex",
        "--dimension", "333", env={"DATABASE_URL": fresh_url}, check=False,
    )  # fmt: skip
    assert bad.returncode == 2 and "--dimension: must be one of" in bad.stderr


# Not the run's id: the engines' variables, so a test that leaves out --run-id means it.
RUN_ID_VARIABLES = (
    "IMGVEC_RUN_ID",
    "CLOUD_RUN_EXECUTION",
    "SLURM_ARRAY_JOB_ID",
    "AWS_BATCH_JOB_ID",
)
DEFAULT_SPACE = "clip/ViT-B-32/laion2b_s34b_b79k/512"
RANDOM_SPACE = "clip/ViT-B-32/none-seed0/512"


def run_tasks(images: Path, work: Path, url: str, run_id: str) -> None:
    """A run of two tasks (`--shard I/2`: 1 task is no sharded run), with random weights: not
    the default space."""
    from tests.conftest import IMGVEC
    from tests.shard_tasks import CLIP

    tasks = [
        subprocess.Popen(
            [*IMGVEC, "run", str(images), "--work-dir", str(work), "--shard", f"{i}/2",
             "--run-id", run_id, *CLIP],
            env=_without_run_id() | {"DATABASE_URL": url},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for i in range(2)
    ]  # fmt: skip
    for process in tasks:
        finish(process)


def bare_status(work: Path, url: str, *args: str) -> subprocess.CompletedProcess:
    """`imgvec status` as a new user types it: no run id anywhere, no backend flag."""
    from tests.conftest import IMGVEC

    return subprocess.run(
        [*IMGVEC, "status", "--work-dir", str(work), *args],
        env=_without_run_id() | {"DATABASE_URL": url},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def _without_run_id() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k not in RUN_ID_VARIABLES}


def test_no_run_id_shows_the_newest_run_in_the_space_holding_its_parts(images, fresh_url, tmp_path):
    work = tmp_path / "work"
    missing = bare_status(work, fresh_url)
    assert missing.returncode == 2, missing.stderr
    assert f"no sharded run in {work}" in missing.stderr and "--run-id" in missing.stderr

    run_tasks(images, work, fresh_url, "older-run")
    run_tasks(images, work, fresh_url, "newer-run")  # (its contents: in the older run's parts)
    result = bare_status(work, fresh_url)
    assert result.returncode == 0, result.stderr
    first = result.stdout.splitlines()[0]
    assert first == (
        f"run newer-run (the newest in {work}; --run-id to choose), space {RANDOM_SPACE} "
        "(the only space with this run's parts; --pretrained none selects it)"
    ), result.stdout
    assert "shard 1/2: done, " in result.stdout and "0 remaining" in result.stdout

    report = json.loads(bare_status(work, fresh_url, "--json").stdout)
    assert report["run_id"] == "newer-run" and report["newest_run"]
    assert report["space"] == RANDOM_SPACE and report["space_from_parts"]
    assert report["other_spaces"] == [] and report["all_done"]
    assert {r["stage"] for r in report["runs"]} >= {"list", "embed"}  # the newer run's rows
    chosen = json.loads(bare_status(work, fresh_url, "--json", "--run-id", "older-run").stdout)
    assert chosen["run_id"] == "older-run" and not chosen["newest_run"]


def test_flags_of_a_space_without_the_runs_parts_name_the_space_with_them(
    images, fresh_url, tmp_path
):
    work = tmp_path / "work"
    run_tasks(images, work, fresh_url, "t1")
    args = ("--run-id", "t1", "--pretrained", "laion2b_s34b_b79k")  # the default, said aloud
    text = bare_status(work, fresh_url, *args).stdout
    lines = text.splitlines()
    assert lines[0] == f"run t1 in {work}, space {DEFAULT_SPACE}", text
    assert lines[1] == (
        f"no part of this run in this space; spaces with its parts: {RANDOM_SPACE} "
        "(--pretrained none)"
    ), text
    report = json.loads(bare_status(work, fresh_url, "--json", *args).stdout)
    assert report["space"] == DEFAULT_SPACE and not report["space_from_parts"]
    assert report["other_spaces"] == [{"space": RANDOM_SPACE, "options": "--pretrained none"}]
    same = json.loads(
        bare_status(work, fresh_url, "--json", "--run-id", "t1", "--pretrained", "none").stdout
    )
    assert same["space"] == RANDOM_SPACE and same["other_spaces"] == []
