"""Shards of one Vertex AI run share the project's quota: N backends (the N tasks of a run, each
its own limiter and clients, as separate processes would have) that each call `share_quota(N)`
at `--rate-limit` = the quota together stay within it; several `--location`s spread the requests
over the regions, each within its own quota; the space does not depend on the regions.

The fake here counts its quota per region over a sliding window of a few seconds, a minute
scaled down so that a test fills several windows in seconds."""

from __future__ import annotations

import re
import threading
import time
from collections import Counter, defaultdict, deque

import pytest

from pipeline.embedding.backends.base import ImageItem
from pipeline.embedding.backends.vertex import VertexBackend
from pipeline.embedding.backends.vertex_requests import VertexImage
from pipeline.embedding.ratelimit import HEADROOM, RateLimiter
from pipeline.errors import ItemFailure, UsageError
from tests.fakes.vertex import FakeVertex, FakeVertexConfig
from tests.images import encode, photo

# seconds: the fake's "minute". The limiter's 1 % headroom is the margin between a window's first
# request leaving it and the next window's first arriving: 600 ms on a real minute, 100 ms here.
# At 5 s (50 ms; ~47 ms measured on a quiet machine) one hiccup of a loaded CI machine drew a 429.
WINDOW = 10.0
_LOCATION = re.compile(r"/locations/([^/]+)/")


class RegionalQuotaFake(FakeVertex):
    """The Vertex fake with a quota per region: `quota` requests per sliding `window` seconds."""

    def __init__(self, quota: int, window: float = WINDOW) -> None:
        super().__init__(FakeVertexConfig(latency=(0.001, 0.01)))
        self.quota, self.window = quota, window
        self._recent: dict[str, deque[float]] = defaultdict(deque)
        self.accepted: Counter = Counter()  # region -> requests within its quota
        self.refused: Counter = Counter()  # region -> 429s

    def handle(self, path: str, body: bytes) -> tuple[int, dict]:
        match = _LOCATION.search(path)
        region = match.group(1) if match else "?"
        with self._lock:
            now = time.monotonic()
            recent = self._recent[region]
            while recent and now - recent[0] > self.window:
                recent.popleft()
            if len(recent) >= self.quota:
                self.refused[region] += 1
                return self._refuse(429)
            recent.append(now)
            self.accepted[region] += 1
        return super().handle(path, body)


def per_minute(quota: int, window: float = WINDOW) -> float:
    """`--rate-limit` for a quota of `quota` requests per `window` seconds."""
    return quota * 60 / window


def backend(fake: FakeVertex, rate_limit: float, location: str = "us-central1") -> VertexBackend:
    options = VertexBackend.Options(
        project="quota",
        dimension=128,
        api_endpoint=fake.endpoint,
        rate_limit=rate_limit,
        location=location,
    )
    return VertexBackend(options, backoff=0.05)  # a 429 costs little time: they are counted


IMAGE = VertexImage("image/png", data=encode(photo(1, size=(8, 8)), "PNG"))


def run_tasks(backends: list[VertexBackend], images_each: int) -> None:
    """Each backend embeds its own images in its own thread, all at once. Every image must end
    embedded."""
    failures: list[object] = []

    def task(model: VertexBackend, index: int) -> None:
        items = (ImageItem(f"task{index}/{i}", source=IMAGE) for i in range(images_each))
        failures.extend(r for _, r in model.embed_stream(items) if isinstance(r, ItemFailure))

    threads = [threading.Thread(target=task, args=(b, i)) for i, b in enumerate(backends)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures


def busy(fake: FakeVertex) -> float:
    """Seconds from the first request answered to the last (not the clients' start-up)."""
    return max(fake.success_times) - min(fake.success_times)


@pytest.mark.parametrize("tasks", [1, 2, 4])
def test_tasks_sharing_the_quota_at_rate_equal_quota_see_no_429(tasks):
    quota = 40  # per window: 8 requests/s
    fake = RegionalQuotaFake(quota)
    try:
        backends = [backend(fake, per_minute(quota)) for _ in range(tasks)]
        for model in backends:
            model.share_quota(tasks)
        images = 3 * quota // 2  # past one window: where a quota overflows
        run_tasks(backends, images // tasks)
    finally:
        fake.stop()
    assert fake.refused == {} and fake.accepted == {"us-central1": images}
    # ... and together they fill it: 1.5 windows' worth takes about 1.5 windows.
    assert busy(fake) < 1.5 * WINDOW * 1.1, busy(fake)


def test_tasks_that_do_not_share_the_quota_draw_429s_and_still_finish():
    """What the test above would see without `share_quota`: it can tell."""
    quota, tasks = 40, 4
    fake = RegionalQuotaFake(quota)
    try:
        backends = [backend(fake, per_minute(quota)) for _ in range(tasks)]
        run_tasks(backends, 2 * quota // tasks)
    finally:
        fake.stop()
    assert fake.refused["us-central1"] > 0 and fake.accepted == {"us-central1": 2 * quota}


def test_several_locations_share_the_requests_each_within_its_own_quota():
    quota, tasks, regions = 20, 2, ["us-central1", "europe-west4"]
    fake = RegionalQuotaFake(quota)
    try:
        backends = [backend(fake, per_minute(quota), location=" , ".join(regions))]
        backends.append(backend(fake, per_minute(quota), location=",".join(regions)))
        for model in backends:
            model.share_quota(tasks)
        images = len(regions) * 3 * quota // 2
        run_tasks(backends, images // tasks)
    finally:
        fake.stop()
    assert fake.refused == {}
    assert set(fake.accepted) == set(regions) and sum(fake.accepted.values()) == images
    assert min(fake.accepted.values()) >= images / len(regions) - tasks, fake.accepted
    # Two regions' quotas: twice one region's throughput.
    assert busy(fake) < 1.5 * WINDOW * 1.1, busy(fake)


def test_the_space_and_its_flags_do_not_depend_on_the_regions():
    fake = FakeVertex()
    try:
        one = backend(fake, 600)
        several = backend(fake, 600, location="europe-west4,us-central1,asia-northeast1")
    finally:
        fake.stop()
    assert several.space == one.space and several.space.name == one.space.name
    assert VertexBackend.options_for_space(several.space) == "--backend vertex --dimension 128"


@pytest.mark.parametrize(
    "location, problem",
    [
        ("us-central1,,europe-west4", "not a region"),
        ("us-central1,us-central1", "a region is named twice"),
        ("evil.example.com/x", "not a region"),
    ],
)
def test_a_bad_location_is_a_usage_error_naming_the_flag(location, problem):
    with pytest.raises(UsageError, match=f"--location: {problem}"):
        VertexBackend.from_options(project="quota", location=location)


def test_a_task_may_take_the_quota_in_proportion_to_its_share():
    """`share_quota(total / own)`: a task with 40 % of the objects paces at 40 % of the quota."""
    limiter = RateLimiter(600)
    limiter.share(100 / 40)
    assert limiter.interval == pytest.approx(60 / (600 * 0.4 * HEADROOM))
    with pytest.raises(ValueError, match="at most all of it"):
        limiter.share(0.5)
