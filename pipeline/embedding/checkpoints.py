"""The embed stage's checkpoints: `embeddings/<space>/part-NNNNN.csv`, each published whole, and
beside it `failures-NNNNN.csv` for the items of that part that could not be embedded.

A part's existence is the proof its vectors are done, so a crash loses at most the parts in
flight and a rerun recomputes nothing a part already holds. (The failures file follows its part;
lost in a crash, its items are simply tried again.) Parts are keyed by content (the content hash, or the locator when the store
gives no hash): identical bytes are embedded once per space, whatever their locators.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from pipeline.db.spaces import EmbeddingSpace
from pipeline.workdir import WorkDir

SPACE_FILE = "space.json"  # the space's definition, so the load stage can register it anywhere
PART_COLUMNS = ["locator", "content_hash", "space", "embedding"]
FAILURE_COLUMNS = ["locator", "content_hash", "stage", "reason", "permanent"]
_PART = re.compile(r"part-(\d+)\.csv$")


def space_folder(space: EmbeddingSpace) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", space.name.replace("/", "--"))
    return f"embeddings/{slug}"


def content_key(locator: str, content_hash: str | None) -> str:
    return content_hash or locator


def vector_text(vector: np.ndarray) -> str:
    """pgvector's text form, '[0.1,0.2,…]', with float32's full precision."""
    return "[" + ",".join(np.format_float_positional(v, unique=True, trim="-") for v in vector.astype(np.float32)) + "]"


def parse_vector(text: str) -> np.ndarray:
    return np.array(text.strip("[]").split(","), dtype=np.float32)


@dataclass
class PartIndex:
    """What the parts already written for a space cover."""

    done: set[str] = field(default_factory=set)
    failed_permanently: set[str] = field(default_factory=set)
    next_number: int = 0


def read_index(work: WorkDir, folder: str) -> PartIndex:
    index = PartIndex()
    files = work.list(folder)
    parts = {int(m.group(1)): f for f in files if (m := _PART.search(f))}
    for number, path in parts.items():
        with work.open_text(path) as fh:
            frame = pd.read_csv(fh, usecols=["locator", "content_hash"], dtype="string", keep_default_na=False)
        index.done.update(content_key(loc, h) for loc, h in zip(frame["locator"], frame["content_hash"]))
        failures = f"{folder}/failures-{number:05d}.csv"
        if failures in files:
            with work.open_text(failures) as fh:
                failed = pd.read_csv(fh, dtype={"locator": "string", "content_hash": "string"}, keep_default_na=False)
            permanent = failed[failed["permanent"].astype(str) == "True"]
            index.failed_permanently.update(
                content_key(loc, h) for loc, h in zip(permanent["locator"], permanent["content_hash"])
            )
    index.next_number = max(parts, default=-1) + 1
    return index


class PartWriter:
    """Publishes parts under the next free number (never overwriting another run's part)."""

    def __init__(self, work: WorkDir, folder: str, space: EmbeddingSpace, first_number: int) -> None:
        self.work = work
        self.folder = folder
        self.space = space
        self.number = first_number
        self.published: list[str] = []

    def write_space(self) -> None:
        scratch = self.work.scratch_file(f"{self.folder}/{SPACE_FILE}")
        json.dump(dataclasses.asdict(self.space), scratch, indent=2)
        scratch.close()
        self.work.publish(scratch.name, f"{self.folder}/{SPACE_FILE}")

    def write(self, vectors: list[tuple[str, str | None, np.ndarray]],
              failures: list[tuple[str, str | None, str, bool]]) -> str:
        if not self.published:
            self.write_space()
        part_frame = pd.DataFrame(
            [(loc, h or "", self.space.name, vector_text(v)) for loc, h, v in vectors], columns=PART_COLUMNS
        )
        failure_frame = pd.DataFrame(
            [(loc, h or "", "embed", reason, permanent) for loc, h, reason, permanent in failures],
            columns=FAILURE_COLUMNS,
        )
        while True:
            number = self.number
            self.number += 1
            path = self._publish(part_frame, f"{self.folder}/part-{number:05d}.csv", exclusive=True)
            if path is None:
                continue  # another process took this number meanwhile: use the next one
            if failures:
                self._publish(failure_frame, f"{self.folder}/failures-{number:05d}.csv", exclusive=False)
            self.published.append(path)
            return path

    def _publish(self, frame: pd.DataFrame, relpath: str, *, exclusive: bool) -> str | None:
        scratch = self.work.scratch_file(relpath)
        frame.to_csv(scratch, index=False)
        scratch.close()
        path = self.work.publish(scratch.name, relpath, exclusive=exclusive)
        if path is None:
            self.work.discard(scratch.name)
        return path
