"""The embedding parts: `embeddings/<space>/part-NNNNN.csv` (`shard-IofN-part-NNNNN.csv` from
task I of N), each published whole, written by the embed stage and read by its restart (every
shard's) and by the load stage; beside them `space.json`, the space's definition, and
`failures-NNNNN.csv` for the items of a part that could not be embedded (that format is
`pipeline.checkpoints.failures`).

Each part with rows also gets a binary twin, `part-NNNNN.npy`, because parsing 512 decimal floats
per row costs more than the database needs to store the row. It holds two NumPy arrays one after
the other (`np.save` twice, `np.load` twice from one open file): the keys — locator, content hash
and the CSV's size, a record per row — then the float32 vectors, so a reader that wants only the
keys (the embed stage's restart) reads a few KB, and the vectors come in one contiguous read (an
.npz cost ~1 ms a part in zip handling). The CSV stays the checkpoint people and other tools read;
the twin is published after its CSV and is ignored if the CSV was changed since (its size
differs) or if it is missing: the load then parses the CSV.

A part's existence is the proof its vectors are done, so a crash loses at most the parts in
flight and a rerun recomputes nothing a part already holds. The failures file comes first and
claims the part's number (it exists, maybe empty, for every part); one left without its part by a
crash is ignored, and its items are simply tried again. Parts are keyed by content (the content
hash, or the locator when the store gives no hash): identical bytes are embedded once per space,
whatever their locators. Part numbers repeat across shards.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from pipeline.checkpoints.failures import (
    Failure,
    failures_file,
    failures_frame,
    has_failures,
    read_failures,
)
from pipeline.checkpoints.space_file import read_space as read_space
from pipeline.checkpoints.space_file import space_folder as space_folder
from pipeline.checkpoints.space_file import space_folders as space_folders
from pipeline.checkpoints.space_file import write_space
from pipeline.core.objects import content_key
from pipeline.core.shards import Shard
from pipeline.core.space import EmbeddingSpace
from pipeline.errors import ConfigError
from pipeline.workdir import WorkDir

PART_COLUMNS = ["locator", "content_hash", "space", "embedding"]
_PART = re.compile(r"(?:^|/)(?:shard-(\d+)of(\d+)-)?part-(\d+)\.csv$")
_EMPTY_PART = len(",".join(PART_COLUMNS)) + 2


def is_part(path: str) -> bool:
    return _PART.search(path) is not None


def shard_of_part(path: str) -> Shard | None:
    """The shard whose task wrote a part (None: not a part, or written unsharded)."""
    match = _PART.search(path)
    if match is None or match.group(1) is None:
        return None
    try:
        return Shard(int(match.group(1)), int(match.group(2)))
    except ValueError:  # (a name no task writes, e.g. shard-5of2: no shard's)
        return None


def binary_twin(part_path: str) -> str:
    return part_path.removesuffix(".csv") + ".npy"


@dataclass
class PartRows:
    locators: list[str]
    content_hashes: list[str]  # "" where the store gives no hash
    vectors: np.ndarray  # float32, one row per locator
    parsed_csv: bool = False  # read by parsing the CSV (no usable twin)
    failures: list[Failure] = field(default_factory=list)  # the part's failures file


@dataclass(frozen=True)
class Embedded:
    """One vector made by the embed stage, for the bytes of `locator`."""

    locator: str
    content_hash: str | None
    vector: np.ndarray


def vector_text(vector: np.ndarray) -> str:
    """pgvector's text form, '[0.1,0.2,…]', with float32's full precision."""
    values = vector.astype(np.float32)
    return (
        "[" + ",".join(np.format_float_positional(v, unique=True, trim="-") for v in values) + "]"
    )


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
    files = work.sizes(folder)
    parts = {f: int(m.group(3)) for f in files if (m := _PART.search(f))}
    for path in parts:
        index.done.update(content_key(loc, h) for loc, h in part_keys(work, path, files))
        if has_failures(path, files):
            index.failed_permanently.update(
                content_key(f.locator, f.content_hash)
                for f in read_failures(work, path)
                if f.permanent
            )
    index.next_number = max(parts.values(), default=-1) + 1
    return index


class PartWriter:
    """Publishes parts under the next free number (never overwriting another run's part), and
    the space's definition beside them, once, when made: the load visits a space folder that has
    it even when no part was written (and links listed objects to vectors the database holds)."""

    def __init__(
        self,
        work: WorkDir,
        folder: str,
        space: EmbeddingSpace,
        first_number: int,
        shard: Shard | None = None,
    ) -> None:
        self.work = work
        # A part's path is this + "part-NNNNN.csv" (its failures file's too, `failures_file`).
        self.name_start = f"{folder}/" + (f"shard-{shard.index}of{shard.count}-" if shard else "")
        self.space = space
        self.number = first_number
        self.published: list[str] = []
        write_space(work, space)

    def write(self, vectors: list[Embedded], failures: list[Failure]) -> str:
        part_frame = pd.DataFrame(
            [
                (v.locator, v.content_hash or "", self.space.name, vector_text(v.vector))
                for v in vectors
            ],
            columns=PART_COLUMNS,
        )
        failure_frame = failures_frame(failures)
        while True:
            number = self.number
            self.number += 1
            # The failures file (written even when empty) claims the number, then the part follows:
            # a part's failures are on disk before the part, so no load can see one without the other.
            claimed, _ = self._publish(
                failure_frame,
                failures_file(f"{self.name_start}part-{number:05d}.csv"),
                exclusive=True,
            )
            if claimed is None:
                continue  # another process took this number meanwhile: use the next one
            relpath = f"{self.name_start}part-{number:05d}.csv"
            path, csv_size = self._publish(part_frame, relpath, exclusive=True)
            if path is None:
                continue  # (a writer that claims by part, not by failures file)
            self._publish_twin(
                relpath,
                csv_size,
                part_frame,
                np.stack([v.vector for v in vectors]) if vectors else None,
            )
            self.published.append(path)
            return path

    def _publish_twin(
        self, relpath: str, csv_size: int, frame: pd.DataFrame, vectors: np.ndarray | None
    ) -> None:
        # Written only once the CSV has claimed its number, so a twin always belongs to its CSV.
        if vectors is None:
            return  # an empty part is known empty from its CSV's size
        locators, hashes = (
            np.array(frame[column].tolist(), dtype=str) for column in ("locator", "content_hash")
        )
        keys = np.empty(len(frame), _keys_type(locators.dtype, hashes.dtype))
        keys["locator"], keys["content_hash"], keys["csv_size"] = locators, hashes, csv_size
        twin = binary_twin(relpath)
        scratch = self.work.scratch_file(twin, binary=True)
        np.save(scratch, keys, allow_pickle=False)
        np.save(scratch, vectors.astype("<f4", copy=False), allow_pickle=False)
        scratch.close()
        self.work.publish(scratch.name, twin)

    def _publish(
        self, frame: pd.DataFrame, relpath: str, *, exclusive: bool
    ) -> tuple[str | None, int]:
        scratch = self.work.scratch_file(relpath)
        frame.to_csv(scratch, index=False)
        scratch.close()
        size = os.path.getsize(scratch.name)
        path = self.work.publish(scratch.name, relpath, exclusive=exclusive)
        if path is None:
            self.work.discard(scratch.name)
        return path, size


def read_part(
    work: WorkDir, path: str, dimension: int, csv_size: int | None = None, has_twin: bool = True
) -> PartRows:
    """A part's rows: from its binary twin when that matches the CSV (`csv_size`, from the
    folder listing), else parsed from the CSV."""
    if csv_size is not None and csv_size <= _EMPTY_PART:
        return PartRows([], [], np.zeros((0, dimension), dtype=np.float32))
    if has_twin and csv_size is not None:
        twin = _read_twin(work, path, csv_size, with_vectors=True)
        if twin is not None and twin[1].shape == (len(twin[0]), dimension):
            keys, vectors = twin
            return PartRows(keys["locator"].tolist(), keys["content_hash"].tolist(), vectors)
    with work.open_text(path) as fh:
        frame = pd.read_csv(
            fh, usecols=["locator", "content_hash", "embedding"], dtype=str, keep_default_na=False
        )
    if frame.empty:
        return PartRows([], [], np.zeros((0, dimension), dtype=np.float32), parsed_csv=True)
    # One C-level parse of all the part's vectors instead of one per row.
    flat = np.fromstring(
        ",".join(text[1:-1] for text in frame["embedding"]), dtype=np.float32, sep=","
    )
    if flat.size != len(frame) * dimension:
        raise ConfigError(
            f"{work.describe(path)}: vectors are not all of dimension {dimension}",
            hint="the part is damaged: delete it and rerun `imgvec embed` to recompute it",
        )
    return PartRows(
        frame["locator"].tolist(),
        frame["content_hash"].tolist(),
        flat.reshape(len(frame), dimension),
        parsed_csv=True,
    )


def part_keys(work: WorkDir, path: str, sizes: dict[str, int]) -> zip:
    """(locator, content_hash) of each row of a part: from its twin when that matches, else the CSV."""
    if sizes[path] <= _EMPTY_PART:
        return zip()
    twin = (
        _read_twin(work, path, sizes[path], with_vectors=False)
        if binary_twin(path) in sizes
        else None
    )
    if twin is not None:
        keys, _ = twin
        return zip(keys["locator"].tolist(), keys["content_hash"].tolist(), strict=False)
    with work.open_text(path) as fh:
        frame = pd.read_csv(
            fh, usecols=["locator", "content_hash"], dtype=str, keep_default_na=False
        )
    return zip(frame["locator"].tolist(), frame["content_hash"].tolist(), strict=False)


def _keys_type(locator: np.dtype, content_hash: np.dtype) -> np.dtype:
    return np.dtype([("locator", locator), ("content_hash", content_hash), ("csv_size", "<i8")])


def _read_twin(work: WorkDir, path: str, csv_size: int, *, with_vectors: bool) -> tuple | None:
    """A part's twin: (keys, vectors or None); None when it is unreadable, not a twin, or its CSV
    was edited after it was written (the CSV wins)."""
    try:
        with work.open_binary(binary_twin(path)) as fh:
            keys = np.load(fh, allow_pickle=False)
            if (
                keys.dtype.names != ("locator", "content_hash", "csv_size")
                or keys.ndim != 1
                or not len(keys)
            ):
                return None
            if int(keys["csv_size"][0]) != csv_size:
                return None
            vectors = np.load(fh, allow_pickle=False) if with_vectors else None
    except (OSError, ValueError, EOFError):
        return None
    if vectors is not None and vectors.dtype != np.float32:
        return None
    return keys, vectors
