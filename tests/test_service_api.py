"""`imgvec serve` against the real database and a real server: every endpoint, the same answers
as `imgvec search`, errors as problem+json, the token, uploads that are no images, and no path
from a request ever reaching a file."""

from __future__ import annotations

import io
import json
import threading
import time

import numpy as np
import pytest
from PIL import Image

from tests import service_fixtures, test_permissions
from tests.conftest import run_imgvec
from tests.images import encode, hostile, photo
from tests.service_fixtures import (
    BACKEND_FLAGS,
    CLASSES,
    HOSTILE_NAME,
    PER_CLASS,
    ServiceProcess,
    imgvec,
)
from tests.test_permissions import as_role, snapshot

# The shared fixtures: the loaded gallery, its server, and roles made for one test.
gallery = service_fixtures.gallery
gallery_server = service_fixtures.gallery_server
roles = test_permissions.roles

PROBLEM = "application/problem+json"
IMAGES = len(CLASSES) * PER_CLASS + 1


@pytest.fixture(scope="module")
def api(gallery_server):
    with gallery_server.client() as client:
        yield client


def object_id(api, name: str) -> int:
    [found] = [r for r in api.get("/api/search", params={"text": "x", "k": 100}).json()["results"]
               if r["name"] == name]  # fmt: skip
    return found["object_id"]


