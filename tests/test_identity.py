"""One image, one identity: names are relative to a source, so two sources can share one; the view
shows the default source, every entry point takes a full locator too, and a name that is ambiguous,
unknown, deleted, failed or not in the space is a clear error (issue 12, items 2 and 3)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import asyncpg
import numpy as np
import pytest

from pipeline.db import connect, open_database
from pipeline.db.schema import downgrade, upgrade
from pipeline.listing import list_source
from pipeline.loading import load_work_dir
from pipeline.plugins import get_backend
from pipeline.runner import embed_work_dir
from pipeline.settings import Settings
from tests.conftest import run_imgvec
from tests.images import encode, photo, write_images

pytest.importorskip("open_clip")

SQL = Path(__file__).resolve().parents[1] / "sql"
CLASSIC_QUERY = """
SELECT image_id, embedding <-> (SELECT embedding FROM image_embeddings WHERE image_id = $1) AS distance
FROM image_embeddings WHERE image_id != $1 ORDER BY distance LIMIT 5
"""
A_NAMES = {f"img{i:02d}.png" for i in range(6)} | {"same.png"}
B_NAMES = {f"pic{i:02d}.png" for i in range(6)} | {"same.png", "copy.png"}


@pytest.fixture(scope="module")
def clip():
    return get_backend("clip", pretrained="none", device="cpu")


async def add_source(settings: Settings, clip, folder: Path, work: Path) -> None:
    await list_source(str(folder), work_dir=str(work), settings=settings)
    await embed_work_dir(work_dir=str(work), backend=clip, settings=settings)
    await load_work_dir(work_dir=str(work), settings=settings)


@pytest.fixture
async def two_sources(tmp_path, fresh_url, imgvec_home, clip):
    """Folders a (listed first: the default source) and b, both holding a same.png (different
    pictures), and b a copy.png with the bytes of a's img00.png."""
    settings = Settings(home=imgvec_home, database_url=fresh_url)
    a, b = tmp_path / "a", tmp_path / "b"
    write_images(a, {f"img{i:02d}.png": encode(photo(i), "PNG") for i in range(6)})
    write_images(a, {"same.png": encode(photo(100), "PNG")})
    write_images(b, {f"pic{i:02d}.png": encode(photo(50 + i), "PNG") for i in range(6)})
    write_images(b, {"same.png": encode(photo(200), "PNG"), "copy.png": encode(photo(0), "PNG")})
    await add_source(settings, clip, a, tmp_path / "work-a")
    await add_source(settings, clip, b, tmp_path / "work-b")
    return settings, a.resolve(), b.resolve()


def psql(settings: Settings, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["psql", settings.database_url.get_secret_value(), "-X", "-tA", "-F", "|", *args],
        capture_output=True,
        text=True,
    )


def psql_rows(settings: Settings, *args: str) -> list[list[str]]:
    result = psql(settings, *args)
    assert result.returncode == 0, result.stderr
    return [line.split("|") for line in result.stdout.splitlines() if "|" in line]


def locator(folder: Path, name: str) -> str:
    return f"file://{folder}/{name}"


async def test_the_view_and_the_analyst_sql_see_one_image_per_name(two_sources):
    settings, a, b = two_sources
    async with open_database(settings) as conn:
        ids = [r[0] for r in await conn.fetch("SELECT image_id FROM image_embeddings")]
        assert sorted(ids) == sorted(A_NAMES)  # the default source: the first listed
        # The classic query runs on a name both sources hold.
        assert {r["image_id"] for r in await conn.fetch(CLASSIC_QUERY, "same.png")} <= A_NAMES
        from_function = await conn.fetch("SELECT * FROM similar_images('same.png', 3)")
        assert len(from_function) == 3 and {r["image_id"] for r in from_function} <= A_NAMES

        # A full locator of the other source works as the query image; answers stay in the default.
        b_same = locator(b, "same.png")
        by_locator = await conn.fetch("SELECT * FROM similar_images($1, 3)", b_same)
        query = (await conn.fetchval("SELECT image_vector($1)", b_same)).to_numpy()
        vectors = {
            r["image_id"]: r["embedding"].to_numpy()
            for r in await conn.fetch("SELECT image_id, embedding FROM image_embeddings")
        }
        nearest = sorted(vectors, key=lambda name: np.linalg.norm(vectors[name] - query))[:3]
        assert [r["image_id"] for r in by_locator] == nearest

    similar = psql_rows(
        settings, "-v", "image=same.png", "-v", "k=3", "-f", str(SQL / "similar_images.sql")
    )
    assert len(similar) == 3 and {row[0] for row in similar} <= A_NAMES
    similar = psql_rows(
        settings, "-v", f"image={b_same}", "-v", "k=3", "-f", str(SQL / "similar_images.sql")
    )
    assert [row[0] for row in similar] == nearest
    # b's copy.png has the bytes of a's img00.png: a pair across sources is no near duplicate.
    near = psql_rows(settings, "-v", "max_distance=0.0001", "-f", str(SQL / "near_duplicates.sql"))
    assert near == []

    # Switching the default source switches the view; nothing else moves.
    async with open_database(settings) as conn:
        assert await conn.fetchval("SELECT set_default_source($1)", str(b)) == f"file://{b}/"
        ids = [r[0] for r in await conn.fetch("SELECT image_id FROM image_embeddings")]
        assert sorted(ids) == sorted(B_NAMES)
        assert {r["image_id"] for r in await conn.fetch(CLASSIC_QUERY, "same.png")} <= B_NAMES
        assert await conn.fetchval("SELECT count(*) FROM embeddings") == 15
        with pytest.raises(asyncpg.NoDataFoundError, match="no source") as err:
            await conn.fetchval("SELECT set_default_source('gs://nowhere/')")
        assert f"file://{a}/" in err.value.hint


