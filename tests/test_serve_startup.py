"""`imgvec serve` that cannot start fails as every other command does: one `imgvec: error:` line
and a hint, the usual exit code, no uvicorn traceback, and no banner saying it serves."""

from __future__ import annotations

import socket

from tests.conftest import free_port, run_imgvec

BANNER = "imgvec serve: http"
PASSWORD = "s3cretPw-serve"


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("imgvec: error:")]


def test_an_unreachable_database_is_one_line_and_exit_75(tmp_path):
    closed = free_port()  # nothing listens there: connection refused
    url = f"postgresql://someone:{PASSWORD}@127.0.0.1:{closed}/imgvec"
    result = run_imgvec(
        "serve", "--port", str(free_port()), "--work-dir", str(tmp_path / "work"),
        env={"DATABASE_URL": url}, check=False, timeout=90,
    )  # fmt: skip
    assert result.returncode == 75, result.stderr
    [error] = error_lines(result.stderr)
    assert f"127.0.0.1:{closed}" in error, result.stderr
    assert "imgvec: hint:" in result.stderr
    assert "Traceback" not in result.stderr and "startup failed" not in result.stderr
    assert BANNER not in result.stderr, result.stderr
    assert PASSWORD not in result.stderr + result.stdout


def test_a_port_in_use_is_one_line_naming_the_address(fresh_url, tmp_path):
    with socket.socket() as taken:  # another server, on the port serve is asked for
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_imgvec(
            "serve", "--port", str(port), "--work-dir", str(tmp_path / "work"),
            env={"DATABASE_URL": fresh_url}, check=False, timeout=90,
        )  # fmt: skip
    assert result.returncode == 1, result.stderr  # ConfigError: the port asked for is taken
    [error] = error_lines(result.stderr)
    assert f"127.0.0.1:{port}" in error and "in use" in error, result.stderr
    assert "imgvec: hint:" in result.stderr and "--port" in result.stderr
    assert "Traceback" not in result.stderr and "Errno" not in result.stderr
    assert BANNER not in result.stderr, result.stderr
