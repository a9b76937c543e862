"""Hostile and odd inputs through the whole pipeline (`imgvec run`): every image ends embedded or
recorded with its reason, names are stored and printed verbatim, nothing is read as SQL, and
nothing is written outside the work dir."""

from __future__ import annotations

import json

from tests.conftest import run_imgvec
from tests.images import encode, hostile, odd_but_valid, photo, write_images
from tests.reliability.conftest import vertex_args
from tests.reliability.invariant import check_invariant

NAMES = [
    'quote\'s "double".png',
    "semi;colon.png",
    "new\nline.png",
    "tab\there.png",
    "ünïcødé 写真.png",
    "percent%2e%2e%2fescape.png",
    "'); DROP TABLE objects; --.png",
    "..png",
    "-rf.png",
    "$(touch pwned).png",
]


async def test_hostile_inputs_and_names_end_to_end(tmp_path, new_database, vertex):
    url = await new_database()
    images = tmp_path / "images"
    inputs = odd_but_valid() | {name: data for name, (data, _) in hostile().items()}
    inputs |= {name: encode(photo(i), "PNG") for i, name in enumerate(NAMES)}
    write_images(images, inputs)
    work = tmp_path / "work"
    out = run_imgvec(
        "run",
        str(images),
        "--work-dir",
        str(work),
        *vertex_args(vertex),
        "--all-types",
        env={"DATABASE_URL": url},
        check=False,
        timeout=300,
    )
    assert out.returncode == 3, out.stderr  # finished, with the hostile ones recorded
    outcome = await check_invariant(url, work)
    assert outcome["failed"] == len(hostile()) and outcome["embedded"] == len(inputs) - len(
        hostile()
    ), outcome

    # Stored verbatim (and the objects table is still there to ask).
    rows = run_imgvec(
        "psql", "-tA", "-c", "SELECT json_agg(name) FROM objects", env={"DATABASE_URL": url}
    )
    assert sorted(json.loads(rows.stdout)) == sorted(inputs)
    # Printed verbatim: the JSON output of a search carries every odd name unchanged.
    found = run_imgvec(
        "search",
        "--image",
        str(images / "semi;colon.png"),
        "--k",
        str(len(inputs)),
        "--json",
        *vertex_args(vertex),
        env={"DATABASE_URL": url},
    )
    names = {json.loads(line)["locator"].rsplit("/", 1)[-1] for line in found.stdout.splitlines()}
    # (the query's own listed file is left out of its answer)
    assert set(NAMES) - {"semi;colon.png"} <= names and "semi;colon.png" not in names
    # Nothing outside the work dir, and in it only imgvec's own files.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images", "work"]
    assert not (tmp_path / "pwned").exists() and not (images / "pwned").exists()
    assert {p.relative_to(work).parts[0] for p in work.rglob("*") if p.is_file()} <= {
        "manifests",
        "embeddings",
        "thumbnails",  # named by content key: no listed name reaches a path
        ".gitignore",  # "*": the work dir stays out of the user's git repository
    }
