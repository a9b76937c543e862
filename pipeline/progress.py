"""Progress for long stages: a bar with total, rate and ETA on a terminal; for logs (no terminal),
one JSON line every few seconds and one at the end, which schedulers keep and people can grep.

`IMGVEC_PROGRESS_SECONDS` sets the interval of log lines (default 5).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator


def _interval() -> float:
    try:
        return max(0.0, float(os.environ.get("IMGVEC_PROGRESS_SECONDS", "5")))
    except ValueError:
        return 5.0


class Progress:
    def __init__(self, stage: str, unit: str, *, total: int | None = None, stream=None) -> None:
        self.stage = stage
        self.unit = unit
        self.total = total
        self.stream = stream or sys.stderr
        self.count = 0
        self.fields: dict = {}
        self.started = time.monotonic()
        self._interval = _interval()
        self._last_line = self.started
        self._bar = None
        if self.stream.isatty():
            from tqdm import tqdm

            self._bar = tqdm(
                desc=stage, unit=f" {unit}", total=total, file=self.stream, dynamic_ncols=True
            )

    def set_total(self, total: int) -> None:
        self.total = total
        if self._bar is not None:
            self._bar.total = total
            self._bar.refresh()

    def advance(self, n: int = 1, **fields) -> None:
        self.count += n
        self.fields |= fields
        if self._bar is not None:
            self._bar.update(n)
            if fields:
                self._bar.set_postfix(self.fields, refresh=False)
            return
        now = time.monotonic()
        if now - self._last_line >= self._interval:
            self._last_line = now
            self._log(now)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self.count:
            # The last line; "done" only if all was done (a stopped stage ends short of it).
            self._log(time.monotonic(), done=self.total is None or self.count >= self.total)

    def _log(self, now: float, done: bool = False) -> None:
        elapsed = max(now - self.started, 1e-9)
        rate = self.count / elapsed
        record: dict = {"stage": self.stage, self.unit: self.count}
        if self.total is not None:
            record["total"] = self.total
        record[f"{self.unit}_per_s"] = round(rate, 1)
        record["elapsed_s"] = round(elapsed, 1)
        if self.total is not None and rate > 0 and self.count < self.total:
            record["eta_s"] = round((self.total - self.count) / rate, 1)
        if done:
            record["done"] = True
        print(json.dumps(record | self.fields), file=self.stream, flush=True)


@contextlib.contextmanager
def step(what: str, *, stream=None) -> Iterator[None]:
    """A slow step with no count (loading a model): said when it starts and when it ends, so a
    pause of seconds never looks like a hang."""
    stream = stream or sys.stderr
    started = time.monotonic()
    if stream.isatty():
        print(f"{what} ...", end="", file=stream, flush=True)
    else:
        print(json.dumps({"step": what, "status": "started"}), file=stream, flush=True)
    try:
        yield
    except BaseException:
        if stream.isatty():
            print(" failed", file=stream, flush=True)
        else:
            print(json.dumps({"step": what, "status": "failed"}), file=stream, flush=True)
        raise
    seconds = round(time.monotonic() - started, 1)
    if stream.isatty():
        print(f" done in {seconds} s", file=stream, flush=True)
    else:
        print(
            json.dumps({"step": what, "status": "done", "seconds": seconds}),
            file=stream,
            flush=True,
        )
