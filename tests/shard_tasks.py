"""A task of a sharded run, started as an engine starts one (a Kubernetes Indexed Job, a Cloud
Run Job, a Slurm array): `imgvec run --shard I/N` with the run's id in the environment. Shared by
test_shards (the result) and test_status (what `imgvec status` says of it)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.conftest import IMGVEC

RUN_ID = "nightly-1"
# One image per forward pass: CPU matrix kernels round by batch shape (1 ulp between a batch of 6
# and one of 24), and which images share a batch is not what sharding is about. Small parts: a
# task publishes often enough to be seen, killed or raced between parts.
CLIP = ["--pretrained", "none", "--batch-size", "1", "--part-size", "2", "--read-workers", "2"]


def task(images: Path, work: Path, url: str, shard: str) -> subprocess.Popen:
    return subprocess.Popen(
        [*IMGVEC, "run", str(images), "--work-dir", str(work), "--shard", shard, *CLIP],
        env=dict(os.environ) | {"DATABASE_URL": url, "IMGVEC_RUN_ID": RUN_ID},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen) -> str:
    """The task's output, once it ended well."""
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    return out
