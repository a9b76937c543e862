"""Attributes through the listing: a sidecar table, folder-derived labels, the merge order, and a
changed label that relabels without re-embedding. Against the real database."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import pytest

from pipeline.checkpoints.manifest import iter_entries, read_manifest
from pipeline.core.objects import ObjectInfo
from pipeline.db import connect
from pipeline.errors import ConfigError, UsageError
from pipeline.listing import list_source
from pipeline.listing.attributes import ObjectAttributes, PathAttribute, read_sidecar
from pipeline.workdir import WorkDir
from tests.conftest import run_imgvec
from tests.images import encode, photo


def write_tree(root: Path, names: list[str]) -> None:
    for i, name in enumerate(names):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(encode(photo(i), "PNG"))


async def db_attributes(url: str) -> dict[str, dict]:
    conn = await connect(url)
    try:
        rows = await conn.fetch("SELECT name, attributes FROM objects")
        return {r["name"]: json.loads(r["attributes"]) for r in rows}
    finally:
        await conn.close()


def manifest_attributes(manifest: str) -> dict[str, str]:
    frame = read_manifest(manifest)
    return dict(zip(frame["name"], frame["attributes"], strict=True))


async def test_sidecar_csv_labels_objects_and_reports_unmatched_keys(tmp_path, fresh_url):
    images = tmp_path / "images"
    write_tree(images, ["a.png", "b.png", "sub/c.png"])
    sidecar = tmp_path / "labels.csv"
    sidecar.write_text(
        "filename,class,year,score,note\n"
        "a.png,cat,2025,0.5,\n"
        'sub/c.png,dog,2024,1.25,"a, quoted ""note"""\n'
        "gone.png,cow,2020,0.1,\n"
    )
    work = tmp_path / "work"
    listed = run_imgvec(
        "list", str(images), "--work-dir", str(work), "--attributes", str(sidecar),
        env={"DATABASE_URL": fresh_url},
    )  # fmt: skip
    assert "1 key(s) of --attributes match no listed object" in listed.stderr
    assert "'gone.png'" in listed.stderr

    stored = await db_attributes(fresh_url)
    # numbers stay numbers; an empty cell is no attribute; an object the table misses has none
    assert stored == {
        "a.png": {"class": "cat", "year": 2025, "score": 0.5},
        "sub/c.png": {"class": "dog", "year": 2024, "score": 1.25, "note": 'a, quoted "note"'},
        "b.png": {},
    }
    (manifest,) = (work / "manifests").glob("*.csv")
    in_manifest = manifest_attributes(str(manifest))
    assert json.loads(in_manifest["sub/c.png"]) == stored["sub/c.png"]
    assert in_manifest["b.png"] == ""  # none given


async def test_folder_labels_imagenet_layout_and_the_merge_order(tmp_path, fresh_settings):
    images = tmp_path / "imagenet"
    write_tree(images, ["train/n01443537/x.JPEG", "val/n01530575/y.JPEG", "top.JPEG"])
    sidecar = tmp_path / "fixes.csv"
    sidecar.write_text("name,class\nval/n01530575/y.JPEG,n99999999\n")
    attributes = ObjectAttributes.build(str(sidecar), None, ["split={0}", "class={1}"])
    result = await list_source(
        str(images), work_dir=str(tmp_path / "work"), settings=fresh_settings, attributes=attributes
    )
    stored = await db_attributes(fresh_settings.database_url.get_secret_value())
    assert stored == {
        "train/n01443537/x.JPEG": {"split": "train", "class": "n01443537"},
        "val/n01530575/y.JPEG": {"split": "val", "class": "n99999999"},  # the sidecar wins
        "top.JPEG": {},  # no folders: no such attributes
    }
    assert result.counts["unmatched_attributes"] == 0 and result.unmatched_note() is None

    (images / "train/n01443537/x.JPEG").unlink()
    relisted = await list_source(
        str(images), work_dir=str(tmp_path / "work"), settings=fresh_settings, attributes=attributes
    )
    frame = read_manifest(relisted.manifest).set_index("name")
    gone = frame.loc["train/n01443537/x.JPEG"]
    assert gone["status"] == "deleted"  # with the attributes it had, for whoever reads the manifest
    assert json.loads(gone["attributes"]) == {"split": "train", "class": "n01443537"}
    assert frame.loc["top.JPEG", "attributes"] == ""


def test_the_source_s_attributes_come_first_then_the_path_s_then_the_sidecar_s():
    obj = ObjectInfo(
        "file:///d/a/x.png", "file", None, "a/x.png", "a/x.png",
        attributes={"class": "from source", "split": "s", "row": 3},
    )  # fmt: skip
    attributes = ObjectAttributes(
        (PathAttribute.parse("split={0}"), PathAttribute.parse("class={0}")),
        {"file:///d/a/x.png": {"class": "sidecar"}},
    )
    assert attributes.label(obj).attributes == {"class": "sidecar", "split": "a", "row": 3}
    assert attributes.unmatched() == []


