"""The load stage: embed-stage CSV parts into PostgreSQL + pgvector. Entry point: `load_work_dir`.

Parts go in a group at a time, each group in one transaction: vectors new to the space are
binary-COPYed straight into the space's partition, vectors that replace older ones go through a
staging table, and the parts are recorded in loaded_parts. While one group is written the next is
prepared — read, matched to its objects, split into new and replacing vectors, and encoded for
COPY with NumPy in one go (pipeline.loading.binary_copy) — so the writing connection only streams
ready buffers, at about the speed of a raw COPY. A crash anywhere — mid-COPY, before or after the
commit — followed by a rerun neither loses nor duplicates a row, and parts already loaded are
skipped. Rows are read from each part's binary twin when it has one (see
pipeline.checkpoints.parts), else parsed from the CSV; each part's failures file is recorded
alongside. The HNSW index is built after the first bulk load of a space (far faster than
inserting into an existing index) and maintained by PostgreSQL after that.

Modules: `space_loader` (one space, a group at a time), `groups` (a group made ready to write),
`sql` (the statements), `binary_copy` (the COPY encoding), `indexing` (the HNSW index).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from pipeline.checkpoints.parts import space_folders
from pipeline.db import open_database, resolve_url
from pipeline.db.runs import RunTask, tracked_run
from pipeline.errors import ConfigError
from pipeline.loading.indexing import build_index
from pipeline.loading.space_loader import load_space, space_load_lock
from pipeline.settings import Settings
from pipeline.workdir import WorkDir


@dataclass
class LoadResult:
    run_id: int
    counts: Counter = field(default_factory=Counter)
    indexes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        c = self.counts
        parsed = (
            f" ({c['parts_parsed_from_csv']} parsed from CSV, no usable binary twin)"
            if c["parts_parsed_from_csv"]
            else ""
        )
        return (
            f"{c['parts_loaded']} parts loaded{parsed} ({c['rows']} vectors), {c['parts_skipped']} already "
            f"loaded, {c['reused']} vectors reused for identical bytes; indexes: {', '.join(self.indexes) or 'none'}"
        )

    def then(self, later: LoadResult) -> LoadResult:
        """This load and a later one of the same work dir, as one (the last task of a sharded
        run loads its own parts, then whatever the others published meanwhile, and indexes):
        the parts this one loaded are among those the later one found already loaded."""
        counts = self.counts + later.counts
        counts["parts_skipped"] = later.counts["parts_skipped"] - self.counts["parts_loaded"]
        return LoadResult(later.run_id, counts, later.indexes)


async def load_work_dir(
    *,
    work_dir: str,
    settings: Settings | None = None,
    index: bool = True,
    maintenance_work_mem: str = "1GB",
    task: RunTask | None = None,
) -> LoadResult:
    settings = settings or Settings()
    work = WorkDir(work_dir)
    # One listing of every space's files, with their sizes: on GCS a listing is a request per 1,000.
    by_folder = space_folders(work.sizes_below("embeddings"))
    if not by_folder:
        raise ConfigError(
            f"no embeddings in {work.spec}", hint=f"run `imgvec embed --work-dir {work.spec}` first"
        )
    url = await resolve_url(settings)
    async with (
        open_database(settings) as conn,
        tracked_run(conn, "load", work.spec, task=task) as run,
    ):
        result = LoadResult(run.run_id, run.counts)
        for folder, sizes in by_folder.items():
            space_id = await load_space(conn, url, work, folder, sizes, run.run_id, result.counts)
            if index:
                # Under the space's load lock: tasks of a sharded run that finish together do
                # not build the same index at once (the second finds it built).
                async with space_load_lock(conn, space_id):
                    result.indexes.append(
                        await build_index(
                            conn,
                            space_id,
                            maintenance_work_mem=maintenance_work_mem,
                            progress_url=url,
                        )
                    )
                await conn.execute("ANALYZE objects")
    return result
