"""Test datasets written on the spot with pyarrow: a Parquet file of images and labels, and a
folder laid out as Hugging Face `datasets`' `save_to_disk` writes it (no `datasets` needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tests.images import encode, photo

#: bytes that are no image at all: the list stage skips the row as "not an image"
NOT_AN_IMAGE = b"just some text, no image"
#: bytes that look like a PNG but are not one: listed as an image, fails when embedded
BROKEN_PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 40


def image_rows(count: int, seed: int = 0) -> dict[str, list]:
    """`count` rows: distinct JPEG or PNG photos, a `label` (int) and a `split` (str)."""
    images = [encode(photo(seed + i), "PNG" if i % 3 == 0 else "JPEG") for i in range(count)]
    return {
        "image": images,
        "label": [i % 4 for i in range(count)],
        "split": ["train" if i % 5 else "test" for i in range(count)],
    }


def write_parquet(path: Path, rows: dict[str, list], *, row_group_size: int = 5) -> Path:
    """A Parquet file of those columns, in small row groups (so reads cross them)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(rows), path, row_group_size=row_group_size)
    return path


def write_save_to_disk(folder: Path, rows: dict[str, list], *, files: int = 2) -> Path:
    """A `save_to_disk` folder: `state.json`, `dataset_info.json` and `data-*.arrow` files in Arrow
    IPC stream format, the image column a struct {bytes, path} as an `Image()` feature is stored."""
    folder.mkdir(parents=True, exist_ok=True)
    count = len(rows["image"])
    images = pa.array(
        [{"bytes": data, "path": f"img{i}.jpg"} for i, data in enumerate(rows["image"])],
        pa.struct([("bytes", pa.binary()), ("path", pa.string())]),
    )
    table = pa.table({**rows, "image": images})
    share = -(-count // files)
    names = [f"data-{i:05d}-of-{files:05d}.arrow" for i in range(files)]
    for i, name in enumerate(names):
        with pa.ipc.new_stream(folder / name, table.schema) as writer:
            # Batches of 2 rows: the reader moves forward through several per file.
            for batch in table.slice(i * share, share).to_batches(max_chunksize=2):
                writer.write_batch(batch)
    (folder / "state.json").write_text(
        json.dumps({"_data_files": [{"filename": n} for n in names], "_split": "train"})
    )
    features = {"image": {"_type": "Image"}, "label": {"dtype": "int64", "_type": "Value"}}
    (folder / "dataset_info.json").write_text(json.dumps({"features": features}))
    return folder