async def test_a_changed_label_relabels_and_run_embeds_nothing(tmp_path, fresh_url):
    images = tmp_path / "images"
    write_tree(images, ["cats/a.png", "cats/b.png"])
    sidecar = tmp_path / "labels.csv"
    sidecar.write_text("path,quality\ncats/a.png,good\ncats/b.png,poor\n")
    args = [
        "run", str(images), "--work-dir", str(tmp_path / "work"), "--pretrained", "none",
        "--attributes", str(sidecar), "--attribute-from-path", "class={0}",
    ]  # fmt: skip
    env = {"DATABASE_URL": fresh_url}
    first = run_imgvec(*args, env=env, timeout=300)
    assert "2 embedded" in first.stdout

    sidecar.write_text("path,quality\ncats/a.png,good\ncats/b.png,fixed\ncats/zzz.png,x\n")
    second = run_imgvec(*args, env=env, timeout=300)
    assert "match no listed object's name or locator: 'cats/zzz.png'" in second.stderr
    assert "2 unchanged (1 relabeled)" in second.stdout
    assert " 0 embedded" in second.stdout and "0 new parts" in second.stdout
    assert (await db_attributes(fresh_url))["cats/b.png"] == {"class": "cats", "quality": "fixed"}


def test_path_attribute_values_and_spellings():
    label = PathAttribute.parse("where={0}/{1}-x")
    assert label.value("train/n01/x.JPEG") == "train/n01-x"
    assert label.value("train/x.JPEG") is None  # one folder only
    for wrong in ("class", "={1}", "class=fixed"):
        with pytest.raises(UsageError, match="NAME=TEMPLATE"):
            PathAttribute.parse(wrong)
    with pytest.raises(UsageError, match="--attributes-key"):
        ObjectAttributes.build(None, "id", [])


def test_a_wrong_attribute_spelling_is_a_usage_error_before_listing(tmp_path):
    result = run_imgvec("list", str(tmp_path), "--attribute-from-path", "class", check=False)
    assert result.returncode == 2 and "NAME=TEMPLATE" in result.stderr


def test_sidecar_key_columns(tmp_path):
    table = tmp_path / "t.csv"
    table.write_text("Image,id,label\n007.png,1,x\n")
    assert read_sidecar(str(table), None) == {"007.png": {"id": 1, "label": "x"}}
    assert read_sidecar(str(table), "id") == {"1": {"Image": "007.png", "label": "x"}}
    with pytest.raises(ConfigError, match="no such column"):
        read_sidecar(str(table), "nope")
    (tmp_path / "nokey.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ConfigError, match="no key column") as no_key:
        read_sidecar(str(tmp_path / "nokey.csv"), None)
    assert "--attributes-key" in no_key.value.hint
    with pytest.raises(ConfigError, match="no such file"):
        read_sidecar(str(tmp_path / "missing.csv"), None)


def test_sidecar_parquet(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = tmp_path / "labels.parquet"
    taken = [datetime.date(2025, 5, 1), None]
    table = pa.table(
        {"locator": ["s3://b/a.jpg", "s3://b/b.jpg"], "label": [3, None], "taken": taken}
    )
    pq.write_table(table, path)
    assert read_sidecar(str(path), None) == {
        "s3://b/a.jpg": {"label": 3, "taken": "2025-05-01"},
        "s3://b/b.jpg": {},
    }


def test_a_manifest_without_attributes_still_reads(tmp_path):
    """A manifest written before attributes existed: the embed stage and read_manifest read it."""
    (tmp_path / "manifests").mkdir()
    (tmp_path / "manifests" / "m.csv").write_text(
        "locator,scheme,bucket,key,name,size,generation,etag,md5,crc32c,content_hash,"
        "content_type,updated_at,status,needs_embedding,reason\n"
        "file:///d/a.png,file,,a.png,a.png,10,,,,,md5:ab,image/png,,new,True,\n"
    )
    (entry,) = iter_entries(WorkDir(str(tmp_path)), "manifests/m.csv")
    assert (entry.locator, entry.status, entry.size) == ("file:///d/a.png", "new", 10)
    frame = read_manifest(tmp_path / "manifests" / "m.csv")
    assert frame["attributes"].tolist() == [""]
    assert list(frame.columns).index("attributes") == list(frame.columns).index("updated_at") + 1


def test_a_path_rule_that_labels_nothing_says_so(tmp_path, fresh_url):
    """`class={5}` over names of one folder gives no image the attribute (and a relisting clears
    the ones `class={0}` gave): said on stderr, as unmatched sidecar keys are."""
    images = tmp_path / "images"
    write_tree(images, ["cat/a.png", "dog/b.png", "c.png"])
    args = ["list", str(images), "--work-dir", str(tmp_path / "work")]
    env = {"DATABASE_URL": fresh_url}
    good = run_imgvec(*args, "--attribute-from-path", "class={0}", env=env)
    assert "gave no listed object" not in good.stderr
    wrong = run_imgvec(*args, "--attribute-from-path", "class={5}", env=env)
    assert (
        "note: --attribute-from-path 'class={5}' gave no listed object a value: the names have "
        "at most 1 folder(s), counted from {0}" in wrong.stderr
    ), wrong.stderr
