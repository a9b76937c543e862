"""`make demo` (pipeline/demo.py): its own database, and commands that can be pasted."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.db import connect
from tests.conftest import drop_database

pytest.importorskip("open_clip")

ROOT = Path(__file__).resolve().parents[1]


async def test_the_demo_keeps_to_its_own_database_and_prints_pasteable_commands(
    tmp_path, server_url, fresh_url
):
    env = dict(os.environ) | {"DATABASE_URL": fresh_url}  # a user's database: the demo ignores it
    try:
        demo = subprocess.run(
            [sys.executable, "-m", "pipeline.demo", "--pretrained", "none"]
            + ["--folder", str(tmp_path / "demo images"), "--work-dir", str(tmp_path / "work")],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert demo.returncode == 0, demo.stderr
        demo_url = server_url.replace("/imgvec?", "/imgvec_demo?")
        conn = await connect(demo_url)
        try:
            names = {r[0] for r in await conn.fetch("SELECT image_id FROM image_embeddings")}
        finally:
            await conn.close()
        assert len(names) == 16 and "red-circle.png" in names
        user = await connect(fresh_url)
        try:
            assert await user.fetchval("SELECT to_regclass('objects')") is None  # untouched
        finally:
            await user.close()

        # The psql command, pasted into a shell as printed, gives the demo's answer.
        [line] = [
            line for line in demo.stdout.splitlines() if line.startswith("$ ") and " psql " in line
        ]
        assert shlex.split(line[2:])[:3] == [
            "IMGVEC_DATABASE_NAME=imgvec_demo",
            ".venv/bin/imgvec",
            "psql",
        ]
        pasted = subprocess.run(
            ["bash", "-c", line[2:]],
            cwd=ROOT,
            env={k: v for k, v in env.items() if k != "DATABASE_URL"},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert pasted.returncode == 0, pasted.stderr
        nearest = [row.split("|")[0].strip() for row in pasted.stdout.splitlines() if "|" in row]
        assert len(nearest) == 6 and set(nearest[1:]) <= names  # header + 5 images
    finally:
        await drop_database(server_url, "imgvec_demo")
