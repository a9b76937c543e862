"""What the app holds while it runs: the connection pool, and one backend per space.

A backend is cheap to build (`backend_for_space` loads nothing); its model loads on the first
request that needs a new vector (a text, an upload, /api/embeddings), once (the backend's own
lock), in a worker thread: the event loop never waits for torch."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field

import asyncpg
from fastapi import Request

from pipeline.core.space import EmbeddingSpace
from pipeline.embedding.backends.base import EmbeddingBackend
from pipeline.embedding.readers import ObjectReader
from pipeline.service.config import ServiceConfig
from pipeline.service.problems import Problem
from pipeline.workdir import WorkDir

POOL_SIZE = 16  # bench_serve's 16 concurrent clients each get a connection
WORK_DIRS_TTL = 30.0  # seconds: a load adding a work dir shows within this
# A part's location, e.g. /work/embeddings/<space slug>/part-00017.csv: its work dir is the rest.
_PART_SUFFIX = r"/embeddings/[^/]+/(shard-[0-9]+of[0-9]+-)?part-[0-9]+[.][a-z]+$"


@dataclass
class ServiceState:
    config: ServiceConfig
    pool: asyncpg.Pool
    #: the database role may not write imgvec's tables (`imgvec db grant-reader`)
    read_only: bool
    pgvector: str | None
    _backends: dict[str, EmbeddingBackend] = field(default_factory=dict)
    _spaces: dict[str, EmbeddingSpace] = field(default_factory=dict)
    _space_ids: dict[str, int] = field(default_factory=dict)
    _backends_lock: threading.Lock = field(default_factory=threading.Lock)
    _work_dirs: tuple[float, list[WorkDir]] | None = None
    _reader: ObjectReader | None = None

    @classmethod
    async def open(cls, config: ServiceConfig) -> ServiceState:
        """Check the database as every command does (server, pgvector, schema), then pool it."""
        from pipeline.db import open_database, pgvector_of, resolve_url
        from pipeline.db.connection import prepare_session

        async with open_database(config.settings) as conn:
            pgvector = (await pgvector_of(conn)).installed
            read_only = not await conn.fetchval(
                "SELECT has_table_privilege('objects', 'INSERT')"
                " AND has_table_privilege('runs', 'INSERT')"
            )
        chosen = config.default_backend
        if chosen is not None:
            # Its space, now and off the loop: a model whose size is unknown loads to tell it.
            await asyncio.to_thread(lambda: chosen.space)
        url = await resolve_url(config.settings)
        pool = await asyncpg.create_pool(
            url, min_size=1, max_size=POOL_SIZE, init=prepare_session, reset=_keep_session
        )
        return cls(config, pool, read_only, pgvector)

    async def close(self) -> None:
        await self.pool.close()

    async def space(self, conn, name: str | None) -> EmbeddingSpace:
        """The space a request names, or the server's default: the one the serve flags chose,
        else the database's default space. An unknown name is a 404 naming the spaces there are."""
        from pipeline.db.spaces import default_space, load_space

        if name is None and self.config.default_backend is not None:
            return self.config.default_backend.space
        if name is None:  # (the default may change: `imgvec db` can set another)
            default = await default_space(conn)
            if default is None:
                raise Problem(404, "no space is loaded yet: `imgvec run SOURCE` loads one")
            return default[1]
        if name not in self._spaces:  # a space's definition never changes: kept once found
            found = await load_space(conn, name)
            if found is None:
                names = await conn.fetch("SELECT name FROM embedding_spaces ORDER BY space_id")
                known = ", ".join(r["name"] for r in names) or "none is loaded yet"
                raise Problem(404, f"no space named {name!r} (spaces: {known})")
            self._spaces[name] = found[1]
        return self._spaces[name]

    async def space_id(self, conn, space: EmbeddingSpace) -> int | None:
        """The space's id in the database (kept once found: a search by a stored vector is then
        one round trip), None while nothing is loaded in it."""
        if space.name not in self._space_ids:
            found = await conn.fetchval(
                "SELECT space_id FROM embedding_spaces WHERE name = $1", space.name
            )
            if found is None:
                return None
            self._space_ids[space.name] = found
        return self._space_ids[space.name]

    def backend(self, space: EmbeddingSpace) -> EmbeddingBackend:
        """The backend of a space, built once; its model loads when it first embeds."""
        from pipeline.plugins import backend_for_space

        default = self.config.default_backend
        if default is not None and default.space == space:
            return default
        with self._backends_lock:
            if space.name not in self._backends:
                self._backends[space.name] = backend_for_space(space)
            return self._backends[space.name]

    def reader(self) -> ObjectReader:
        """Reads originals by their listed locators (thread-safe: one client per thread)."""
        if self._reader is None:
            self._reader = ObjectReader(s3_endpoint_url=self.config.settings.s3_endpoint_url)
        return self._reader

    def thumbnail_cache(self) -> WorkDir:
        """Where thumbnails made on demand are kept: the configured work dir."""
        return WorkDir(self.config.work_dir)

    async def work_dirs(self, conn) -> list[WorkDir]:
        """Where thumbnails may already be: the configured work dir, then every work dir a
        loaded part came from (re-read every WORK_DIRS_TTL seconds)."""
        now = time.monotonic()
        if self._work_dirs is not None and now - self._work_dirs[0] < WORK_DIRS_TTL:
            return self._work_dirs[1]
        rows = await conn.fetch(
            "SELECT DISTINCT regexp_replace(part, $1, '') AS work_dir FROM loaded_parts",
            _PART_SUFFIX,
        )
        specs = dict.fromkeys([self.config.work_dir, *sorted(r["work_dir"] for r in rows)])
        found = [WorkDir(spec) for spec in specs]
        self._work_dirs = (now, found)
        return found


async def _keep_session(conn: asyncpg.Connection) -> None:
    """What a connection needs between requests: nothing. Searches change no session state
    (a filtered one's ef_search is SET LOCAL, in its transaction, which asyncpg rolls back if
    left open; iterative scans are set for the session by prepare_session), so asyncpg's default reset (RESET ALL, CLOSE ALL, UNLISTEN, unlock) would only cost
    every request a round trip."""


async def service_state(request: Request) -> ServiceState:
    """The state of the app serving `request` (a FastAPI dependency: async, so that FastAPI
    does not hop to a worker thread to call it on every request)."""
    return request.app.state.service
