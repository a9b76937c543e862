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


def test_ci_runs_make_test():
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    assert "make test" in (ROOT / "README.md").read_text()
