"""A client-side request rate limit shared by all threads: requests are spaced evenly so a
per-minute quota is filled exactly, without the bursts that draw 429s.

A limiter may hold several quotas at once (`quotas`, e.g. one per Vertex AI region, each its own):
a request takes the earliest free slot of any of them and is told which, so requests spread over
the quotas in proportion to what each allows. `share(tasks)` paces at 1/tasks of the rate, for N
tasks of one run that each get a share of the same quota (with no coordination between them)."""

from __future__ import annotations

import threading
import time

#: the share of the rate actually used. A quota counted over a sliding minute is exactly full at
#: 100 %: whether a minute's first request has left the window when the next minute's first one
#: arrives is then up to the jitter on the way, and about half of them draw a 429 (1 task at
#: rate = quota on the fake: 17 of 120). 1 % leaves 0.6 s of a minute between the two.
HEADROOM = 0.99


class RateLimiter:
    def __init__(self, per_minute: float, quotas: int = 1) -> None:
        if per_minute <= 0:
            raise ValueError("the rate limit must be positive")
        if quotas < 1:
            raise ValueError("a rate limiter needs at least one quota")
        self.per_minute = per_minute
        self.interval = 60.0 / (per_minute * HEADROOM)
        now = time.monotonic()
        self._next = [now] * quotas  # each quota's next free slot
        self._lock = threading.Lock()

    def share(self, tasks: float) -> None:
        """Pace at rate/tasks: this process is one of `tasks` sharing each quota (or, given
        total work / this task's work, takes the quota in proportion to its work)."""
        if tasks < 1:
            raise ValueError("the share of a quota must be at most all of it (tasks >= 1)")
        with self._lock:
            self.interval = 60.0 * tasks / (self.per_minute * HEADROOM)

    def acquire(self) -> int:
        """Wait for a slot; the index of the quota it was taken from."""
        with self._lock:
            now = time.monotonic()
            quota = min(range(len(self._next)), key=self._next.__getitem__)
            slot = max(now, self._next[quota])
            self._next[quota] = slot + self.interval
        if slot > now:
            time.sleep(slot - now)
        return quota
