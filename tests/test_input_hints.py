"""Mistyped input on the command line gets what was likely meant: a filter value no image has, a
content type written as an extension, a backend name in capitals. Over the service's gallery
(classes red, green, blue, yellow, purple; CLIP with random weights), as a user runs `imgvec`."""

from __future__ import annotations

from tests import service_fixtures
from tests.conftest import run_imgvec
from tests.service_fixtures import BACKEND_FLAGS

gallery = service_fixtures.gallery


def search(gallery, *args: str):
    return run_imgvec("search", "red", *args, *BACKEND_FLAGS, env=gallery.env)


def test_an_equality_filter_value_no_image_has_names_the_close_values(gallery):
    typo = search(gallery, "--where", "class=rde")
    assert typo.stdout == ""
    assert "no image there has class = 'rde' (did you mean 'red'?)" in typo.stderr, typo.stderr
    far = search(gallery, "--where", "class=zebra").stderr
    assert "no image there has class = 'zebra'" in far and "did you mean" not in far, far
    # A value that is there, emptied by another filter: no word about the value.
    other = search(gallery, "--where", "class=red", "--prefix", "blue/").stderr
    assert "no image in space" in other and "no image there has" not in other, other
    # Not equality: no value is suggested.
    ordered = search(gallery, "--where", "class>=zzz").stderr
    assert "no image in space" in ordered and "did you mean" not in ordered, ordered


def test_a_content_type_without_a_slash_says_how_they_are_written(gallery):
    extension = search(gallery, "--content-type", "png")
    assert extension.stdout == ""
    assert "content types are written image/png (or image/*)" in extension.stderr
    where = search(gallery, "--where", "content_type=png").stderr
    assert "content types are written image/png (or image/*)" in where, where
    assert search(gallery, "--content-type", "image/png", "--k", "2").stdout.count("\n") == 2


def test_a_backend_name_is_matched_whatever_its_case(gallery):
    capitals = search(gallery, "--backend", "CLIP", "--k", "3")
    assert capitals.stdout.count("\n") == 3, capitals.stderr
    assert capitals.stdout == search(gallery, "--backend", "clip", "--k", "3").stdout
    typo = run_imgvec("search", "red", "--backend", "CLIPP", env=gallery.env, check=False)
    assert typo.returncode == 2, typo.stderr
    assert "unknown backend 'CLIPP'" in typo.stderr and "did you mean 'clip'?" in typo.stderr
