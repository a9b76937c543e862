"""Progress a user can trust: per image, with a total, a rate and an ETA, on a terminal (a bar)
and in logs (one JSON line every few seconds); the model load is a step of its own."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import termios

import pytest

from tests.conftest import IMGVEC, run_imgvec
from tests.images import encode, photo, write_images

pytest.importorskip("open_clip")

N = 20


@pytest.fixture
def listed(tmp_path, fresh_url):
    write_images(tmp_path / "images", {f"{i:02d}.png": encode(photo(i), "PNG") for i in range(N)})
    env = {"DATABASE_URL": fresh_url}
    run_imgvec("list", str(tmp_path / "images"), "--work-dir", str(tmp_path / "work"), env=env)
    return tmp_path / "work", env


def test_log_lines_count_images_with_total_rate_and_eta(listed):
    work, env = listed
    result = run_imgvec(
        "embed", "--work-dir", str(work), "--pretrained", "none", "--batch-size", "4",
        "--part-size", "256", env=env | {"IMGVEC_PROGRESS_SECONDS": "0"},
    )  # fmt: skip
    records = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    # (an "exporting ..." step comes first when the session's model cache is still cold)
    steps = [r for r in records if r.get("step", "").startswith("loading")]
    assert [s["status"] for s in steps] == ["started", "done"]
    assert "loading CLIP ViT-B-32" in steps[0]["step"] and steps[1]["seconds"] > 0
    embed = [r for r in records if r.get("stage") == "embed"]
    # Per image (before: one line per 256-image part, no total, no ETA).
    assert [r["images"] for r in embed[:-1]] == list(range(1, N + 1))[: len(embed) - 1]
    assert len(embed) >= N and embed[-1]["images"] == N and embed[-1]["done"]
    assert all(r["total"] == N for r in embed)
    assert all("eta_s" in r and r["images_per_s"] > 0 for r in embed if r["images"] < N)
    assert not any(r.get("done") for r in embed[:-1])


def test_log_lines_are_spaced_by_the_interval(listed):
    work, env = listed
    result = run_imgvec(
        "embed", "--work-dir", str(work), "--pretrained", "none", "--batch-size", "4",
        env=env | {"IMGVEC_PROGRESS_SECONDS": "3600"},
    )  # fmt: skip
    embed = [line for line in result.stderr.splitlines() if '"stage": "embed"' in line]
    assert len(embed) == 1 and '"done": true' in embed[0]  # only the closing line


def test_terminal_shows_a_bar_with_the_total(listed):
    work, env = listed
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))  # 100 columns
    proc = subprocess.Popen(
        [*IMGVEC, "embed", "--work-dir", str(work), "--pretrained", "none", "--batch-size", "4"],
        env=dict(os.environ) | env | {"COLUMNS": "100"},
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
    )
    os.close(terminal)
    screen = b""
    while True:
        try:
            chunk = os.read(controller, 4096)
        except OSError:  # the process closed the terminal
            break
        if not chunk:
            break
        screen += chunk
    proc.wait(timeout=120)
    text = screen.decode(errors="replace")
    assert proc.returncode == 0, text
    assert f"{N}/{N}" in text, text  # tqdm's "done/total"
    assert re.search(
        r"loading CLIP ViT-B-32 \(none-seed0\) image tower on openvino \(fp32\) \.\.\. done in [\d.]+ s",
        text,
    )