def test_cli_names_an_ambiguous_name_and_takes_a_locator_or_a_source(two_sources):
    settings, a, b = two_sources
    env = {"DATABASE_URL": settings.database_url.get_secret_value()}
    ambiguous = run_imgvec(
        "search", "--image", "same.png", "--pretrained", "none", env=env, check=False
    )
    assert ambiguous.returncode == 2, ambiguous.stderr
    assert locator(a, "same.png") in ambiguous.stderr and locator(b, "same.png") in ambiguous.stderr
    assert "--source" in ambiguous.stderr and ambiguous.stdout == ""

    by_locator = run_imgvec(
        "search", "--image", locator(b, "same.png"), "--k", "20", "--pretrained", "none", env=env
    )
    found = [line.split()[-1] for line in by_locator.stdout.splitlines()]
    assert len(found) == 14 and locator(b, "same.png") not in found  # every source, itself excluded

    in_b = run_imgvec(
        "search",
        "--image",
        "same.png",
        "--source",
        str(b),
        "--k",
        "20",
        "--pretrained",
        "none",
        env=env,
    )
    found = [line.split()[-1] for line in in_b.stdout.splitlines()]
    assert sorted(found) == sorted(locator(b, n) for n in B_NAMES - {"same.png"})


async def test_unknown_failed_unembedded_and_foreign_names_say_why(two_sources, clip, tmp_path):
    settings, a, b = two_sources
    (a / "broken.png").write_bytes(b"not an image at all")
    await add_source(settings, clip, a, tmp_path / "work-a")
    write_images(a, {"later.png": encode(photo(300), "PNG")})
    await list_source(str(a), work_dir=str(tmp_path / "work-a"), settings=settings)  # not embedded
    env = {"DATABASE_URL": settings.database_url.get_secret_value()}

    def search_image(name: str) -> subprocess.CompletedProcess:
        result = run_imgvec("search", "--image", name, "--pretrained", "none", env=env, check=False)
        assert result.returncode == 2 and result.stdout == "", result
        return result

    typo = search_image("same.pgn")
    assert (
        "'same.pgn' was never listed" in typo.stderr and "did you mean 'same.png'?" in typo.stderr
    )
    async with open_database(settings) as conn:
        reason = await conn.fetchval("SELECT reason FROM failures WHERE locator LIKE '%broken.png'")
    assert reason and f"could not be embedded in space clip/ViT-B-32/none-seed0/512: {reason}" in (
        search_image("broken.png").stderr
    )
    assert "'later.png' is listed but not in space clip/" in search_image("later.png").stderr

    async with open_database(settings) as conn:
        assert await conn.fetchval("SELECT image_score(NULL)") is None
        for image, message, hint in (
            ("nope.png", '"nope.png" was never listed', "image_embeddings"),
            (
                "broken.png",
                f"could not be embedded in space clip/ViT-B-32/none-seed0/512: {reason}",
                "--retry-failed",
            ),
            ("later.png", '"later.png" has no vector in space', "imgvec run SOURCE"),
            (
                "pic01.png",
                f'is not in the default source "file://{a}/"; it is listed as "{locator(b, "pic01.png")}"',
                "set_default_source",
            ),
        ):
            with pytest.raises(asyncpg.NoDataFoundError) as err:
                await conn.fetch("SELECT * FROM similar_images($1)", image)
            assert message in str(err.value) and hint in err.value.hint, (image, err.value)
    failed = psql(settings, "-v", "image=nope.png", "-f", str(SQL / "similar_images.sql"))
    assert failed.returncode != 0 and "was never listed" in failed.stderr


