"""How a command prints an answer (search's matches, diverse's picks): one line a row on stdout
— JSON lines with --json, else text under a header when a person reads them — and why there are
none on stderr, so that stdout stays the (empty) answer for scripts; the exit code stays 0."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

import typer


def echo_answer(
    rows: Sequence[Any],
    why_empty: str | None,
    *,
    as_json: bool,
    header: str,
    text: Callable[[Any], str],
) -> None:
    """`rows` (each with `as_dict()`) as JSON lines or as `text(row)` under `header`."""
    if rows and not as_json and sys.stdout.isatty():  # for people; scripts get bare rows
        typer.echo(header)
    for row in rows:
        typer.echo(json.dumps(row.as_dict(), ensure_ascii=False) if as_json else text(row))
    if why_empty:
        typer.echo(f"imgvec: {why_empty}", err=True)
