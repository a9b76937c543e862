import re
import shlex
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "open_clip", "vertexai", "google.cloud.aiplatform")


def test_import_and_help_stay_light():
    """`import pipeline` and `imgvec --help` must not pull in torch or the Vertex SDK."""
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "import pipeline\n"
        "from pipeline.cli import app\n"
        "result = CliRunner().invoke(app, ['--help'])\n"
        "assert result.exit_code == 0, result.output\n"
        "assert 'db' in result.output\n"
        f"heavy = [m for m in sys.modules if m.split('.')[0] in {HEAVY!r} or m.startswith({HEAVY!r})]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_console_script_installed():
    exe = Path(sys.executable).parent / "imgvec"
    result = subprocess.run([str(exe), "--version"], capture_output=True, text=True, check=True)
    assert result.stdout.startswith("imgvec ")


def test_docker_compose_wiring():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    db = compose["services"]["db"]
    assert db["image"] == "pgvector/pgvector:pg17"
    assert "pg_isready" in " ".join(db["healthcheck"]["test"])
    assert any(v.endswith(":/var/lib/postgresql/data") for v in db["volumes"])
    assert all(p.startswith("127.0.0.1:") for p in db.get("ports", []))
    app = compose["services"]["imgvec"]
    url = app["environment"]["DATABASE_URL"]
    assert url.startswith("postgresql://") and "@db:5432/" in url
    assert url.rsplit("/", 1)[1] == db["environment"]["POSTGRES_DB"]
    assert app["depends_on"]["db"]["condition"] == "service_healthy"
    assert "pgdata" in compose["volumes"]


def shell_commands(script: str) -> list[list[str]]:
    """The commands a shell script runs, as words: comment lines and trailing comments dropped,
    so that a comment that mentions a command does not count as running it."""
    commands = []
    for line in script.splitlines():
        words = shlex.split(line, comments=True)
        if words:
            commands.append(words)
    return commands


def readme_commands(readme: str) -> list[list[str]]:
    """The commands of the README's ```sh blocks."""
    blocks = re.findall(r"^```sh\n(.*?)^```", readme, flags=re.M | re.S)
    return [words for block in blocks for words in shell_commands(block)]


def test_ci_runs_make_test():
    """CI runs the README's test command, which is a Makefile target."""
    ci = shell_commands((ROOT / ".ci" / "run").read_text())
    assert any(words[:2] == ["make", "test"] for words in ci), ci
    readme = readme_commands((ROOT / "README.md").read_text())
    assert readme[0] == ["make", "test"], readme[:3]  # the first command a reader meets
    assert re.search(r"^test:", (ROOT / "Makefile").read_text(), flags=re.M)
