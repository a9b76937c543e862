"""How much shared memory (`shared_buffers`) the embedded PostgreSQL starts with.

PostgreSQL's default, 128MB, is sized to start on any machine, not to search: a space's HNSW index
is ~2.6 kB per 512-d vector (200k images: 521 MB) and its partition as much again, and a search
walks the graph across the whole index. With 128MB most of those pages come from the OS page cache
through a read() each: a search filtered to 10 % of 200k images (ef_search 400) took a median
32.9 ms, with 512MB 20.6, 1GB 17.1, 2GB 16.1 (bench/bench_filter.py, bench/README.md). So a
quarter of the memory (PostgreSQL's own advice for a dedicated server), at most 2GB: the daemon
outlives the command on a machine that does other things, and shared memory stays taken once used.
It is given on the server's command line (`EmbeddedPostgres.start(shared_buffers=...)` to choose
another), which wins over postgresql.conf and ALTER SYSTEM; a server already running keeps its
own until `imgvec db stop`.
"""

from __future__ import annotations

from pathlib import Path

import psutil

_MB = 1024 * 1024
SMALLEST = 128 * _MB  # PostgreSQL's default
LARGEST = 2048 * _MB
# cgroup v2, then v1: in a container the machine's memory is not what this process may use.
_CGROUP_LIMITS = (
    Path("/sys/fs/cgroup/memory.max"),
    Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"),
)


def shared_buffers() -> str:
    """The embedded server's `shared_buffers`, e.g. '2048MB'."""
    return f"{shared_buffers_for(usable_memory()) // _MB}MB"


def shared_buffers_for(memory: int) -> int:
    """A quarter of `memory` (bytes), within 128MB and 2GB."""
    return min(max(memory // 4, SMALLEST), LARGEST)


def usable_memory() -> int:
    """The machine's memory, or its container's limit when lower."""
    memory = psutil.virtual_memory().total
    for limit in _CGROUP_LIMITS:
        try:
            memory = min(memory, int(limit.read_text().strip()))
        except (OSError, ValueError):  # no such cgroup, or "max": no limit
            continue
    return memory
