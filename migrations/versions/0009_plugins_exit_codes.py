"""Sources are plug-ins: objects.scheme and sources.kind are whatever kind of source listed the
object, so the checks that named the built-in kinds go (a source added by a plug-in is not a schema
change). Runs record the exit code the command ended with, beside their status.

Revision ID: 0009_plugins_exit_codes
Revises: 0008_runs_backend
Create Date: 2026-11-30
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009_plugins_exit_codes"
down_revision: str | None = "0008_runs_backend"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (0001's comment named a command that never existed)
OBJECTS_COMMENT = (
    "One row per image object ever listed, keyed by its full locator. Rows are never deleted by "
    "a listing: an object that disappears gets deleted_at, and its embeddings are kept (it is no "
    "longer searched)."
)
OLD_OBJECTS_COMMENT = (
    "One row per image object ever listed, keyed by its full locator. Rows are never deleted by "
    "a listing: an object that disappears gets deleted_at, and its embeddings stay until "
    "`imgvec purge`."
)
SCHEME_COMMENT = (
    "Kind of source that listed the object (the scheme of its source plug-in: gs, s3, file, ...)."
)
OLD_SCHEME_COMMENT = "Source kind: gs, s3 or file."


def upgrade() -> None:
    op.execute("ALTER TABLE objects DROP CONSTRAINT ck_objects_scheme")
    op.execute("ALTER TABLE sources DROP CONSTRAINT ck_sources_kind")
    op.execute(f"COMMENT ON COLUMN objects.scheme IS '{SCHEME_COMMENT}'")
    op.execute(f"COMMENT ON TABLE objects IS '{OBJECTS_COMMENT}'")
    op.execute("ALTER TABLE runs ADD COLUMN exit_code integer")
    op.execute(
        "COMMENT ON COLUMN runs.exit_code IS 'How the run ended for a scheduler: 0 done, 3 done "
        "with failures, 1 failed, 2 bad usage, 75 retry later, 130/143 stopped by a signal; NULL "
        "while running.'"
    )


def downgrade() -> None:
    op.execute("ALTER TABLE runs DROP COLUMN exit_code")
    # Objects listed by plug-in sources would break the old check: they go with it.
    op.execute("DELETE FROM objects WHERE scheme NOT IN ('gs', 's3', 'file')")
    op.execute("DELETE FROM sources WHERE kind NOT IN ('gs', 's3', 'file', 'list')")
    op.execute(
        "ALTER TABLE sources ADD CONSTRAINT ck_sources_kind "
        "CHECK (kind IN ('gs', 's3', 'file', 'list'))"
    )
    op.execute(
        "ALTER TABLE objects ADD CONSTRAINT ck_objects_scheme CHECK (scheme IN ('gs', 's3', 'file'))"
    )
    op.execute(f"COMMENT ON COLUMN objects.scheme IS '{OLD_SCHEME_COMMENT}'")
    op.execute(f"COMMENT ON TABLE objects IS '{OLD_OBJECTS_COMMENT}'")
