"""How far each task of a sharded run has got, read from the work dir alone: the run's listing
marker and manifest (`run_markers`, `manifest`), the parts and failures files of the space
(`parts`, `failures`) and the tasks' done-markers. The operator's view, `imgvec status`.

Per shard I of N, over the distinct contents (content keys) of the run's manifest that it owns:
- `owned`: the present (not deleted, not skipped) contents whose key the shard owns;
- `covered_elsewhere`: of those, the ones some other part already holds (an unsharded run, or a
  run split into another number of shards): the task skips them;
- `to_do` = owned - covered_elsewhere: what the task itself has to embed;
- `embedded`: of `to_do`, the contents in the shard's own `shard-IofN-part-*` parts (parts carry no
  run id: an earlier run with the same N counts too, as the task would skip those contents);
- `failed` / `failed_permanently`: of the rest, the contents its failures files record (the
  permanent ones are not retried);
- `remaining` = to_do - embedded - failed_permanently.
Contents another work dir already loaded into the database are skipped by the task but counted
in `to_do` here (the files do not know them): such a shard stays short of its count, and its
done-marker is what says it finished."""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.checkpoints.failures import has_failures, read_failures
from pipeline.checkpoints.manifest import iter_entries
from pipeline.checkpoints.parts import (
    is_part,
    part_keys,
    read_space,
    shard_of_part,
    space_folders,
)
from pipeline.checkpoints.run_markers import listed_manifest, marked_shard_counts, shards_done
from pipeline.core.objects import content_key
from pipeline.core.shards import shard_of
from pipeline.core.space import EmbeddingSpace
from pipeline.errors import UsageError
from pipeline.workdir import WorkDir


@dataclass
class ShardProgress:
    index: int
    count: int
    done_marker: bool
    owned: int = 0
    covered_elsewhere: int = 0
    embedded: int = 0
    failed: int = 0
    failed_permanently: int = 0
    parts: int = 0  # the shard's own part files

    @property
    def to_do(self) -> int:
        return self.owned - self.covered_elsewhere

    @property
    def remaining(self) -> int:
        return self.to_do - self.embedded - self.failed_permanently

    def as_dict(self) -> dict:
        return {
            "shard": f"{self.index}/{self.count}",
            "done_marker": self.done_marker,
            "owned": self.owned,
            "covered_elsewhere": self.covered_elsewhere,
            "to_do": self.to_do,
            "embedded": self.embedded,
            "failed": self.failed,
            "failed_permanently": self.failed_permanently,
            "remaining": self.remaining,
            "parts": self.parts,
        }


@dataclass
class RunProgress:
    run_id: str
    count: int
    manifest: str | None  # None: task 0 has not published its listing yet
    shards: list[ShardProgress] = field(default_factory=list)


def run_progress(work: WorkDir, run_id: str, folder: str, count: int | None) -> RunProgress:
    """The progress of run `run_id`'s shards into the space folder `folder` (`count`: N, or None
    to read it from the run's done-markers, else from the folder's shard parts)."""
    count = count or shard_count(work, run_id, folder)
    done = shards_done(work, run_id, count)
    shards = [ShardProgress(i, count, i in done) for i in range(count)]
    progress = RunProgress(run_id, count, listed_manifest(work, run_id), shards)
    if progress.manifest is None:
        return progress
    owned: list[set[str]] = [set() for _ in range(count)]
    for entry in iter_entries(work, progress.manifest):
        if entry.present:
            key = content_key(entry.locator, entry.content_hash)
            owned[shard_of(key, count)].add(key)
    files = work.sizes(folder)
    own_parts: list[list[str]] = [[] for _ in range(count)]
    other_keys: set[str] = set()  # held by parts that are no shard's of this N
    for path in sorted(p for p in files if is_part(p)):
        if (index := _own_shard(path, count)) is not None:
            own_parts[index].append(path)
        else:
            other_keys.update(content_key(loc, h) for loc, h in part_keys(work, path, files))
    for shard, keys, parts in zip(shards, owned, own_parts, strict=True):
        _count_shard(work, shard, keys, other_keys, parts, files)
    return progress


def _count_shard(
    work: WorkDir,
    shard: ShardProgress,
    owned: set[str],
    other_keys: set[str],
    parts: list[str],
    files: dict[str, int],
) -> None:
    to_do = owned - other_keys
    embedded: set[str] = set()
    for path in parts:
        embedded.update(content_key(loc, h) for loc, h in part_keys(work, path, files))
    embedded &= to_do
    failed, permanent = set(), set()
    for path in (p for p in parts if has_failures(p, files)):
        for failure in read_failures(work, path):
            key = content_key(failure.locator, failure.content_hash)
            failed.add(key)
            if failure.permanent:
                permanent.add(key)
    rest = to_do - embedded
    shard.owned, shard.covered_elsewhere = len(owned), len(owned) - len(to_do)
    shard.embedded, shard.parts = len(embedded), len(parts)
    shard.failed, shard.failed_permanently = len(failed & rest), len(permanent & rest)


def _own_shard(path: str, count: int) -> int | None:
    shard = shard_of_part(path)
    return shard.index if shard is not None and shard.count == count else None


def shard_count(work: WorkDir, run_id: str, folder: str) -> int:
    """N, from the run's done-markers, else from the shard parts in the space folder (when they
    were all written by one N)."""
    counts = marked_shard_counts(work, run_id)
    if not counts:
        parts = (shard_of_part(path) for path in work.sizes(folder))
        counts = {shard.count for shard in parts if shard is not None}
    if len(counts) != 1:
        found = f"shards of {sorted(counts)} tasks" if counts else "no shard's files"
        raise UsageError(
            f"cannot tell how many tasks run {run_id} has: {work.spec} holds {found}",
            hint="pass --shards N, the run's task count",
        )
    return counts.pop()


def spaces_with_run_parts(
    work: WorkDir, run_id: str, count: int | None
) -> dict[str, EmbeddingSpace]:
    """The space folders under `embeddings/` holding shard parts of the run (by their task count
    N, as `run_progress` counts them: parts carry no run id), each with its space. N unknown
    (`count` None and no done-marker): shard parts of any N."""
    counts = {count} if count else marked_shard_counts(work, run_id)
    found = {}
    for folder, files in space_folders(work.sizes_below("embeddings")).items():
        shards = (shard_of_part(path) for path in files)
        if any(s is not None and (not counts or s.count in counts) for s in shards):
            found[folder] = read_space(work, folder)
    return found
