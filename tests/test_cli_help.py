"""Every command's --help reads as a manual page: an example, and plain value names (TEXT,
INTEGER...) where typer would show Python types (<str>, <bool>, <list[str]>)."""

from __future__ import annotations

import re

import pytest

from tests.conftest import run_imgvec

COMMANDS = [
    ["list"], ["embed"], ["load"], ["index"], ["run"], ["search"], ["text-embed"], ["models"],
    ["psql"], ["db", "start"], ["db", "stop"], ["db", "status"], ["db", "url"], ["db", "upgrade"],
    ["db", "grant-reader"], ["db", "default-source"], ["diverse"], ["thumbnails"], ["serve"],
    ["status"],
]  # fmt: skip


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help_has_an_example_and_plain_type_names(command):
    page = run_imgvec(*command, "--help", env={"COLUMNS": "120"}).stdout
    assert "Example: " in page
    python_types = re.findall(r"<(?:str|int|bool|float|list\[[a-z]+\]|Path)>", page)
    assert not python_types, python_types


def test_every_command_is_covered():
    page = run_imgvec("--help", env={"COLUMNS": "120"}).stdout
    listed = set(re.findall(r"^│ ([a-z][a-z-]+) ", page, flags=re.M))
    assert listed - {"db"} == {c[0] for c in COMMANDS if len(c) == 1}


def test_a_backend_option_is_a_flag_under_its_backend_panel():
    page = run_imgvec("embed", "--help", env={"COLUMNS": "120"}).stdout
    vertex_panel = page[page.index("Vertex AI (--backend vertex)") :]
    assert re.search(r"--dimension\s+INTEGER\s+128, 256, 512 or 1408", vertex_panel), page
    assert re.search(r"--transport\s+rest\|grpc", vertex_panel), page
    clip_panel = page[page.index("CLIP (--backend clip)") : page.index("Vertex AI (")]
    assert re.search(r"--pretrained\s+TEXT", clip_panel), page


def test_an_unknown_backend_is_a_usage_error_with_a_close_match():
    result = run_imgvec("embed", "--backend", "clpi", check=False)
    assert result.returncode == 2, result.stderr
    assert "unknown backend 'clpi'" in result.stderr and "did you mean 'clip'?" in result.stderr


@pytest.mark.parametrize("args", [("--help",), ("models",)])
def test_a_reader_gone_is_exit_141_and_silent(args):
    """`imgvec models | head -1`: the reader closes the pipe. A silent exit 1 read as "failed"
    under `set -o pipefail`; a Unix tool ends as killed by SIGPIPE: 141 (128 + 13)."""
    import os
    import subprocess

    from tests.conftest import IMGVEC

    read_end, write_end = os.pipe()
    os.close(read_end)  # gone before the first write: every write is a broken pipe
    try:
        result = subprocess.run(
            [*IMGVEC, *args], stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=120
        )
    finally:
        os.close(write_end)
    assert result.returncode == 141 and result.stderr == "", result.stderr
