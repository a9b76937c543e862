"""A quota storm: the Vertex fake answers 30 % 429, 5 % 503, with 50-800 ms latency, and refuses
everything (100 % 429) for a burst at the start. Every image must end embedded; the test reports
how much time was lost beyond the burst itself, against the same run on a calm service."""

from __future__ import annotations

import sys
import time

from tests.conftest import run_imgvec
from tests.fakes.vertex import FakeVertex, FakeVertexConfig
from tests.reliability.conftest import BURST_SECONDS, make_source, vertex_args
from tests.reliability.invariant import check_invariant

IMAGES = 60


async def test_quota_storm_every_image_ends_embedded(tmp_path, new_database):
    make_source(tmp_path / "images", IMAGES)
    timings = {}
    for label, config in (
        ("calm", FakeVertexConfig(latency=(0.05, 0.8))),
        ("storm", FakeVertexConfig(latency=(0.05, 0.8), rate_429=0.30, rate_503=0.05)),
    ):
        url = await new_database()
        work = tmp_path / f"work-{label}"
        fake = FakeVertex(config)
        try:
            if label == "storm":
                fake.config.burst_429_until = time.monotonic() + BURST_SECONDS
            started = time.monotonic()
            out = run_imgvec(
                "run",
                str(tmp_path / "images"),
                "--work-dir",
                str(work),
                *vertex_args(fake),
                env={"DATABASE_URL": url},
                timeout=600,
            )
            timings[label] = time.monotonic() - started
        finally:
            fake.stop()
        assert f"{IMAGES} embedded, 0 failed" in out.stdout, out.stdout
        assert await check_invariant(url, work) == {"embedded": IMAGES}
        if label == "storm":
            refused = fake.stats["429"] + fake.stats["503"]
            assert fake.stats["ok"] == IMAGES and refused > 0
    lost = timings["storm"] - timings["calm"] - BURST_SECONDS
    print(
        f"\nquota storm, {IMAGES} images: calm {timings['calm']:.1f} s, storm {timings['storm']:.1f} s "
        f"({BURST_SECONDS:.0f} s of 100 % 429, then 30 % 429 + 5 % 503): {lost:.1f} s lost beyond the burst, "
        f"{refused} refusals",
        file=sys.stderr,
    )
