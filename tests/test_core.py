"""The neutral core: one score (Python's and SQL's agree), the embedding space, object keys."""

from __future__ import annotations

import math

import pytest

from pipeline.core.objects import content_key, md5_from_base64, md5_hash, relative_name
from pipeline.core.score import score
from pipeline.core.space import EmbeddingSpace
from pipeline.db import open_database

# Identical, in between, orthogonal (0.5), near-opposite, opposite, past the unit-vector range
# (clamped), and SQL's NULL.
DISTANCES = [0.0, 0.3, 1.0, math.sqrt(2), 1.9, 2.0, 2.5, None]


async def test_the_python_and_sql_scores_agree(fresh_settings):
    async with open_database(fresh_settings) as conn:
        from_sql = [
            await conn.fetchval("SELECT image_score($1::double precision)", distance)
            for distance in DISTANCES
        ]
    from_python = [score(distance) for distance in DISTANCES]
    assert from_python[-1] is None and from_sql[-1] is None
    assert from_sql[:-1] == pytest.approx(from_python[:-1], abs=1e-12)
    assert from_python[:-1] == pytest.approx([1.0, 0.9775, 0.75, 0.5, 0.0975, 0.0, 0.0])


def test_a_space_is_named_by_backend_model_weights_and_dimension():
    space = EmbeddingSpace("clip", "ViT-B-32", "laion2b_s34b_b79k", 512)
    assert space.name == "clip/ViT-B-32/laion2b_s34b_b79k/512"
    assert (space.metric, space.normalized) == ("cosine", True)
    # One path segment, safe on any file system, and distinct per space.
    assert space.slug == "clip--ViT-B-32--laion2b_s34b_b79k--512"
    odd = EmbeddingSpace("clip", "hf-hub:org/model", "file-ab12", 768)
    assert "/" not in odd.slug and ":" not in odd.slug and odd.slug != space.slug


@pytest.mark.parametrize(
    ("dimension", "metric", "said"),
    [(0, "cosine", "dimension"), (16001, "cosine", "dimension"), (512, "dot", "metric")],
)
def test_a_space_refuses_an_impossible_dimension_or_metric(dimension, metric, said):
    with pytest.raises(ValueError, match=said):
        EmbeddingSpace("clip", "ViT-B-32", "none-seed0", dimension, metric=metric)


def test_object_keys():
    # Bytes are known by their hash when the store gives one, else by where they are.
    assert content_key("gs://b/a.jpg", "md5:00ff") == "md5:00ff"
    assert content_key("gs://b/a.jpg", None) == "gs://b/a.jpg"
    assert md5_hash("00ff") == "md5:00ff"
    assert md5_from_base64("AP8=") == "md5:00ff" and md5_from_base64(None) is None
    assert relative_name("2026/IMG001.jpg", "2026/") == "IMG001.jpg"
    assert relative_name("2026/IMG001.jpg", "2026") == "IMG001.jpg"
    assert relative_name("2026x/IMG001.jpg", "2026") == "2026x/IMG001.jpg"
