"""`embeddings/<space>/space.json`: the space's definition beside its parts
(`pipeline.checkpoints.parts`), so the load stage can register the space in any database."""

from __future__ import annotations

import dataclasses
import json

from pipeline.core.space import EmbeddingSpace
from pipeline.workdir import WorkDir

SPACE_FILE = "space.json"


def space_folder(space: EmbeddingSpace) -> str:
    return f"embeddings/{space.slug}"


def write_space(work: WorkDir, space: EmbeddingSpace) -> None:
    """Publish the space's definition in its folder, so the load stage can register it anywhere."""
    relpath = f"{space_folder(space)}/{SPACE_FILE}"
    scratch = work.scratch_file(relpath)
    json.dump(dataclasses.asdict(space), scratch, indent=2)
    scratch.close()
    work.publish(scratch.name, relpath)


def read_space(work: WorkDir, folder: str) -> EmbeddingSpace:
    with work.open_text(f"{folder}/{SPACE_FILE}") as fh:
        return EmbeddingSpace(**json.load(fh))


def space_folders(sizes: dict[str, int]) -> dict[str, dict[str, int]]:
    """The space folders among a listing of `embeddings/` (path -> size), each with its files."""
    by_folder: dict[str, dict[str, int]] = {}
    for path, size in sizes.items():
        by_folder.setdefault(path.rsplit("/", 1)[0], {})[path] = size
    return {
        folder: files
        for folder, files in sorted(by_folder.items())
        if f"{folder}/{SPACE_FILE}" in files
    }
