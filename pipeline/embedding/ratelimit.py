"""A client-side request rate limit shared by all threads: requests are spaced evenly so a
per-minute quota is filled exactly, without the bursts that draw 429s."""

from __future__ import annotations

import threading
import time


class RateLimiter:
    def __init__(self, per_minute: float) -> None:
        if per_minute <= 0:
            raise ValueError("the rate limit must be positive")
        self.interval = 60.0 / per_minute
        self._next = time.monotonic()
        self._lock = threading.Lock()

    def acquire(self) -> None:
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next)
            self._next = slot + self.interval
        if slot > now:
            time.sleep(slot - now)