def problem(response, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == status and body["type"] == "about:blank" and body["title"]
    assert "Traceback" not in response.text
    return body["detail"]


# -- every endpoint ------------------------------------------------------------------------------


def test_health_spaces_and_the_page(api):
    health = api.get("/api/health").json()
    assert health["status"] == "ok" and health["database"] == "ok" and not health["read_only"]
    assert health["pgvector"]
    spaces = api.get("/api/spaces").json()
    [space] = spaces["spaces"]
    assert spaces["default"] == space["name"] == "clip/ViT-B-32/none-seed0/512"
    assert space["images"] == IMAGES and space["dimension"] == 512
    assert sorted(space["attributes"]["class"]) == sorted(CLASSES)
    assert api.get("/").headers["content-type"].startswith("text/html")
    assert api.get("/static/app.js").status_code == 200
    assert api.get("/api/docs").status_code == 200
    assert "/api/search" in api.get("/api/openapi.json").json()["paths"]


def test_search_by_text_by_listed_images_and_with_filters(api):
    space = "clip/ViT-B-32/none-seed0/512"
    by_text = api.get("/api/search", params={"text": "a red circle", "k": 7, "space": space})
    by_text = by_text.json()
    assert by_text["space"] == "clip/ViT-B-32/none-seed0/512" and by_text["note"] is None
    assert len(by_text["results"]) == 7
    first = by_text["results"][0]
    assert set(first) == {
        "object_id", "name", "locator", "distance", "score", "content_type", "attributes",
        "thumbnail_url", "original_url",
    }  # fmt: skip
    assert first["thumbnail_url"] == f"/api/images/{first['object_id']}/thumbnail"
    distances = [r["distance"] for r in by_text["results"]]
    assert distances == sorted(distances)

    red = object_id(api, "red/00.png")
    both = api.get("/api/search", params=[("image", str(red)), ("image", "red/01.png"), ("k", 60)])
    names = [r["name"] for r in both.json()["results"]]
    assert "red/00.png" not in names and "red/01.png" not in names  # the query images left out
    assert len(names) == IMAGES - 2

    greens = api.get(
        "/api/search", params={"image": "red/00.png", "where": "class=green", "k": 50}
    ).json()["results"]
    assert {r["attributes"]["class"] for r in greens} == {"green"} and len(greens) == PER_CLASS
    blue = api.get("/api/search", params={"text": "x", "prefix": "blue/", "k": 50}).json()
    assert {r["name"].split("/")[0] for r in blue["results"]} == {"blue"}
    typed = api.get("/api/search", params={"text": "x", "content_type": "image/*", "k": 3})
    assert len(typed.json()["results"]) == 3
    future = api.get("/api/search", params={"text": "x", "since": "2999-01-01T00:00:00Z"}).json()
    assert future["results"] == [] and future["note"]
    picky = api.get("/api/search", params={"text": "x", "min_score": 0.999}).json()
    assert picky["results"] == [] and "0.999" in picky["note"]


def test_search_by_upload_finds_the_same_image(api, gallery):
    data = (gallery.images / "green" / "03.png").read_bytes()
    found = api.post("/api/search", files={"file": ("query.png", data)}, data={"k": "3"})
    assert found.status_code == 200, found.text
    results = found.json()["results"]
    assert results[0]["name"] == "green/03.png" and results[0]["score"] > 0.999
    hybrid = api.post(
        "/api/search", files={"file": ("q.png", data)}, data={"text": "green", "k": "2"}
    )
    assert len(hybrid.json()["results"]) == 2
    only_red = api.post(
        "/api/search", files={"file": ("q.png", data)}, data={"prefix": "red/", "k": "4"}
    ).json()
    assert only_red["query"]["prefix"] == "red/"
    assert [r["name"][:4] for r in only_red["results"]] == ["red/"] * 4


def test_image_metadata_similar_thumbnail_and_original(api, gallery):
    hostile_id = object_id(api, HOSTILE_NAME)
    meta = api.get(f"/api/images/{hostile_id}").json()
    assert meta["name"] == HOSTILE_NAME  # data, returned as it is: the page shows it as text
    assert meta["spaces"] == ["clip/ViT-B-32/none-seed0/512"]
    assert meta["content_hash"].startswith("md5:") and meta["size"] > 0 and meta["updated_at"]
    assert meta["source"] == f"file://{gallery.images.resolve()}/"
    # source= takes the folder as it was listed (path text only: nothing on disk is read)
    for listed in (str(gallery.images.resolve()), f"{gallery.images.resolve()}/", meta["source"]):
        by_folder = api.get("/api/search", params={"image": "red/05.png", "source": listed})
        assert by_folder.status_code == 200 and by_folder.json()["results"], by_folder.text
    problem(api.get("/api/search", params={"image": "red/05.png", "source": "/elsewhere"}), 404)

    red = object_id(api, "red/05.png")
    similar = api.get(f"/api/images/{red}/similar", params={"k": 5}).json()
    assert similar["query"]["object_id"] == red and len(similar["results"]) == 5
    assert red not in [r["object_id"] for r in similar["results"]]
    only_blue = api.get(f"/api/images/{red}/similar", params={"where": "class=blue"}).json()
    assert {r["attributes"]["class"] for r in only_blue["results"]} == {"blue"}
    named = api.get(f"/api/images/{red}/similar", params={"prefix": "green/", "k": 3}).json()
    assert [r["name"][:6] for r in named["results"]] == ["green/"] * 3
    picky = api.get(f"/api/images/{red}/similar", params={"min_score": 0.9999}).json()
    assert picky["results"] == [] and "0.9999" in picky["note"]

    thumbnail = api.get(f"/api/images/{red}/thumbnail")
    assert thumbnail.headers["content-type"] == "image/webp"
    assert thumbnail.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert max(Image.open(io.BytesIO(thumbnail.content)).size) <= 256
    etag = thumbnail.headers["etag"]
    again = api.get(f"/api/images/{red}/thumbnail", headers={"If-None-Match": etag})
    assert again.status_code == 304

    original = api.get(f"/api/images/{red}/original")
    assert original.content == (gallery.images / "red" / "05.png").read_bytes()
    assert original.headers["content-type"] == "image/png"
    assert original.headers["x-content-type-options"] == "nosniff"
    head = api.head(f"/api/images/{red}/original")  # curl -I: the headers, no body
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(original.content))
    assert api.head(f"/api/images/{red}/thumbnail").headers["content-type"] == "image/webp"


def test_a_thumbnail_missing_from_the_work_dirs_is_made_once_and_kept(api, gallery):
    from pipeline.checkpoints.thumbnails import thumbnail_relpath

    red = object_id(api, "red/06.png")
    mine = gallery.work_dir / thumbnail_relpath(
        api.get(f"/api/images/{red}").json()["content_hash"]
    )
    mine.unlink()  # as if embedded before thumbnails existed
    made = api.get(f"/api/images/{red}/thumbnail")
    assert made.status_code == 200 and made.headers["content-type"] == "image/webp"
    assert mine.exists()  # kept in the configured work dir for next time


