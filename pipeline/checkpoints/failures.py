"""The failures record: `embeddings/<space>/failures-NNNNN.csv`, what the embed stage could not
embed for part NNNNN, and why. Written by the embed stage (through `parts.PartWriter`, which
publishes it just before its part), read by the embed stage's restart (which failures are
permanent) and by the load stage, the one owner of the database's `failures` table."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pandas as pd

from pipeline.workdir import WorkDir

FAILURE_COLUMNS = ["locator", "content_hash", "stage", "reason", "permanent"]
_EMPTY = len(",".join(FAILURE_COLUMNS)) + 2  # a header (and its line end) at most
_PART = re.compile(r"part-(\d+)\.csv$")


@dataclass(frozen=True)
class Failure:
    """One image that could not be embedded. `permanent`: retrying will not help (not an image,
    too large); a passing failure (a read timed out) is tried again by the next run."""

    locator: str
    content_hash: str | None
    reason: str
    permanent: bool = True
    stage: str = "embed"


def failures_file(part_path: str) -> str:
    """The failures file that goes with a part: part-00007.csv -> failures-00007.csv."""
    return _PART.sub(r"failures-\1.csv", part_path)


def has_failures(part_path: str, sizes: dict[str, int]) -> bool:
    """Whether the part's failures file (from a listing's sizes) holds more than its header."""
    return sizes.get(failures_file(part_path), 0) > _EMPTY


def failures_frame(failures: list[Failure]) -> pd.DataFrame:
    """The rows of a failures file (header only when there are none)."""
    return pd.DataFrame(
        [(f.locator, f.content_hash or "", f.stage, f.reason, f.permanent) for f in failures],
        columns=FAILURE_COLUMNS,
    )


def read_failures(work: WorkDir, part_path: str) -> list[Failure]:
    """The failures recorded beside a part."""
    with work.open_text(failures_file(part_path)) as fh:
        frame = pd.read_csv(fh, usecols=FAILURE_COLUMNS, dtype=str, keep_default_na=False)
    return [
        Failure(locator, content_hash or None, reason, permanent == "True", stage)
        for locator, content_hash, stage, reason, permanent in frame[FAILURE_COLUMNS].itertuples(
            index=False
        )
    ]


__all__ = [
    "FAILURE_COLUMNS",
    "Failure",
    "failures_file",
    "failures_frame",
    "has_failures",
    "read_failures",
]
