"""The structure, checked: stages hand work over only through the checkpoint formats, the embedding
layer never touches the database, the core does no I/O, and no module grows past 300 lines.

Imports are read from the source (every `import`, also those inside functions, which is where the
lazy ones are), so a rule broken by a lazy import fails here too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "pipeline"
STAGES = ("pipeline.listing", "pipeline.embedding", "pipeline.loading")
# What every stage may use besides its own package: the core, the hand-over formats, and the
# infrastructure that belongs to no stage.
SHARED = (
    "pipeline.core",
    "pipeline.checkpoints",
    "pipeline.errors",
    "pipeline.progress",
    "pipeline.interrupt",
    "pipeline.workdir",
    "pipeline.settings",
    "pipeline.plugins",
)
ALLOWED = {
    "pipeline.listing": SHARED + ("pipeline.db", "pipeline.sources"),
    # The embedding layer (the stage and the backends) runs without a database.
    "pipeline.embedding": SHARED + ("pipeline.sources",),
    "pipeline.loading": SHARED + ("pipeline.db",),
    "pipeline.core": ("pipeline.core",),
    "pipeline.checkpoints": ("pipeline.core", "pipeline.errors", "pipeline.workdir"),
    "pipeline.sources": ("pipeline.core", "pipeline.errors", "pipeline.plugins"),
}
MAX_LINES = 300


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imported(path: Path, module: str) -> set[str]:
    """The pipeline modules `path` imports (absolute and relative imports alike)."""
    names = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return {n for n in names if n == "pipeline" or n.startswith("pipeline.")}


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def owner(module: str) -> str | None:
    return next((p for p in ALLOWED if within(module, p)), None)


def broken_rules() -> list[str]:
    known = modules()
    found = []
    for module, path in known.items():
        rule = owner(module)
        if rule is None:
            continue
        for name in sorted(imported(path, module)):
            if name == "pipeline" or within(name, rule):
                continue
            if name not in known and name.rpartition(".")[0] in known:
                name = name.rpartition(".")[0]  # `from pipeline.x import y`: y is a name in x
            if not any(within(name, allowed) for allowed in ALLOWED[rule]):
                found.append(f"{module} imports {name}")
    return found


def test_stages_and_layers_import_only_what_they_may():
    assert broken_rules() == []


def test_only_the_command_line_imports_the_service():
    """`pipeline/service/` (the API and the gallery) sits on top of everything: no stage, no search
    code and no database module may depend on it, so each still runs without FastAPI installed."""
    known = modules()
    users = [
        f"{module} imports {name}"
        for module, path in known.items()
        if not within(module, "pipeline.service") and not within(module, "pipeline.cli")
        for name in imported(path, module)
        if within(name, "pipeline.service")
    ]
    assert users == []


def test_the_rules_catch_a_stage_importing_another(tmp_path, monkeypatch):
    # The check itself can fail: a copy of a stage module that imports another stage is caught.
    stage = PACKAGE / "embedding" / "stage.py"
    text = stage.read_text(encoding="utf-8") + "\nfrom pipeline.db import open_database\n"
    copy = tmp_path / "pipeline" / "embedding" / "stage.py"
    copy.parent.mkdir(parents=True)
    copy.write_text(text, encoding="utf-8")
    assert "pipeline.db" in imported(copy, "pipeline.embedding.stage")
    assert not any(within("pipeline.db", a) for a in ALLOWED["pipeline.embedding"])


@pytest.mark.parametrize("module", sorted(modules()))
def test_no_module_over_300_lines(module):
    lines = len(modules()[module].read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{module} has {lines} lines: split it by concern"
