"""The work dir imgvec creates keeps itself out of the user's git repository."""

from __future__ import annotations

import os
import subprocess

from tests.conftest import IMGVEC
from tests.images import encode, photo, write_images


def imgvec_in(folder, *args, env):
    return subprocess.run(
        [*IMGVEC, *args],
        cwd=folder,
        env=dict(os.environ) | env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def git(folder, *args) -> str:
    return subprocess.run(
        ["git", *args], cwd=folder, capture_output=True, text=True, check=True
    ).stdout


def test_default_work_dir_is_ignored_by_git_a_user_made_one_is_left_alone(tmp_path, fresh_url):
    project = tmp_path / "project"
    write_images(project / "pictures", {"a.png": encode(photo(1), "PNG")})
    git(project, "init", "-q")
    env = {"DATABASE_URL": fresh_url, "PYTHONPATH": os.getcwd()}

    listed = imgvec_in(project, "list", "pictures", env=env)
    assert listed.returncode == 0, listed.stderr
    work = project / "imgvec-work"
    assert list(work.glob("manifests/manifest-*.csv"))
    assert (work / ".gitignore").read_text().splitlines()[-1] == "*"
    untracked = git(project, "status", "--porcelain", "--untracked-files=all").splitlines()
    assert untracked == ["?? pictures/a.png"]
    # The next stage still finds the manifest beside the .gitignore.
    relisted = imgvec_in(project, "list", "pictures", env=env)
    assert relisted.returncode == 0 and "0 new" in relisted.stdout, relisted.stdout

    mine = project / "my-work"
    mine.mkdir()
    assert imgvec_in(project, "list", "pictures", "--work-dir", "my-work", env=env).returncode == 0
    assert not (mine / ".gitignore").exists()
