"""The parquet:// source: a Parquet file, a folder of them and a `save_to_disk` folder, listed,
embedded (CLIP, untrained weights) and loaded, their columns becoming the objects' attributes."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.core.objects import sniff_content_type
from pipeline.db import connect
from pipeline.errors import PermanentError
from pipeline.sources.base import SourceOptions
from pipeline.sources.parquet import ParquetSource
from tests.conftest import run_imgvec
from tests.datasets import (
    BROKEN_PNG,
    NOT_AN_IMAGE,
    image_rows,
    write_parquet,
    write_save_to_disk,
)
from tests.images import encode, photo

EMBED = ("--pretrained", "none")


def listed(spec: str) -> list:
    return list(ParquetSource(spec, SourceOptions()).list())


async def objects_attributes(url: str) -> dict[str, dict]:
    conn = await connect(url)
    try:
        rows = await conn.fetch("SELECT name, attributes FROM objects")
    finally:
        await conn.close()
    return {r["name"]: json.loads(r["attributes"]) for r in rows}


def run_stages(spec: str, work: str, env: dict) -> tuple[str, str]:
    """list, embed and load: (the list stage's output, the embed stage's)."""
    listing = run_imgvec("list", spec, "--work-dir", work, env=env).stdout
    embedding = run_imgvec("embed", "--work-dir", work, *EMBED, env=env, check=False)
    assert embedding.returncode in (0, 3), embedding.stderr  # (3: some images failed)
    run_imgvec("load", "--work-dir", work, env=env)
    return listing, embedding.stdout


async def test_a_parquet_file_through_every_stage(tmp_path, fresh_url):
    rows = image_rows(12)
    rows["image"][4] = NOT_AN_IMAGE  # skipped by the listing: no image type
    rows["image"][7] = BROKEN_PNG  # an image by its magic: fails when embedded, the run goes on
    data = write_parquet(tmp_path / "data.parquet", rows)
    env = {"DATABASE_URL": fresh_url}
    work = str(tmp_path / "work")

    listing, embedding = run_stages(f"parquet://{data}", work, env)
    assert "12 objects: 11 new" in listing and "1 skipped" in listing
    assert "10 embedded, 1 failed" in embedding

    attributes = await objects_attributes(fresh_url)
    assert attributes["data/0"] == {"label": 0, "split": "test"}
    assert attributes["data/11"] == {"label": 3, "split": "train"}

    # A rerun lists the same locators (the rows, by number) and embeds nothing.
    run_imgvec("list", f"parquet://{data}", "--work-dir", work, env=env)
    rerun = run_imgvec("embed", "--work-dir", work, *EMBED, env=env, check=False)
    assert " 0 embedded" in rerun.stdout and "1 known failures skipped" in rerun.stdout


async def test_a_save_to_disk_folder_through_every_stage(tmp_path, fresh_url):
    folder = write_save_to_disk(tmp_path / "hf" / "train", image_rows(7, seed=100))
    env = {"DATABASE_URL": fresh_url}
    listing, embedding = run_stages(f"parquet://{folder.parent}/", str(tmp_path / "work"), env)
    assert "7 objects: 7 new" in listing and "7 embedded, 0 failed" in embedding
    attributes = await objects_attributes(fresh_url)
    assert attributes["train/data-00001-of-00002/2"] == {"label": 2, "split": "train"}
    assert len(attributes) == 7


def test_a_folder_of_parquet_files_is_listed_file_by_file(tmp_path):
    write_parquet(tmp_path / "set" / "b.parquet", image_rows(2, seed=50))
    write_parquet(tmp_path / "set" / "a" / "train.parquet", image_rows(3))
    (tmp_path / "set" / "notes.txt").write_text("not a dataset")
    source = ParquetSource(f"parquet://{tmp_path}/set", SourceOptions())
    objects = list(source.list())
    assert source.root() == f"parquet://{tmp_path}/set/"
    assert [o.name for o in objects] == ["a/train/0", "a/train/1", "a/train/2", "b/0", "b/1"]
    assert all(o.locator.startswith(source.root()) for o in objects)
    assert objects[3].locator == f"parquet://{tmp_path}/set/b.parquet#row=0"
    assert objects[0].content_type == "image/png" and objects[1].content_type == "image/jpeg"


def test_reads_rows_in_any_order_across_row_groups_and_batches(tmp_path):
    rows = image_rows(12)
    parquet = write_parquet(tmp_path / "data.parquet", rows, row_group_size=5)
    stream = write_save_to_disk(tmp_path / "hf", rows, files=1)
    reader = ParquetSource(None, SourceOptions())  # (as the embed stage makes it: no spec)
    for spec in (f"parquet://{parquet}", f"parquet://{stream}"):
        objects = listed(spec)
        for obj in [*objects, *reversed(objects)]:
            data = reader.read(obj.locator, max_bytes=1 << 20)
            assert data == rows["image"][int(obj.name.rsplit("/", 1)[1])]
        assert len(reader.read(objects[0].locator, max_bytes=100)) == 101  # the cap, plus one
        with pytest.raises(FileNotFoundError):
            reader.read(objects[0].locator.replace("#row=0", "#row=99"), max_bytes=1 << 20)


def test_a_key_column_names_the_rows(tmp_path):
    rows = image_rows(4) | {"id": ["cat/1", "dog 2", "3", "4"]}
    data = write_parquet(tmp_path / "data.parquet", rows)
    objects = listed(f"parquet://{data}?key=id")
    assert [o.name for o in objects] == ["data/cat/1", "data/dog 2", "data/3", "data/4"]
    assert objects[1].locator == f"parquet://{data}?key=id#key=dog%202"
    assert objects[1].attributes == {"label": 1, "split": "train", "id": "dog 2"}
    reader = ParquetSource(None, SourceOptions())
    assert reader.read(objects[1].locator, max_bytes=1 << 20) == rows["image"][1]

    repeated = write_parquet(tmp_path / "repeated.parquet", image_rows(4))
    with pytest.raises(PermanentError, match="names several rows"):
        listed(f"parquet://{repeated}?key=split")


def test_the_image_column_is_found_or_named(tmp_path):
    rows = image_rows(2) | {"thumbnail": [encode(photo(9), "PNG")] * 2, "tags": [["a"], ["b"]]}
    data = write_parquet(tmp_path / "data.parquet", rows)
    with pytest.raises(PermanentError, match="2 image columns") as err:
        listed(f"parquet://{data}")
    assert "?image=COLUMN" in (err.value.hint or "")
    objects = listed(f"parquet://{data}?image=thumbnail")
    assert objects[0].locator.endswith("?image=thumbnail#row=0")
    # The other binary column and the list column are not attributes.
    assert objects[0].attributes == {"label": 0, "split": "test"}
    assert sniff_content_type(b"RIFF\0\0\0\0WEBPVP8 ") == "image/webp"


def test_attribute_values_are_json_scalars(tmp_path):
    table = pa.table(
        {
            "image": [encode(photo(1), "PNG")],
            "taken": pa.array([20000], pa.date32()),
            "score": [float("nan")],
            "kind": pa.array(["cat"]).dictionary_encode(),
        }
    )
    path = tmp_path / "data.parquet"
    pq.write_table(table, path)
    [obj] = listed(f"parquet://{path}")
    assert obj.attributes == {"taken": "2024-10-04", "score": None, "kind": "cat"}


def test_without_pyarrow_one_line_names_the_extra(tmp_path):
    shadow = tmp_path / "shadow" / "pyarrow"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'pyarrow'\", name='pyarrow')\n"
    )
    (tmp_path / "data.parquet").write_bytes(b"PAR1")
    result = run_imgvec(
        "list",
        f"parquet://{tmp_path}/data.parquet",
        "--work-dir",
        str(tmp_path / "work"),
        env={"PYTHONPATH": str(tmp_path / "shadow")},
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.splitlines()[0] == (
        "imgvec: error: reading parquet:// needs pyarrow, not installed: "
        "pip install 'imgvec[parquet]'"
    )