def test_diverse_picks_one_image_per_cluster(api):
    diverse = api.get("/api/diverse", params={"n": 5}).json()
    assert diverse["method"] == "kmeans" and len(diverse["results"]) == 5
    assert len({r["cluster"] for r in diverse["results"]}) == 5
    assert sum(r["cluster_size"] for r in diverse["results"]) == IMAGES
    assert all(r["thumbnail_url"] for r in diverse["results"])
    randomly = api.get("/api/diverse", params={"n": 4, "method": "random"}).json()
    assert len({r["object_id"] for r in randomly["results"]}) == 4


def test_embeddings_of_texts_and_files(api, gallery):
    texts = api.post("/api/embeddings", json={"texts": ["red car", "a dog"]}).json()
    assert texts["dimension"] == 512 and [e["input"] for e in texts["embeddings"]] == [
        "text:red car",
        "text:a dog",
    ]
    assert all(abs(np.linalg.norm(e["vector"]) - 1) < 1e-4 for e in texts["embeddings"])
    data = (gallery.images / "blue" / "02.png").read_bytes()
    mixed = api.post(
        "/api/embeddings", files=[("file", ("b.png", data)), ("text", (None, "blue"))]
    ).json()
    assert sorted(e["input"] for e in mixed["embeddings"]) == ["file:b.png", "text:blue"]
    # The same vector as the search by that file uses: it finds the listed copy first.
    vector = next(e["vector"] for e in mixed["embeddings"] if e["input"] == "file:b.png")
    assert len(vector) == 512


# -- the same answers as the command line --------------------------------------------------------


@pytest.mark.parametrize(
    "query", [["red car"], ["--image", "yellow/04.png"], ["blue", "--image", "red/02.png"]]
)
def test_the_api_answers_what_imgvec_search_answers(api, gallery, query):
    cli = imgvec(gallery, "search", *query, "--json", "--k", "8", *BACKEND_FLAGS)
    expected = [json.loads(line) for line in cli.stdout.splitlines()]
    text = [q for q in query if not q.startswith("--") and "/" not in q]
    images = [q for q in query if "/" in q]
    answer = api.get("/api/search", params={"text": text or None, "image": images, "k": 8}).json()[
        "results"
    ]
    assert [(r["object_id"], r["locator"]) for r in answer] == [
        (m["object_id"], m["locator"]) for m in expected
    ]
    assert [r["score"] for r in answer] == pytest.approx([m["score"] for m in expected], abs=1e-6)


# -- errors --------------------------------------------------------------------------------------


def test_errors_are_problem_json_with_a_clear_detail(api):
    assert "give a text" in problem(api.get("/api/search"), 400)
    assert problem(api.get("/api/search", params={"text": "x", "k": 0}), 422) == (
        "k: must be at least 1"
    )
    unknown = problem(api.get("/api/search", params={"text": "x", "space": "clip/nope"}), 404)
    assert "clip/nope" in unknown and "clip/ViT-B-32/none-seed0/512" in unknown  # the candidates
    assert "is not a listed image" in problem(
        api.get("/api/search", params={"image": "red/99.png"}), 404
    )
    typo = problem(api.get("/api/search", params={"image": "red/0.png"}), 404)
    assert "did you mean 'red/0" in typo, typo
    assert "99999" in problem(api.get("/api/images/99999/similar"), 404)
    assert problem(api.get("/api/images/99999"), 404)
    assert problem(api.get("/api/images/99999/thumbnail"), 404)
    assert problem(api.get("/api/images/not-a-number"), 422) == "object_id: must be a valid integer"
    unreadable = problem(api.get("/api/search", params={"text": "x", "where": "class ~~ x"}), 400)
    assert "where='class ~~ x'" in unreadable and "--" not in unreadable  # the API's own terms
    assert problem(api.get("/api/diverse", params={"method": "nope"}), 422).startswith("method")
    assert problem(api.get("/api/nothing-here"), 404)
    assert "texts" in problem(api.post("/api/embeddings", json={"texts": "red"}), 400)


