"""Shards: parsing, the batch engines' variables, and a stable, balanced assignment."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import pytest

from pipeline.core.shards import Shard, run_id_from_environment, shard_from_environment


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