def test_usage_errors_are_refused_before_any_backend_is_built(fresh_url):
    env = {"DATABASE_URL": fresh_url}
    # --backend vertex without --project cannot even be built: a usage error must come first.
    for args, message in (
        (["search", "--backend", "vertex"], "give a text to search for, an --image, or both"),
        (["search", "red", "--k", "-3", "--backend", "vertex"], "--k"),
        (["search", "red", "--k", "0", "--backend", "vertex"], "--k"),
    ):
        result = run_imgvec(*args, env=env, check=False)
        said = " ".join(result.stderr.replace("│", " ").split())  # (typer may draw a box)
        assert result.returncode == 2 and message in said, (args, result.stderr)


async def test_a_file_of_locators_keeps_names_unique(tmp_path, fresh_settings):
    for folder in ("one", "two"):
        write_images(tmp_path / folder, {"x.png": encode(photo(len(folder)), "PNG")})
    listed = tmp_path / "locators.txt"
    listed.write_text(f"{tmp_path / 'one' / 'x.png'}\n{tmp_path / 'two' / 'x.png'}\n")
    for _ in range(2):  # and a rerun keeps them as they are
        result = await list_source(
            str(listed), work_dir=str(tmp_path / "work"), settings=fresh_settings
        )
    second = locator(tmp_path.resolve() / "two", "x.png")
    async with open_database(fresh_settings) as conn:
        names = dict(await conn.fetch("SELECT locator, name FROM objects"))
        assert names == {locator(tmp_path.resolve() / "one", "x.png"): "x.png", second: second}
        roots = [r[0] for r in await conn.fetch("SELECT root FROM sources")]
        assert roots == [f"list:{listed}"]
    assert result.counts["unchanged"] == 2


async def test_the_migration_gives_existing_objects_their_sources(fresh_url):
    await upgrade(fresh_url, "0005_lean_embeddings")
    conn = await connect(fresh_url)
    try:
        await conn.execute(
            """
            INSERT INTO objects (locator, scheme, bucket, key, name, first_seen) VALUES
              ('gs://photos/2026/IMG1.jpg', 'gs', 'photos', '2026/IMG1.jpg', 'IMG1.jpg', '2026-01-01'),
              ('gs://photos/2026/sub/IMG2.jpg', 'gs', 'photos', '2026/sub/IMG2.jpg', 'sub/IMG2.jpg', '2026-01-02'),
              ('file:///home/me/demo/IMG1.jpg', 'file', NULL, '/home/me/demo/IMG1.jpg', 'IMG1.jpg', '2026-02-01')
            """
        )
        await upgrade(fresh_url)
        rows = await conn.fetch(
            "SELECT o.name, s.root, s.is_default FROM objects o JOIN sources s USING (source_id) ORDER BY o.locator"
        )
        assert [tuple(r) for r in rows] == [
            ("IMG1.jpg", "file:///home/me/demo/", False),
            ("IMG1.jpg", "gs://photos/2026/", True),  # the earliest listed
            ("sub/IMG2.jpg", "gs://photos/2026/", True),
        ]
        with pytest.raises(asyncpg.UniqueViolationError):  # one live name per source
            await conn.execute(
                "INSERT INTO objects (locator, scheme, key, name) VALUES ('gs://x/IMG1.jpg', 'gs', 'IMG1.jpg', 'IMG1.jpg')"
            )
        await downgrade(fresh_url, "0005_lean_embeddings")
        assert await conn.fetchval("SELECT to_regclass('sources')") is None
    finally:
        await conn.close()


def test_db_default_source_switches_the_view(two_sources):
    settings, a, b = two_sources
    env = {"DATABASE_URL": settings.database_url.get_secret_value()}
    switched = run_imgvec("db", "default-source", str(b), env=env)
    assert f"file://{b}/" in switched.stdout
    view = run_imgvec("psql", "-A", "-t", "-c", "SELECT image_id FROM image_embeddings", env=env)
    assert sorted(view.stdout.split()) == sorted(B_NAMES)
    unknown = run_imgvec("db", "default-source", "gs://nowhere/", env=env, check=False)
    assert unknown.returncode == 1 and "no source" in unknown.stderr and str(a) in unknown.stderr
