"""The search endpoints refuse what they do not take, saying what they do: a JSON body to the
upload search, a mistyped parameter or form field. An empty answer's note names the close value
and the way content types are written, in the API's terms. Through the real `imgvec serve`."""

from __future__ import annotations

import pytest

from tests import service_fixtures
from tests.images import encode, photo

gallery = service_fixtures.gallery
gallery_server = service_fixtures.gallery_server

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def api(gallery_server):
    with gallery_server.client() as client:
        yield client


def problem(response, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == status and body["type"] == "about:blank" and body["title"]
    return body["detail"]


def test_a_json_body_to_the_upload_search_says_what_the_endpoint_takes(api):
    answer = api.post("/api/search", json={"text": "red"})
    detail = problem(answer, 415)
    assert "multipart form field 'file'" in detail and "GET /api/search?text=" in detail, detail
    assert answer.headers["accept"] == "multipart/form-data"


def test_an_unknown_parameter_is_refused_naming_the_close_one(api):
    detail = problem(api.get("/api/search", params={"txt": "red"}), 400)
    assert detail.startswith("unknown parameter 'txt' (did you mean 'text'?)"), detail
    detail = problem(api.get("/api/search", params={"text": "red", "min_scor": "0.2"}), 400)
    assert "unknown parameter 'min_scor' (did you mean 'min_score'?)" in detail, detail
    # The upload search: its fields are form fields, in the form.
    upload = {"file": ("q.png", encode(photo(seed=3), "PNG"))}
    detail = problem(api.post("/api/search", files=upload, data={"txt": "red"}), 400)
    assert detail.startswith("unknown form field 'txt' (did you mean 'text'?)"), detail
    detail = problem(api.post("/api/search", files=upload, params={"k": "3"}), 400)
    assert detail == "'k' is a form field here: send it in the multipart form"
    # What the page sends is still taken.
    taken = api.get("/api/search", params=[("text", "red"), ("k", 2), ("where", "class=red")])
    assert taken.status_code == 200 and len(taken.json()["results"]) == 2


def test_an_empty_answer_names_the_close_value_and_how_content_types_are_written(api):
    note = api.get("/api/search", params={"text": "x", "where": "class=rde"}).json()["note"]
    assert "no image there has class = 'rde' (did you mean 'red'?)" in note, note
    assert "where='class=rde'" in note and "--" not in note, note
    note = api.get("/api/search", params={"text": "x", "content_type": "png"}).json()["note"]
    assert "content types are written image/png (or image/*)" in note, note
    assert "content_type='png'" in note and "--" not in note, note