@pytest.mark.parametrize("name", sorted(hostile()))
def test_a_bad_upload_is_a_4xx_with_the_decoders_reason(api, name):
    data, reason = hostile()[name]
    detail = problem(api.post("/api/search", files={"file": (name, data)}), 400)
    assert reason.lower() in detail.lower(), detail
    detail = problem(api.post("/api/embeddings", files={"file": (name, data)}), 400)
    assert name in detail and reason.lower() in detail.lower(), detail


def test_an_upload_over_the_limit_is_413(api):
    too_big = b"\0" * (21 * 1024 * 1024)
    detail = problem(api.post("/api/search", files={"file": ("big.png", too_big)}), 413)
    assert detail


def test_the_original_of_an_unknown_or_deleted_object_is_404(api, gallery):
    assert "no listed image" in problem(api.get("/api/images/123456/original"), 404)
    red = object_id(api, "red/07.png")
    run_imgvec(
        "psql", "-c", f"UPDATE objects SET deleted_at = now() WHERE object_id = {red}",
        env=gallery.env,
    )  # fmt: skip
    try:
        problem(api.get(f"/api/images/{red}/original"), 404)
        problem(api.get(f"/api/images/{red}/thumbnail"), 404)
    finally:
        run_imgvec(
            "psql", "-c", f"UPDATE objects SET deleted_at = NULL WHERE object_id = {red}",
            env=gallery.env,
        )  # fmt: skip


HOSTILE_PATHS = [
    "../../../../../../etc/passwd",
    "/etc/passwd",
    "file:///etc/passwd",
    "..%2F..%2F..%2Fetc%2Fpasswd",
    "red/../../../../etc/passwd",
]


def test_no_parameter_reaches_a_file_outside_the_listed_objects(api, gallery, tmp_path):
    # An image beside the listed folder, never listed: a search by it would find its twin.
    outside = gallery.images.parent / "outside.png"
    outside.write_bytes((gallery.images / "red" / "00.png").read_bytes())
    tries = [*HOSTILE_PATHS, str(outside), f"file://{outside}", "../outside.png"]
    answers = []
    for value in tries:
        answers.append(api.get("/api/search", params={"image": value}))
        answers.append(api.get("/api/search", params={"image": ["red/00.png", value]}))
        for parameter in ("space", "source", "prefix", "where", "content_type"):
            answers.append(api.get("/api/search", params={"text": "x", parameter: value}))
        answers.append(api.get("/api/diverse", params={"space": value, "prefix": value}))
        answers.append(api.get(f"/api/images/{value}"))
        answers.append(api.get(f"/api/images/{value}/original"))
        answers.append(api.get("/api/images/1/original", params={"locator": value}))
        answers.append(api.get(f"/static/{value}"))
        answers.append(api.post("/api/search", data={"text": value}, files={"file": ("x", b"")}))
    for answer in answers:
        assert b"root:x:0:0" not in answer.content
        if answer.status_code == 200 and answer.headers["content-type"] == "application/json":
            names = [r["locator"] for r in answer.json().get("results", [])]
            assert not any("outside" in n or "passwd" in n for n in names), answer.url
    # The query images: never opened, whichever form they take.
    for value in tries:
        assert problem(api.get("/api/search", params={"image": value}), 404)


# -- the model, loaded lazily in a thread --------------------------------------------------------


def test_the_model_loads_once_only_for_a_new_vector_and_never_blocks(gallery):
    server = ServiceProcess(gallery)
    try:
        with server.client() as client:
            ids = client.get("/api/search", params={"image": "red/00.png", "k": 3}).json()
            red = ids["results"][0]["object_id"]
            client.get(f"/api/images/{red}/similar")
            client.get("/api/diverse", params={"n": 3})
            assert '"step": "loading' not in server.output  # stored vectors only: no model yet

            slow: dict = {}

            def first_text_search():
                began = time.monotonic()
                slow["response"] = client.get("/api/search", params={"text": "cat"})
                slow["took"] = time.monotonic() - began

            loading = threading.Thread(target=first_text_search)
            loading.start()
            time.sleep(0.3)
            started = time.monotonic()
            assert client.get("/api/health").status_code == 200
            health_took = time.monotonic() - started
            loading.join()
            assert slow["response"].status_code == 200
            # The loop answered while the model loaded (seconds): a blocked loop would have
            # made the health check wait for the whole load. (A busy machine's GIL contention
            # still slows it: the bound is relative.)
            assert health_took < slow["took"] / 4, (health_took, slow["took"])
            client.get("/api/search", params={"text": "dog"})
            client.post("/api/embeddings", json={"texts": ["bird"]})
        assert server.output.count('"status": "started"') == 1, server.output
    finally:
        server.stop()


