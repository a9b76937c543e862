"""Diverse picks (k-means over a space's vectors, or random) and the space listing, over solid
colour families embedded by real CLIP (random weights: shades of one colour land together)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from PIL import Image

from pipeline.db import open_database
from pipeline.db.spaces import default_space, list_spaces, load_space
from pipeline.listing import list_source
from pipeline.loading import load_work_dir
from pipeline.plugins import get_backend
from pipeline.runner import embed_work_dir
from pipeline.search.answers import QueryError
from pipeline.search.diverse import diverse
from pipeline.settings import Settings
from tests.conftest import run_imgvec
from tests.images import encode, write_images

pytest.importorskip("open_clip")

FAMILIES = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (40, 50, 220)}
SIZES = {"red": 6, "green": 4, "blue": 2}


def family(name: str) -> str:
    return re.sub(r"\d+\.png$", "", name)


@pytest.fixture(scope="module")
def clip():
    return get_backend("clip", pretrained="none", device="cpu")


@pytest.fixture
async def families(tmp_path, fresh_url, imgvec_home, clip):
    """Shades of three colours, 6 red, 4 green and 2 blue, each labelled with its class."""
    settings = Settings(home=imgvec_home, database_url=fresh_url)
    rng = np.random.default_rng(0)
    images = {}
    for colour, base in FAMILIES.items():
        for i in range(SIZES[colour]):
            shade = tuple(int(np.clip(v + rng.integers(-20, 21), 0, 255)) for v in base)
            images[f"{colour}{i}.png"] = encode(Image.new("RGB", (64, 48), shade), "PNG")
    write_images(tmp_path / "images", images)
    work = str(tmp_path / "work")
    await list_source(str(tmp_path / "images"), work_dir=work, settings=settings)
    await embed_work_dir(work_dir=work, backend=clip, settings=settings)
    await load_work_dir(work_dir=work, settings=settings)
    async with open_database(settings) as conn:
        await conn.execute(
            "UPDATE objects SET attributes = jsonb_build_object("
            "'class', regexp_replace(name, '\\d+\\.png$', ''), 'shade', name)"
        )
    return settings


async def test_kmeans_picks_one_image_per_cluster_with_its_size(families, clip):
    async with open_database(families) as conn:
        picks = await diverse(conn, clip.space, 3)
        assert sorted(family(p.name) for p in picks) == sorted(FAMILIES)
        # The biggest cluster first, numbered so; sizes are the families'.
        assert [(p.cluster, p.cluster_size, family(p.name)) for p in picks] == [
            (0, 6, "red"),
            (1, 4, "green"),
            (2, 2, "blue"),
        ]
        assert all(p.distance_to_centroid >= 0 and p.attributes["class"] for p in picks)
        # n above the families: still one pick per cluster, each from another image.
        many = await diverse(conn, clip.space, 5)
        assert len(many) == 5 and len({p.object_id for p in many}) == 5
        assert sum(p.cluster_size for p in many) == 12
        # A sample of the space: sizes are scaled back to the space's 12 images.
        sampled = await diverse(conn, clip.space, 2, sample=6, seed=1)
        assert len(sampled) == 2 and sum(p.cluster_size for p in sampled) == 12
        # Filters keep to the images they select.
        reds = await diverse(conn, clip.space, 2, prefix="red")
        assert {family(p.name) for p in reds} == {"red"} and len(reds) == 2
        greens = await diverse(conn, clip.space, 3, where=["class=green"])
        assert {family(p.name) for p in greens} == {"green"}
        none = await diverse(conn, clip.space, 3, where=["class=cat"])
        assert not none and "matches --where 'class=cat'" in none.why_empty
        with pytest.raises(QueryError, match="method must be one of kmeans, random"):
            await diverse(conn, clip.space, 3, method="spectral")


async def test_random_picks_n_distinct_images_the_same_for_a_seed(families, clip):
    async with open_database(families) as conn:
        picks = await diverse(conn, clip.space, 5, method="random")
        assert len({p.object_id for p in picks}) == 5
        assert all(p.cluster is None and p.cluster_size is None for p in picks)
        again = await diverse(conn, clip.space, 5, method="random")
        assert [p.object_id for p in again] == [p.object_id for p in picks]
        draws = {
            tuple(p.object_id for p in await diverse(conn, clip.space, 5, "random", seed=seed))
            for seed in range(5)
        }
        assert len(draws) > 1
        other = get_backend("clip", pretrained="none", device="cpu", seed=9).space
        empty = await diverse(conn, other, 5)
        assert not empty and f"nothing loaded in space {other.name}" in empty.why_empty
        # ... and where there are vectors, with the options that search them
        assert f"{clip.space.name}: search it with --pretrained none" in empty.why_empty


async def test_spaces_are_listed_with_counts_and_picker_values(families, clip):
    async with open_database(families) as conn:
        [row] = await list_spaces(conn)
        assert (row.name, row.images, row.default, row.space) == (
            clip.space.name,
            12,
            True,
            clip.space,
        )
        # `class` has 3 values; `shade` 12, also under the limit of 50.
        assert row.attributes["class"] == ["blue", "green", "red"]
        assert len(row.attributes["shade"]) == 12
        await conn.execute(
            "UPDATE objects SET attributes = attributes || jsonb_build_object('id', object_id * 7)"
        )
        assert await load_space(conn, clip.space.name) == (row.space_id, clip.space)
        assert await load_space(conn, "clip/nope/none/3") is None
        assert await default_space(conn) == (row.space_id, clip.space)


def test_cli_diverse_json(families):
    env = {"DATABASE_URL": families.database_url.get_secret_value()}
    out = run_imgvec("diverse", "--n", "3", "--pretrained", "none", "--json", env=env)
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert sorted(family(r["name"]) for r in rows) == sorted(FAMILIES)
    assert [r["cluster_size"] for r in rows] == [6, 4, 2]
    plain = run_imgvec("diverse", "--n", "2", "--method", "random", "--pretrained", "none", env=env)
    assert len(plain.stdout.splitlines()) == 2
    bad = run_imgvec("diverse", "--method", "pca", env=env, check=False)
    assert bad.returncode == 2 and "kmeans or random" in bad.stderr
