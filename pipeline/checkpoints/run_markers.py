"""The markers the N tasks of one sharded run leave in the work dir: `runs/<run id>/listed`
(the file name of the manifest task 0 listed, written once its listing is committed: the other
tasks wait for it) and `runs/<run id>/shard-IofN.done` (that task embedded and loaded its shard:
the task that finds every shard done builds the index). Files, not database rows, because the
work dir is what every task of a run shares by construction, locally and on gs:// alike."""

from __future__ import annotations

import posixpath
import re

from pipeline.core.shards import Shard
from pipeline.workdir import WorkDir

FOLDER = "runs"


def run_slug(run_id: str) -> str:
    """A run id as one safe path segment (engines' ids are mostly so already)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", run_id)


def publish_listed(work: WorkDir, run_id: str, manifest: str) -> None:
    _publish_text(work, f"{FOLDER}/{run_slug(run_id)}/listed", posixpath.basename(manifest))


def listed_manifest(work: WorkDir, run_id: str) -> str | None:
    """The manifest (relative path) the run's task 0 listed, once it has committed it."""
    relpath = f"{FOLDER}/{run_slug(run_id)}/listed"
    if relpath not in work.sizes(posixpath.dirname(relpath)):
        return None
    with work.open_text(relpath) as fh:
        return f"manifests/{fh.read().strip()}"


def newest_run(work: WorkDir) -> str | None:
    """The newest run in the work dir (as its slug, which is its id unless the id had unsafe
    characters), None: no run has published its listing. Newest by its listing time: a run's
    listed manifest is `manifests/manifest-<UTC time>-<slug>.csv` (`manifest.manifest_path`), so
    one listing of `manifests/` dates every run (the work dir gives no modification times, and
    reading each run's marker would cost a read per run on gs://)."""
    listed = {path.split("/")[1] for path in work.sizes_below(FOLDER) if path.endswith("/listed")}
    runs = (_RUN_MANIFEST.search(path) for path in work.list("manifests"))
    dated = sorted((m.group(1), m.group(2)) for m in runs if m and m.group(2) in listed)
    return dated[-1][1] if dated else None


# (the time first, as `manifest_path` writes it: a slug may hold dashes)
_RUN_MANIFEST = re.compile(r"/manifest-(\d{8}T\d{12}Z)-(.+)\.csv$")


def publish_shard_done(work: WorkDir, run_id: str, shard: Shard) -> None:
    _publish_text(work, _done_marker(run_id, shard), str(shard))


def shards_done(work: WorkDir, run_id: str, count: int) -> set[int]:
    """Which of the run's `count` shards have embedded and loaded their share."""
    files = work.sizes(f"{FOLDER}/{run_slug(run_id)}")
    return {i for i in range(count) if _done_marker(run_id, Shard(i, count)) in files}


def marked_shard_counts(work: WorkDir, run_id: str) -> set[int]:
    """The task counts N of the run's done-markers (one, unless it was started with several)."""
    markers = work.sizes(f"{FOLDER}/{run_slug(run_id)}")
    return {int(m.group(1)) for path in markers if (m := _DONE_MARKER_OF_N.search(path))}


_DONE_MARKER_OF_N = re.compile(r"/shard-\d+of(\d+)\.done$")  # as `_done_marker` names them


def _done_marker(run_id: str, shard: Shard) -> str:
    return f"{FOLDER}/{run_slug(run_id)}/shard-{shard.index}of{shard.count}.done"


def _publish_text(work: WorkDir, relpath: str, text: str) -> None:
    scratch = work.scratch_file(relpath)
    scratch.write(text)
    scratch.close()
    work.publish(scratch.name, relpath)