# -- the token -----------------------------------------------------------------------------------


def test_with_a_token_every_api_request_needs_it(gallery):
    token = "s3cret-token-never-logged"
    server = ServiceProcess(gallery, env={"IMGVEC_API_TOKEN": token})
    try:
        with server.client() as anonymous:
            for path in ("/api/health", "/api/search?text=x", "/api/images/1/original",
                         "/api/docs", "/api/openapi.json", "/api/nothing", "/api/runs"):  # fmt: skip
                assert "token" in problem(anonymous.get(path), 401)
            assert anonymous.get("/").status_code == 200  # the page holds no data
            wrong = anonymous.get("/api/health", headers={"Authorization": "Bearer nope"})
            problem(wrong, 401)
            # A guess at a query parameter is refused, and the access log does not keep it.
            problem(anonymous.get(f"/api/health?token={token}"), 401)
        with server.client(headers={"Authorization": f"Bearer {token}"}) as bearer:
            assert bearer.get("/api/health").status_code == 200
            assert len(bearer.get("/api/search", params={"image": "red/00.png"}).json()["results"])
        with server.client(cookies={"imgvec_token": token}) as cookie:
            assert cookie.get("/api/images/1/thumbnail").status_code == 200
        assert token not in server.output
    finally:
        server.stop()


def test_a_non_loopback_bind_without_a_token_is_refused(gallery):
    refused = imgvec(gallery, "serve", "--host", "0.0.0.0", "--port", "9", check=False)
    assert refused.returncode == 2, refused.stderr
    assert "--host 0.0.0.0" in refused.stderr and "IMGVEC_API_TOKEN" in refused.stderr
    assert "Traceback" not in refused.stderr


# -- the read-only role --------------------------------------------------------------------------


async def test_under_the_read_only_role_it_answers_and_writes_nothing(gallery, roles):
    from pipeline.db import open_database
    from pipeline.settings import Settings

    reader = roles("gallery_reader")
    run_imgvec("db", "grant-reader", reader, env=gallery.env)
    owner = Settings(home=gallery.home, database_url=gallery.database_url)
    async with open_database(owner) as conn:
        before = await snapshot(conn)
    # Without backend flags: the database's default space, its backend found from the space.
    server = ServiceProcess(
        gallery, env={"DATABASE_URL": as_role(gallery.database_url, reader)}, backend_flags=()
    )
    try:
        with server.client() as client:
            assert client.get("/api/health").json()["read_only"] is True
            assert len(client.get("/api/search", params={"text": "red"}).json()["results"]) == 10
            red = client.get("/api/search", params={"image": "red/00.png"}).json()["results"][0]
            assert client.get(f"/api/images/{red['object_id']}/similar").status_code == 200
            assert client.get(f"/api/images/{red['object_id']}/thumbnail").status_code == 200
            assert client.get("/api/diverse", params={"n": 3}).status_code == 200
            spaces = client.get("/api/spaces").json()
            assert spaces["default"] == "clip/ViT-B-32/none-seed0/512" and spaces["spaces"]
            data = encode(photo(5), "PNG")
            assert client.post("/api/search", files={"file": ("p.png", data)}).status_code == 200
    finally:
        server.stop()
    async with open_database(owner) as conn:
        assert await snapshot(conn) == before


def test_the_work_dir_of_a_loaded_part_sharded_or_not():
    """Thumbnails are looked for in the work dirs the parts came from (loaded_parts.part)."""
    import re

    from pipeline.service.state import _PART_SUFFIX

    parts = {
        "/w/embeddings/clip-vit-b-32/part-00001.csv": "/w",
        "/w/embeddings/clip-vit-b-32/shard-1of4-part-00001.npy": "/w",
        "gs://bucket/p/embeddings/vertex-512/shard-0of2-part-00012.csv": "gs://bucket/p",
    }
    for part, work_dir in parts.items():
        assert re.sub(_PART_SUFFIX, "", part) == work_dir
