"""`POST /api/runs`, `GET /api/runs/{id}`, `GET /api/runs`: `imgvec run` of a source the server
was started with (`--source`, never a path from the request) as a background job, its progress,
and the history of the runs table.

A job is `pipeline.runner.run_source` in a thread with its own event loop, as `imgvec run` runs
it: the listing hashes files synchronously and the embed stage drives the model, none of which may
block the server's loop. One job runs at a time: the server's runs share its work dir, whose
latest manifest the embed stage reads, so a run of another source waits ("queued") and a second
run of the same source is refused (409). Jobs live in memory; their stages in the runs table.

Stopping: uvicorn, once shut down, re-raises the Ctrl-C / SIGTERM it caught to the handler of
`pipeline.interrupt`: the embed stage publishes what it has and closes its run as `interrupted`
(a listing or load under way ends first), and the job task, cancelled as the loop closes, waits.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field

from pipeline import interrupt
from pipeline.core.objects import ObjectInfo
from pipeline.db.runs import safe_error
from pipeline.embedding.backends.base import EmbeddingBackend
from pipeline.errors import ImgvecError
from pipeline.service.config import ServiceConfig
from pipeline.service.problems import Problem
from pipeline.service.state import ServiceState, service_state
from pipeline.sources import Source, SourceOptions, open_source

log = logging.getLogger("imgvec.serve")
router = APIRouter(prefix="/api/runs", tags=["runs"])

# The stage that starts when one ends (run_source's order); None: the run is over.
NEXT_STAGE = {"list": "embed", "embed": "load", "load": "texts", "texts": None}
GOING = ("queued", "running")
HIDDEN = ("force", "locators", "task")  # a job's fields GET /api/runs/{id} does not show
KEEP_FINISHED = 100  # finished jobs kept in memory for GET /api/runs/{id}; the table keeps all


class RunRequest(BaseModel):
    source: str = Field(description="one of the sources the server was started with (--source)")
    force: bool = Field(False, description="re-embed what is embedded already (embed --force)")
    locators: list[str] = Field(
        default_factory=list, max_length=10_000, description="only these objects of the source"
    )


@dataclass
class RunJob:
    """One `POST /api/runs`: its state as `GET /api/runs/{id}` shows it. Written by the job's
    thread (plain attribute updates), read by requests."""

    id: str
    source: str
    force: bool
    locators: frozenset[str]
    state: str = "queued"
    stage: str | None = None
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    run_ids: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    task: asyncio.Task | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"/api/runs/{self.id}"

    def as_dict(self) -> dict[str, Any]:
        # Copies made while holding the GIL: the job's thread may add a stage meanwhile.
        shown = {name: value for name, value in vars(self).items() if name not in HIDDEN}
        return shown | {"counts": dict(self.counts), "run_ids": dict(self.run_ids)}

    def stage_ended(self, stage: str, result: Any, listed: Source | None) -> None:
        """run_source's `on_stage`: the stage's counts, and the next stage is under way."""
        counts = {"embedded": len(result)} if stage == "texts" else dict(result.counts)
        if stage == "list" and isinstance(listed, _OnlyLocators):
            counts["not_listed"] = listed.not_listed
        if stage != "texts":
            self.run_ids[stage] = result.run_id
        self.counts[stage] = counts
        self.stage = NEXT_STAGE[stage]

    def end(self, error: BaseException | None, failed_images: int = 0) -> None:
        if error is None:
            self.state = "partial" if failed_images else "succeeded"
        elif isinstance(error, KeyboardInterrupt | asyncio.CancelledError | interrupt.Interrupted):
            self.state, self.error = "interrupted", safe_error(error)
        else:
            self.state, self.error = "failed", safe_error(error)
        self.finished_at = datetime.now(UTC)
        unexpected = self.state == "failed" and not isinstance(error, ImgvecError)
        said = f"{self.state}: {self.error}" if self.error else self.state
        log.info(
            "run %s of %s %s", self.id, self.source, said, exc_info=error if unexpected else None
        )


@dataclass
class RunJobs:
    """The server's jobs, and the lock that runs them one at a time."""

    jobs: dict[str, RunJob] = field(default_factory=dict)
    one_at_a_time: asyncio.Lock = field(default_factory=asyncio.Lock)

    def going(self, source: str) -> RunJob | None:
        return next(
            (j for j in self.jobs.values() if j.source == source and j.state in GOING), None
        )

    def add(self, job: RunJob) -> None:
        finished = [j.id for j in self.jobs.values() if j.state not in GOING]
        for old in finished[: max(0, len(finished) - KEEP_FINISHED + 1)]:
            del self.jobs[old]
        self.jobs[job.id] = job


def run_jobs(request: Request) -> RunJobs:
    """The app's jobs (a FastAPI dependency), made on first use."""
    app_state = request.app.state
    if getattr(app_state, "run_jobs", None) is None:
        app_state.run_jobs = RunJobs()
    return app_state.run_jobs


State = Annotated[ServiceState, Depends(service_state)]
Jobs = Annotated[RunJobs, Depends(run_jobs)]


