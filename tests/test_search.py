"""Text and image search, and saved text queries used from SQL."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from pipeline.core.score import score
from pipeline.core.space import EmbeddingSpace
from pipeline.db import open_database
from pipeline.errors import ConfigError
from pipeline.listing import list_source
from pipeline.loading import load_work_dir
from pipeline.plugins import backend_for_space, get_backend
from pipeline.runner import embed_work_dir
from pipeline.search import NotFound, QueryError, save_text_queries, search, similar_to
from pipeline.settings import Settings
from tests.conftest import create_database, drop_database, run_imgvec
from tests.images import encode, photo, write_images

pytest.importorskip("open_clip")


@pytest.fixture(scope="module")
def clip():
    return get_backend("clip", pretrained="none", device="cpu")


@pytest.fixture
async def loaded(tmp_path, fresh_url, imgvec_home, clip):
    settings = Settings(home=imgvec_home, database_url=fresh_url)
    write_images(
        tmp_path / "images", {f"img{i:02d}.png": encode(photo(i), "PNG") for i in range(20)}
    )
    work = str(tmp_path / "work")
    await list_source(str(tmp_path / "images"), work_dir=work, settings=settings)
    await embed_work_dir(work_dir=work, backend=clip, settings=settings)
    await load_work_dir(work_dir=work, settings=settings)
    return settings


async def brute_force(conn, query: np.ndarray) -> list[str]:
    rows = await conn.fetch(
        "SELECT o.name, e.embedding FROM embeddings e JOIN objects o USING (object_id)"
    )
    names = [r["name"] for r in rows]
    vectors = np.stack([r["embedding"].to_numpy() for r in rows])
    return [names[i] for i in np.argsort(np.linalg.norm(vectors - query, axis=1))]


async def test_text_query_saved_then_used_from_sql(loaded, clip):
    async with open_database(loaded) as conn:
        assert await save_text_queries(conn, clip, ["red car"]) == ["red car"]
        sql = (
            "SELECT image_id FROM image_embeddings ORDER BY embedding <-> "
            "(SELECT embedding FROM text_queries WHERE text = 'red car') LIMIT 5"
        )
        from_sql = [r[0] for r in await conn.fetch(sql)]
        expected = (await brute_force(conn, next(clip.embed_texts(["red car"]))))[:5]
        assert from_sql == expected
        matches = await search(conn, clip, text="red car", k=5)
        assert [m.name for m in matches] == expected
        assert all(
            0 <= m.score <= 1 and m.score == pytest.approx(score(m.distance)) for m in matches
        )

        # Analysts can queue a text from SQL; the next text-embed fills it.
        await conn.execute("INSERT INTO text_queries (text) VALUES ('blue sky')")
        assert (
            await conn.fetchval("SELECT embedding FROM text_queries WHERE text = 'blue sky'")
            is None
        )
        assert await save_text_queries(conn, clip, []) == ["blue sky"]
        stored = await conn.fetchval("SELECT embedding FROM text_queries WHERE text = 'blue sky'")
        assert np.allclose(stored.to_numpy(), next(clip.embed_texts(["blue sky"])), atol=1e-6)


async def test_image_and_hybrid_search(loaded, clip, tmp_path):
    async with open_database(loaded) as conn:
        by_name = await search(conn, clip, images=["img03.png"], k=5)
        assert "img03.png" not in [m.name for m in by_name] and len(by_name) == 5
        stored = await conn.fetchval(
            "SELECT e.embedding FROM embeddings e JOIN objects o USING (object_id) WHERE o.name = 'img03.png'"
        )
        assert [m.name for m in by_name] == (await brute_force(conn, stored.to_numpy()))[1:6]

        outside = tmp_path / "query.png"  # a file that was never listed: embedded on the spot
        outside.write_bytes(encode(photo(3), "PNG"))
        by_file = await search(conn, clip, images=[str(outside)], k=1)
        assert by_file[0].name == "img03.png" and by_file[0].score > 0.999


async def test_hybrid_ranks_by_the_mean_of_the_text_and_image_vectors(loaded, clip):
    async with open_database(loaded) as conn:
        stored = await conn.fetchval(
            "SELECT e.embedding FROM embeddings e JOIN objects o USING (object_id) WHERE o.name = 'img03.png'"
        )
        text_vector = next(clip.embed_texts(["a photo"]))
        mean = (stored.to_numpy() + text_vector) / 2
        expected = [
            n for n in await brute_force(conn, mean / np.linalg.norm(mean)) if n != "img03.png"
        ]
        by_image = [m.name for m in await search(conn, clip, images=["img03.png"], k=19)]
        assert expected != by_image  # (else the test could not tell hybrid from image search)
        hybrid = await search(conn, clip, text="a photo", images=["img03.png"], k=19)
        assert [m.name for m in hybrid] == expected
        cut = hybrid[8].score
        above = await search(conn, clip, text="a photo", images=["img03.png"], k=19, min_score=cut)
        assert [m.name for m in above] == expected[:9] and all(m.score >= cut for m in above)


def test_cli_search_json(loaded):
    out = run_imgvec(
        "search",
        "red car",
        "--pretrained",
        "none",
        "--k",
        "3",
        "--json",
        env={"DATABASE_URL": loaded.database_url.get_secret_value()},
    )
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(rows) == 3 and set(rows[0]) == {
        "object_id", "locator", "name", "distance", "score", "content_hash", "attributes",
        "content_type",
    }  # fmt: skip
    assert [r["distance"] for r in rows] == sorted(r["distance"] for r in rows)


def psql(settings, file: str, env: dict | None = None, **variables) -> list[list[str]]:
    return [
        line.split("|")
        for line in psql_output(settings, file, env, **variables).splitlines()
        if "|" in line
    ]


def psql_output(settings, file: str, env: dict | None = None, **variables) -> str:
    args = [
        "psql",
        settings.database_url.get_secret_value(),
        "-X",
        "-tA",
        "-F",
        "|",
        "-v",
        "ON_ERROR_STOP=1",
        "-f",
        str(Path(__file__).resolve().parents[1] / "sql" / file),
    ]
    for name, value in variables.items():
        args += ["-v", f"{name}={value}"]
    return subprocess.run(
        args, capture_output=True, text=True, check=True, env=os.environ | (env or {})
    ).stdout


async def test_every_sql_file_runs_and_the_nearest_ones_agree_with_brute_force(
    loaded, clip, tmp_path
):
    async with open_database(loaded) as conn:
        stored = await conn.fetchval(
            "SELECT e.embedding FROM embeddings e JOIN objects o USING (object_id) WHERE o.name = 'img05.png'"
        )
        expected_all = (await brute_force(conn, stored.to_numpy()))[1:]
        expected = expected_all[:5]
        await save_text_queries(conn, clip, ["red car"])
        text_expected = (await brute_force(conn, next(clip.embed_texts(["red car"]))))[:4]
        from_function = [
            r["image_id"] for r in await conn.fetch("SELECT * FROM similar_images('img05.png', 5)")
        ]

    similar = psql(loaded, "similar_images.sql", image="img05.png", k=5)
    assert [row[0] for row in similar] == expected == from_function
    assert all(0 <= float(score) <= 1 for _, _, score in similar)
    assert [row[0] for row in psql(loaded, "text_search.sql", text="red car", k=4)] == text_expected
    filtered = psql(loaded, "filtered_search.sql", image="img05.png", prefix="img1", k=3)
    assert len(filtered) == 3 and all(
        row[0].startswith("img1") for row in filtered
    )  # k rows despite the filter
    typed = psql(
        loaded, "filtered_search.sql", image="img05.png", type="image/png", since="2000-01-01", k=4
    )
    assert len(typed) == 4 and all(row[1] == "image/png" for row in typed)
    assert psql(loaded, "filtered_search.sql", image="img05.png", type="image/jpeg") == []
    async with open_database(loaded) as conn:
        await conn.execute(LABELS)
    cats = psql(loaded, "filtered_search.sql", image="img05.png", attrs='{"class": "cat"}')
    assert [row[0] for row in cats] == [n for n in expected_all if n in CATS]

    sample = psql(loaded, "diverse_sample.sql", n=5, bits=4)
    assert 1 <= len(sample) <= 5 and len({row[1] for row in sample}) == len(
        sample
    )  # one per bucket
    counts = psql(loaded, "space_counts.sql")
    assert counts[0][4] == "20" and counts[0][6] == "embeddings_space_1_hnsw_l2"
    assert len(psql(loaded, "run_history.sql", limit=10)) == 3  # list, embed, load
    assert psql(loaded, "recent_failures.sql", days=1) == []  # nothing failed
    assert psql(loaded, "near_duplicates.sql", max_distance=0.0001) == []


async def add_fillers(conn, count: int) -> None:
    """`count` random unit vectors in space 1 under their own names (filler1, ...), each with its
    number as the attribute rank, and every 250th the attribute tier=rare."""
    rng = np.random.default_rng(3)
    ids = [
        r[0]
        for r in await conn.fetch(
            "INSERT INTO objects (locator, scheme, key, name, content_type, attributes) "
            "SELECT 'file:///filler/' || i, 'file', '/filler/' || i, 'filler' || i, 'image/png', "
            "jsonb_build_object('rank', i) || CASE WHEN i % 250 = 0 "
            "THEN '{\"tier\": \"rare\"}'::jsonb ELSE '{}' END "
            "FROM generate_series(1, $1) i RETURNING object_id",
            count,
        )
    ]
    vectors = rng.standard_normal((len(ids), 512)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    await conn.copy_records_to_table(
        "embeddings",
        columns=["space_id", "object_id", "embedding"],
        records=((1, oid, v) for oid, v in zip(ids, vectors, strict=True)),
    )
    await conn.execute("ANALYZE")


@pytest.mark.parametrize(
    "file, variables",
    [
        ("similar_images.sql", {"image": "img05.png"}),
        ("text_search.sql", {"text": "red car"}),
        # (With a very selective filter the planner rightly prefers an exact scan of the few matches.)
        ("filtered_search.sql", {"image": "img05.png", "prefix": "filler1"}),
        ("near_duplicates.sql", {}),
    ],
)
async def test_nearest_queries_are_served_by_the_hnsw_index(loaded, clip, file, variables):
    # At 20 rows a scan beats any index, so the space gets 5,000 more (random unit vectors under
    # their own names) — the size at which the planner's own choice can be checked.
    async with open_database(loaded) as conn:
        await save_text_queries(conn, clip, ["red car"])
        await add_fillers(conn, 5000)
    plan = psql_output(loaded, file, explain="EXPLAIN (COSTS OFF)", **variables)
    assert "Index Scan using embeddings_space_1_hnsw_l2" in plan, plan


async def test_near_duplicates_finds_a_re_encoded_copy(tmp_path, fresh_url, imgvec_home, clip):
    settings = Settings(home=imgvec_home, database_url=fresh_url)
    images = {f"img{i:02d}.png": encode(photo(i, (128, 96)), "PNG") for i in range(8)}
    images["img03-copy.jpg"] = encode(
        photo(3, (128, 96)), "JPEG", quality=95
    )  # same picture, other bytes
    write_images(tmp_path / "images", images)
    work = str(tmp_path / "work")
    await list_source(str(tmp_path / "images"), work_dir=work, settings=settings)
    await embed_work_dir(work_dir=work, backend=clip, settings=settings)
    await load_work_dir(work_dir=work, settings=settings)
    async with open_database(settings) as conn:
        distances = sorted(
            (float(r["d"]), r["a"], r["b"])
            for r in await conn.fetch(
                "SELECT a.image_id AS a, b.image_id AS b, a.embedding <-> b.embedding AS d "
                "FROM image_embeddings a JOIN image_embeddings b ON a.image_id < b.image_id"
            )
        )
    # (Random weights: only the ranking means something.) The copy is the closest pair; a threshold
    # between it and the next pair finds it alone.
    assert distances[0][1:] == ("img03-copy.jpg", "img03.png")
    pairs = psql(
        settings, "near_duplicates.sql", max_distance=(distances[0][0] + distances[1][0]) / 2
    )
    assert [(a, b) for a, b, *_ in pairs] == [("img03-copy.jpg", "img03.png")]


async def test_recent_failures_says_what_failed_and_why(loaded, clip, tmp_path):
    images = tmp_path / "images"
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    work = str(tmp_path / "work")
    await list_source(str(images), work_dir=work, settings=loaded)
    await embed_work_dir(work_dir=work, backend=clip, settings=loaded)
    await load_work_dir(work_dir=work, settings=loaded)  # (the load writes the failures table)
    async with open_database(loaded) as conn:
        reason = await conn.fetchval("SELECT reason FROM failures")
    [row] = psql(loaded, "recent_failures.sql", days=1)
    _, stage, space, locator, said, attempts = row
    assert (stage, space, locator, said, attempts) == (
        "embed",
        clip.space.name,
        f"file://{(images / 'broken.png').resolve()}",
        reason,
        "1",
    )


async def test_empty_answers_say_why_on_stderr(loaded, server_url, imgvec_home):
    def imgvec_search(settings, *args):
        env = {"DATABASE_URL": settings.database_url.get_secret_value()}  # (blocks: fine here)
        result = run_imgvec("search", *args, "--pretrained", "none", env=env)
        # One line says why (other stderr lines are progress: the model load, as JSON steps).
        [why] = [line for line in result.stderr.splitlines() if line.startswith("imgvec:")]
        assert result.stdout == "", result.stdout
        return why

    space = "clip/ViT-B-32/none-seed0/512"
    name, empty_url = await create_database(server_url)  # (`loaded` has the test's fresh one)
    try:
        empty = Settings(home=imgvec_home, database_url=empty_url)
        said = imgvec_search(empty, "red car")
    finally:
        await drop_database(server_url, name)
    assert f"nothing loaded in space {space}: run `imgvec run SOURCE`" in said
    other = imgvec_search(loaded, "red car", "--model", "RN50")
    assert "nothing loaded in space clip/RN50/none-seed0/1024" in other
    assert f"(spaces with vectors: {space}: search it with --pretrained none)" in other
    best = imgvec_search(loaded, "red car", "--min-score", "0.9999")
    assert "no result scores at least 0.9999; the best was 0." in best


CATS = {"img00.png", "img01.png", "img02.png", "img03.png"}
DOGS = {"img04.png", "img06.png", "img07.png"}
# Numbers as a dataset gives them (cats) or as a CSV sidecar does (dogs' "2026": a text).
LABELS = """
UPDATE objects SET attributes = CASE
    WHEN name IN ('img00.png', 'img01.png', 'img02.png', 'img03.png')
        THEN jsonb_build_object('class', 'cat', 'year', 2025)
    WHEN name IN ('img04.png', 'img06.png', 'img07.png')
        THEN jsonb_build_object('class', 'dog', 'year', '2026')
    WHEN name = 'img08.png' THEN jsonb_build_object('class', 'o''brien, 100%', 'year', 2024.5)
    ELSE '{}' END
