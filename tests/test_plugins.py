"""A source and a backend from outside imgvec, found through entry points as a pip-installed
plug-in's would be, run through every stage: list → embed → load → search, from the command line."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import run_imgvec

TOY = Path(__file__).parent / "plugins" / "toy_imgvec.py"


@pytest.fixture
def installed_toy(tmp_path) -> dict:
    """The toy plug-ins installed as a distribution would be: the module and a .dist-info with
    its entry points, on the path of the processes that run imgvec."""
    site = tmp_path / "site"
    info = site / "toy_imgvec-0.1.dist-info"
    info.mkdir(parents=True)
    shutil.copy(TOY, site / "toy_imgvec.py")
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-imgvec\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[imgvec.sources]\ntoy = toy_imgvec:PaletteSource\n\n"
        "[imgvec.backends]\ntoy = toy_imgvec:MeanColourBackend\n"
    )
    return {"PYTHONPATH": str(site)}


def test_a_toy_source_and_backend_run_through_every_stage(tmp_path, fresh_url, installed_toy):
    env = installed_toy | {"DATABASE_URL": fresh_url}
    work = str(tmp_path / "work")

    listed = run_imgvec("list", "toy://palette/", "--work-dir", work, env=env)
    assert "5 objects: 5 new" in listed.stdout
    embedded = run_imgvec("embed", "--backend", "toy", "--work-dir", work, env=env)
    assert "5 embedded, 0 failed" in embedded.stdout
    run_imgvec("load", "--work-dir", work, env=env)

    by_text = run_imgvec("search", "red", "--backend", "toy", "--k", "2", env=env)
    assert [line.split()[-1] for line in by_text.stdout.splitlines()] == [
        "toy://palette/red.png",
        "toy://palette/darkred.png",
    ]
    by_image = run_imgvec(
        "search", "--image", "yellow.png", "--backend", "toy", "--k", "1", "--json", env=env
    )
    assert '"locator": "toy://palette/' in by_image.stdout
    assert "yellow.png" not in by_image.stdout  # the query image itself is left out

    # The backend's own option is a flag of its own, in its own panel of the help.
    help_text = run_imgvec("embed", "--help", env=env).stdout
    assert "--toy-brightness" in help_text and "Toy (--backend toy)" in help_text
    # ... and its vectors are a space of their own: another brightness is another space.
    other = run_imgvec(
        "search", "red", "--backend", "toy", "--toy-brightness", "2", env=env, check=False
    )
    assert other.returncode == 0 and "nothing loaded in space toy/mean-colour/b2/4" in other.stderr


def test_without_the_plugin_its_names_are_unknown(tmp_path, fresh_url):
    env = {"DATABASE_URL": fresh_url}
    listed = run_imgvec("list", "toy://palette/", "--work-dir", str(tmp_path), env=env, check=False)
    assert listed.returncode == 2 and "unknown source scheme 'toy'" in listed.stderr
    embedded = run_imgvec("embed", "--backend", "toy", env=env, check=False)
    assert embedded.returncode == 2 and "unknown backend 'toy'" in embedded.stderr
