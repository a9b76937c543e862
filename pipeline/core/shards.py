"""Shards: how N tasks of one batch job split a run's objects between them, with no coordinator.

An object belongs to shard `blake2b(content key) mod N`: stable across runs, reruns and machines
(Python's `hash()` is salted per process, so it never decides this), balanced, and identical bytes
share a content key, so they land in the same shard and dedupe still holds.

The task's shard and the run's id come by default from the variables the batch engines set, so
the same command runs unchanged in every task."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Shard:
    index: int  # 0-based
    count: int

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError(f"a shard count must be at least 1, not {self.count}")
        if not 0 <= self.index < self.count:
            raise ValueError(
                f"a shard index must be between 0 and {self.count - 1} (0-based), not {self.index}"
            )

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @classmethod
    def parse(cls, text: str) -> Shard:
        """`I/N`: task I (0-based) of N."""
        index, slash, count = text.strip().partition("/")
        if not slash or not index.strip().isdigit() or not count.strip().isdigit():
            raise ValueError(
                f"a shard is written I/N (task I of N, 0-based, e.g. 0/4), not {text!r}"
            )
        return cls(int(index), int(count))

    def owns(self, content_key: str) -> bool:
        return shard_of(content_key, self.count) == self.index


def shard_of(content_key: str, count: int) -> int:
    digest = hashlib.blake2b(content_key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count


def shard_from_environment(env: Mapping[str, str]) -> Shard | None:
    """The task's shard as the batch engine tells it (None: not run as a task of an array).

    IMGVEC_SHARD (`I/N`, or `I` with IMGVEC_SHARDS) overrides the engines' variables; IMGVEC_SHARDS
    gives the count to engines that set only an index (Kubernetes Indexed Jobs, AWS Batch)."""
    count_override = env.get("IMGVEC_SHARDS")
    if shard := env.get("IMGVEC_SHARD"):
        if "/" in shard:
            return Shard.parse(shard)
        return _indexed("IMGVEC_SHARD", shard, count_override)
    if "CLOUD_RUN_TASK_INDEX" in env:
        return Shard(
            _number("CLOUD_RUN_TASK_INDEX", env["CLOUD_RUN_TASK_INDEX"]),
            _number("CLOUD_RUN_TASK_COUNT", count_override or env.get("CLOUD_RUN_TASK_COUNT", "")),
        )
    if "SLURM_ARRAY_TASK_ID" in env:
        # An array like --array=1-8 or 0-15:2 numbers its tasks from its minimum, by its step.
        first = _number("SLURM_ARRAY_TASK_MIN", env.get("SLURM_ARRAY_TASK_MIN", "0"))
        step = _number("SLURM_ARRAY_TASK_STEP", env.get("SLURM_ARRAY_TASK_STEP", "1")) or 1
        task = _number("SLURM_ARRAY_TASK_ID", env["SLURM_ARRAY_TASK_ID"])
        count = count_override or env.get("SLURM_ARRAY_TASK_COUNT", "")
        return Shard((task - first) // step, _number("SLURM_ARRAY_TASK_COUNT", count))
    for variable in ("JOB_COMPLETION_INDEX", "AWS_BATCH_JOB_ARRAY_INDEX"):
        if variable in env:
            return _indexed(variable, env[variable], count_override)
    return None


def run_id_from_environment(env: Mapping[str, str]) -> str | None:
    """The id every task of one execution of the job shares (and a rerun of the job does not)."""
    if run_id := env.get("IMGVEC_RUN_ID"):  # also how a Kubernetes job passes its name
        return run_id
    if run_id := env.get("CLOUD_RUN_EXECUTION"):
        return run_id
    if run_id := env.get("SLURM_ARRAY_JOB_ID"):
        return run_id
    if run_id := env.get("AWS_BATCH_JOB_ID"):
        return run_id.partition(":")[0]  # an array child's id is the parent's plus ":index"
    return None


def _indexed(variable: str, index: str, count: str | None) -> Shard:
    if not count:
        raise ValueError(
            f"{variable} gives this task's index but not the number of tasks: "
            "set IMGVEC_SHARDS to the job's task count (e.g. its completions or array size)"
        )
    return Shard(_number(variable, index), _number("IMGVEC_SHARDS", count))


def _number(variable: str, value: str) -> int:
    if not value.strip().isdigit():
        raise ValueError(f"{variable} must be a whole number, not {value!r}")
    return int(value)
