"""Ctrl-C and SIGTERM: the first asks the running stage to stop, the second stops at once.

Cloud Run, Kubernetes and Slurm send SIGTERM some seconds before they kill a task; people press
Ctrl-C. Either way the first signal must not throw away finished work nor wait for unfinished
work: a stage that knows how to stop (`graceful()`) stops taking new work, publishes what it has
finished, records its run as `interrupted` with its counts, and the process exits 130 (SIGINT) or
143 (SIGTERM). Elsewhere the first signal raises KeyboardInterrupt as usual. A second signal ends
the process on the spot.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import Future

from pipeline.errors import ImgvecError

_stop = threading.Event()
_received: list[int] = []
_graceful = 0  # how many graceful() blocks are open


class Interrupted(ImgvecError):
    """The run stopped because a signal asked it to; rerunning the same command resumes."""

    def __init__(self, message: str, hint: str = "rerun the same command to resume") -> None:
        super().__init__(message, hint=hint)
        self.exit_code = exit_code()


def install() -> None:
    """Route SIGINT and SIGTERM through `_handle` (the CLI calls this once, at start)."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _handle)


def requested() -> bool:
    return _stop.is_set()


def exit_code() -> int:
    """130 after SIGINT, 143 after SIGTERM: what shells and schedulers expect."""
    return 128 + (_received[0] if _received else signal.SIGINT)


def describe() -> str:
    return f"stopped by {signal.Signals(_received[0]).name}" if _received else "stopped"


def check() -> None:
    """Raise Interrupted if a stop was asked for."""
    if _stop.is_set():
        raise Interrupted(describe())


def result(future: Future, poll: float = 0.1):
    """`future.result()`, but give up waiting as soon as a stop is asked for."""
    while True:
        check()
        try:
            return future.result(timeout=poll)
        except TimeoutError:
            continue


@contextlib.contextmanager
def graceful() -> Iterator[None]:
    """Within this block, a first signal only sets the flag: the code polls it (`check`,
    `requested`, `result`) and winds down itself."""
    global _graceful
    _graceful += 1
    try:
        yield
    finally:
        _graceful -= 1


def _handle(signum: int, frame) -> None:
    if _stop.is_set():
        # Second signal: the user means it. Nothing to flush that a rerun would miss.
        os._exit(128 + signum)
    _received.append(signum)
    _stop.set()
    name = signal.Signals(signum).name
    if _graceful:
        print(
            f"imgvec: {name}: finishing what is done and stopping (again to stop at once)",
            file=sys.stderr,
            flush=True,
        )
        return
    raise KeyboardInterrupt
