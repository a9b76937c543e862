"""Progress for long stages: a bar on a terminal, one JSON line per batch otherwise (for logs)."""

from __future__ import annotations

import json
import sys
import time


class Progress:
    def __init__(self, stage: str, unit: str, *, stream=None) -> None:
        self.stage = stage
        self.unit = unit
        self.stream = stream or sys.stderr
        self.count = 0
        self.started = time.monotonic()
        self._bar = None
        if self.stream.isatty():
            from tqdm import tqdm

            self._bar = tqdm(desc=stage, unit=f" {unit}", file=self.stream, dynamic_ncols=True)

    def advance(self, n: int, **fields) -> None:
        self.count += n
        if self._bar is not None:
            self._bar.update(n)
            if fields:
                self._bar.set_postfix(fields, refresh=False)
            return
        elapsed = max(time.monotonic() - self.started, 1e-9)
        record = {
            "stage": self.stage,
            self.unit: self.count,
            f"{self.unit}_per_s": round(self.count / elapsed, 1),
        }
        print(json.dumps(record | fields), file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