@router.post("", status_code=202, summary="Start an incremental run of a configured source")
async def start_run(
    body: RunRequest,
    response: Response,
    state: State,
    jobs: Jobs,
) -> dict[str, Any]:
    if state.read_only:
        raise Problem(
            403,
            "this server's database role may not write imgvec's tables (a read-only role, "
            "`imgvec db grant-reader`): runs need the role that loads",
        )
    source = configured_source(state.config, body.source)
    backend = await _backend(state)
    going = jobs.going(source)
    if going is not None:
        raise Problem(409, f"a run of {source} is already {going.state}: {going.url}")
    job = RunJob(uuid.uuid4().hex[:12], source, body.force, frozenset(body.locators))
    jobs.add(job)
    job.task = asyncio.create_task(_run(job, state.config, backend, jobs.one_at_a_time))
    response.headers["Location"] = job.url
    return {"id": job.id, "source": job.source, "state": job.state, "url": job.url}


@router.get("/{run_id}", summary="A run's progress: its state, stage and counts per stage")
async def run_progress(run_id: str, jobs: Jobs) -> dict[str, Any]:
    job = jobs.jobs.get(run_id)
    if job is None:
        detail = f"no run {run_id!r} since the server started (all runs: GET /api/runs)"
        raise Problem(404, detail)
    return job.as_dict()


@router.get("", summary="Run history: the runs table, one row per stage run, newest first")
async def run_history(
    state: State, limit: Annotated[int, Query(ge=1, le=1000)] = 20
) -> dict[str, Any]:
    async with state.pool.acquire() as conn:
        rows = await conn.fetch(
            """
            SELECT r.run_id, r.stage, r.source, s.name AS space, r.status, r.counts, r.error,
                   r.started_at, r.finished_at, r.exit_code, r.sharded_run, r.shard
            FROM runs r LEFT JOIN embedding_spaces s USING (space_id)
            ORDER BY r.started_at DESC, r.run_id DESC
            LIMIT $1
            """,
            limit,
        )
    # (jsonb arrives as text: the pool has no json codec)
    return {"runs": [dict(row) | {"counts": json.loads(row["counts"])} for row in rows]}


def configured_source(config: ServiceConfig, requested: str) -> str:
    """The configured source the request names, by its spec or its root (`./pics` and
    `file:///abs/pics/` alike). Only configured specs are ever opened: the request's text is
    compared, never used as a path."""
    from pipeline.listing.registry import normalise_source

    for spec in config.sources:
        if requested in (spec, normalise_source(spec)):
            return spec
    configured = ", ".join(config.sources) or "none (start `imgvec serve` with --source SOURCE)"
    raise Problem(404, f"no source {requested!r} is configured; the server runs: {configured}")


async def _backend(state: ServiceState) -> EmbeddingBackend:
    """The backend the serve flags chose, else the database's default space's."""
    if state.config.default_backend is not None:
        return state.config.default_backend
    async with state.pool.acquire() as conn:
        try:
            space = await state.space(conn, None)
        except Problem:
            detail = "no space yet: start `imgvec serve` with backend options to choose one"
            raise Problem(400, detail) from None
    return state.backend(space)


async def _run(
    job: RunJob, config: ServiceConfig, backend: EmbeddingBackend, lock: asyncio.Lock
) -> None:
    async with lock:
        job.state, job.stage, job.started_at = "running", "list", datetime.now(UTC)
        work = asyncio.ensure_future(asyncio.to_thread(_run_in_thread, job, config, backend))
        try:
            await asyncio.shield(work)
        except asyncio.CancelledError:
            # The server is closing: its stop signal winds the run down (see the module's doc);
            # what it finished stays, and its runs rows are closed.
            await work
            raise


def _run_in_thread(job: RunJob, config: ServiceConfig, backend: EmbeddingBackend) -> None:
    from pipeline.runner import run_source

    settings = config.settings
    listed: Source | None = None
    try:
        if job.locators:
            options = SourceOptions(
                timeout=settings.storage_timeout, endpoint_url=settings.s3_endpoint_url
            )
            listed = _only_locators(open_source(job.source, options), job.locators)
        result = asyncio.run(
            run_source(
                settings,
                job.source,
                backend,
                work_dir=config.work_dir,
                list_options={"source": listed},
                embed_options={"force": job.force},
                on_stage=lambda stage, result: job.stage_ended(stage, result, listed),
            )
        )
    except BaseException as err:
        job.end(err)
    else:
        job.end(None, failed_images=result.embedding.counts["failed"])


class _OnlyLocators(Source):
    """A configured source's own listing kept to some of its locators: only objects the source
    itself lists are ever considered (a requested locator it does not list is counted, never
    opened), and as the listing is not complete, nothing missing from it is marked deleted."""

    complete_listing = False

    def __init__(self, listed: Source, locators: frozenset[str]) -> None:
        super().__init__(listed.spec, listed.options)
        self.listed = listed
        self.locators = locators
        self.not_listed = len(locators)

    def root(self) -> str:
        return self.listed.root()

    def list(self) -> Iterator[ObjectInfo]:
        found = 0
        for obj in self.listed.list():
            if obj.locator in self.locators:
                found += 1
                yield obj
        self.not_listed = len(self.locators) - found

    def read(self, locator: str, *, max_bytes: int, size: int | None = None) -> bytes:
        return self.listed.read(locator, max_bytes=max_bytes, size=size)


def _only_locators(listed: Source, locators: frozenset[str]) -> Source:
    # `scheme` (the sources table's kind) and `names_may_clash` are class attributes: a subclass
    # carries the listed source's.
    kind = type(
        f"OnlyLocators_{listed.scheme}",
        (_OnlyLocators,),
        {"scheme": listed.scheme, "names_may_clash": listed.names_may_clash},
    )
    return kind(listed, locators)