"""


async def test_search_filters_on_attributes_and_listed_fields(loaded, clip):
    async with open_database(loaded) as conn:
        await conn.execute(LABELS)
        order = await brute_force(conn, next(clip.embed_texts(["red car"])))

        async def names(*where: str) -> list[str]:
            matches = await search(conn, clip, text="red car", k=20, where=list(where))
            return [m.name for m in matches]

        def among(kept) -> list[str]:
            return [n for n in order if n in kept]

        assert await names("class=cat") == among(CATS)
        assert await names("class in (cat, dog)") == among(CATS | DOGS)
        # != keeps the images that have a class, and another one.
        assert await names("class!=cat") == among(DOGS | {"img08.png"})
        assert await names("class='o''brien, 100%'") == ["img08.png"]
        # A bare number matches the JSON number and the same text; quoted, only the text.
        assert await names("year=2026") == among(DOGS)
        assert await names('year="2025"') == []
        assert await names("year>=2025") == among(CATS | DOGS)
        assert await names("year<2025") == ["img08.png"]
        assert await names("year>2025.5", "year<=2026") == among(DOGS)
        assert await names("class=cat", "name in (img01.png, img02.png, img09.png)") == among(
            {"img01.png", "img02.png"}
        )
        assert await names("size>0", "content_type=image/png", "updated_at>=2000-01-01") == order
        assert await names("name>=img15.png") == among({f"img{i}.png" for i in range(15, 20)})
        assert await names("size<0") == []

        async def why_none(*where: str) -> str:
            matches = await search(conn, clip, text="red car", k=20, where=list(where))
            assert not matches
            return matches.why_empty

        # What was likely meant, when nothing matches: a mistyped attribute, a doubled =.
        typo = await why_none("clas=cat")
        assert "no image there has an attribute 'clas' (did you mean 'class'?)" in typo
        assert "its attributes: class, year" in typo
        assert "(did you mean 'name'?)" in await why_none("nmae=img01.png")
        assert "the value of class = is '=cat' (one = compares)" in await why_none("class==cat")
        assert "attribute" not in await why_none("class=cow")  # a real one, no such value


async def test_filter_values_are_data_never_sql(loaded, clip):
    async with open_database(loaded) as conn:
        await conn.execute(LABELS)
        for where in (
            "class='); DROP TABLE objects; --",
            "class in ('%', \"'); DROP TABLE objects; --\")",
            "class<='); DROP TABLE objects; --'",
            "year<='%'",
            "name='%'",
            "locator in ('%', '_')",
            "'); DROP TABLE objects; --=x",
        ):
            try:
                matches = await search(conn, clip, text="red car", where=[where])
            except Exception as err:  # a field that is no name is unreadable: fine, if it says so
                assert "cannot read --where" in str(err), where
                continue
            assert not matches, where
            assert matches.why_empty.startswith("no image in space clip/ViT-B-32/none-seed0/512")
            assert f"matches --where {where!r}" in matches.why_empty
        assert await conn.fetchval("SELECT count(*) FROM objects") == 20


async def test_a_selective_filter_still_gets_exactly_k(loaded, clip):
    async with open_database(loaded) as conn:
        await add_fillers(conn, 5000)  # 20 of them rare: 0.4 %
        query = next(clip.embed_texts(["red car"]))
        order = await brute_force(conn, query)
        ranks = {f"filler{i}" for i in range(4950, 5001)}
        for where, kept in (
            (["tier=rare"], {f"filler{i}" for i in range(250, 5001, 250)}),
            (["rank>=4950"], ranks),  # no index for it: the HNSW scan reads on until k pass
        ):
            matches = await search(conn, clip, text="red car", k=10, where=where)
            names = [m.name for m in matches]
            # k rows, all kept, nearest first; the index is approximate: most are the exact 10.
            assert len(names) == 10 and set(names) <= kept, where
            assert [m.distance for m in matches] == sorted(m.distance for m in matches)
            assert len(set(names) & set([n for n in order if n in kept][:10])) >= 7, where
        similar = await conn.fetch(
            "SELECT * FROM similar_images('img05.png', 10, filter => '{\"tier\": \"rare\"}')"
        )
        assert len(similar) == 10
        assert {r["image_id"] for r in similar} <= {f"filler{i}" for i in range(250, 5001, 250)}


def test_cli_search_where(loaded):
    env = {"DATABASE_URL": loaded.database_url.get_secret_value()}
    bad = run_imgvec("search", "red car", "--where", "class ~ cat", env=env, check=False)
    assert bad.returncode == 2, bad.stderr
    assert "cannot read --where 'class ~ cat'" in bad.stderr and "FIELD=VALUE" in bad.stderr
    assert "loading" not in bad.stderr.lower()  # refused before the model
    none = run_imgvec(
        "search", "red car", "--pretrained", "none", "--where", "class=cat", env=env
    )  # no labels loaded
    assert none.stdout == "" and "matches --where 'class=cat'" in none.stderr
    kept = run_imgvec(
        "search", "red car", "--pretrained", "none", "--json", "--k", "3",
        "--where", "name in (img01.png, img02.png)", "--where", "size>0", env=env,
    )  # fmt: skip
    assert {json.loads(line)["name"] for line in kept.stdout.splitlines()} == {
        "img01.png",
        "img02.png",
    }


async def object_id(conn, name: str) -> int:
    return await conn.fetchval("SELECT object_id FROM objects WHERE name = $1", name)


async def test_several_query_images_by_name_id_file_or_upload(loaded, clip, tmp_path):
    async with open_database(loaded) as conn:
        stored = {
            r["name"]: r["embedding"].to_numpy()
            for r in await conn.fetch(
                "SELECT o.name, e.embedding FROM embeddings e JOIN objects o USING (object_id) "
                "WHERE o.name IN ('img03.png', 'img05.png')"
            )
        }
        mean = (stored["img03.png"] + stored["img05.png"]) / 2
        expected = [
            n
            for n in await brute_force(conn, mean / np.linalg.norm(mean))
            if n not in ("img03.png", "img05.png")
        ][:6]
        by_names = await search(conn, clip, images=["img03.png", "img05.png"], k=6)
        assert [m.name for m in by_names] == expected  # both combined, both left out
        # The path of a listed local file is that listed image (its stored vector, left out) as
        # long as the file is as listed; touched since, it is a file to embed, found as itself.
        path = tmp_path / "images" / "img03.png"
        by_path = await search(conn, clip, images=[str(path), "img05.png"], k=6)
        assert [m.name for m in by_path] == expected
        os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1))
        assert (await search(conn, clip, images=[str(path)], k=1))[0].name == "img03.png"
        ids = [await object_id(conn, "img03.png"), await object_id(conn, "img05.png")]
        by_ids = await search(conn, clip, object_ids=ids, k=6)
        mixed = await search(conn, clip, images=["img03.png"], object_ids=ids[1:], k=6)
        assert [m.as_dict() for m in by_ids] == [m.as_dict() for m in mixed]
        assert [m.name for m in by_ids] == expected
        first = by_ids[0]
        assert first.object_id == await object_id(conn, first.name)
        assert first.content_type == "image/png" and first.attributes == {}
        assert first.content_hash == await conn.fetchval(
            "SELECT content_hash FROM objects WHERE name = $1", first.name
        )

        # An upload is decoded by the embed stage's rules; it is no listed image: not left out.
        uploaded = await search(conn, clip, upload=encode(photo(3), "PNG"), k=1)
        assert uploaded[0].name == "img03.png" and uploaded[0].score > 0.999
        for garbage, reason in (
            (b"just text", "not an image"),
            (encode(photo(3), "PNG")[:200], "corrupt image"),
            (b"", "empty"),
        ):
            with pytest.raises(QueryError, match=f"cannot use the uploaded file.*{reason}"):
                await search(conn, clip, upload=garbage)
        with pytest.raises(NotFound, match="no object has the id 999999"):
            await search(conn, clip, object_ids=[999999])

    env = {"DATABASE_URL": loaded.database_url.get_secret_value()}
    out = run_imgvec(
        "search", "--image", "img03.png", "--image", "img05.png", "--k", "6", "--json",
        "--pretrained", "none", env=env,
    )  # fmt: skip
    assert [json.loads(line)["name"] for line in out.stdout.splitlines()] == expected


async def test_similar_to_a_listed_object_needs_no_model(loaded, clip):
    space = clip.space  # (the space only: similar_to takes no backend)
    async with open_database(loaded) as conn:
        img03 = await object_id(conn, "img03.png")
        similar = await similar_to(conn, space, img03, k=5)
        by_image = await search(conn, clip, images=["img03.png"], k=5)
        assert [m.as_dict() for m in similar] == [m.as_dict() for m in by_image]
        assert img03 not in [m.object_id for m in similar]
        cats = await similar_to(conn, space, img03, 20, where=["name in (img01.png, img09.png)"])
        assert {m.name for m in cats} == {"img01.png", "img09.png"}
        with pytest.raises(NotFound, match="no object has the id 999999"):
            await similar_to(conn, space, 999999)
        other = get_backend("clip", pretrained="none", device="cpu", seed=9).space
        with pytest.raises(QueryError, match="is listed but not in space") as err:
            await similar_to(conn, other, img03)
        assert not isinstance(err.value, NotFound)
        await conn.execute("UPDATE objects SET deleted_at = now() WHERE object_id = $1", img03)
        with pytest.raises(QueryError, match="was deleted from its source"):
            await similar_to(conn, space, img03)


async def test_prefix_content_type_and_since_filters(loaded, clip):
    async with open_database(loaded) as conn:

        async def names(**filters) -> list[str]:
            matches = await search(conn, clip, text="red car", k=20, **filters)
            return [m.name for m in matches]

        everything = await names()
        assert len(everything) == 20
        assert await names(prefix="img1") == [n for n in everything if n.startswith("img1")]
        assert await names(prefix="%") == []  # data, not a LIKE pattern
        assert await names(content_type="image/png") == everything
        assert await names(content_type="image/*") == everything
        assert await names(since=datetime(2000, 1, 1)) == everything
        await conn.execute(
            "UPDATE objects SET updated_at = '2020-01-01Z', content_type = 'image/jpeg' "
            "WHERE name IN ('img00.png', 'img01.png')"
        )
        assert await names(content_type="image/jpeg") == [
            n for n in everything if n in ("img00.png", "img01.png")
        ]
        recent = await names(since=datetime(2021, 1, 1, tzinfo=UTC), content_type="image/*")
        assert recent == [n for n in everything if n not in ("img00.png", "img01.png")]
        empty = await search(conn, clip, text="red car", prefix="cat", content_type="video/*")
        assert not empty
        assert empty.why_empty.endswith("matches --prefix 'cat' and --content-type 'video/*'")


def test_backend_for_space_rebuilds_what_it_can_and_says_why_not():
    space = get_backend("clip", pretrained="none", device="cpu", seed=4).space
    assert backend_for_space(space).space == space
    checkpoint = EmbeddingSpace("clip", "ViT-B-32", "file-0123456789abcdef", 512)
    unavailable = backend_for_space(checkpoint)
    assert unavailable.space == checkpoint
    with pytest.raises(ConfigError, match="checkpoint file") as err:
        next(unavailable.embed_texts(["red car"]))
    assert "--pretrained PATH" in (err.value.hint or "")
    unknown = backend_for_space(EmbeddingSpace("toy", "m", "w", 3))
    with pytest.raises(ConfigError, match="unknown backend 'toy'"):
        unknown.source_from_bytes(b"")


def test_cli_plain_filters(loaded):
    env = {"DATABASE_URL": loaded.database_url.get_secret_value()}
    out = run_imgvec(
        "search", "red car", "--pretrained", "none", "--json", "--k", "20", "--prefix", "img1",
        "--content-type", "image/*", "--since", "2000-01-01", env=env,
    )  # fmt: skip
    names = [json.loads(line)["name"] for line in out.stdout.splitlines()]
    assert sorted(names) == [f"img{i}.png" for i in range(10, 20)]
    late = run_imgvec(
        "search", "red car", "--pretrained", "none", "--since", "2999-01-01T00:00:00", env=env
    )
    assert late.stdout == "" and "matches --since 2999-01-01T00:00:00" in late.stderr
