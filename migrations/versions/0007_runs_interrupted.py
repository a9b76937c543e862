"""Runs can end `interrupted`: stopped by Ctrl-C or SIGTERM, with their counts, resumable.

Revision ID: 0007_runs_interrupted
Revises: 0006_sources_identity
Create Date: 2026-11-30
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007_runs_interrupted"
down_revision: str | None = "0006_sources_identity"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_STATUSES = "'running', 'succeeded', 'partial', 'failed'"


def upgrade() -> None:
    _status_check(_STATUSES + ", 'interrupted'")
    op.execute(
        "COMMENT ON COLUMN runs.status IS 'running, succeeded, partial (finished with failures), "
        "failed, or interrupted (stopped by a signal; rerun the same command to resume).'"
    )


def downgrade() -> None:
    op.execute("UPDATE runs SET status = 'failed' WHERE status = 'interrupted'")
    _status_check(_STATUSES)
    op.execute(
        "COMMENT ON COLUMN runs.status IS "
        "'running, succeeded, partial (finished with failures) or failed.'"
    )


def _status_check(statuses: str) -> None:
    op.execute("ALTER TABLE runs DROP CONSTRAINT ck_runs_status")
    op.execute(f"ALTER TABLE runs ADD CONSTRAINT ck_runs_status CHECK (status IN ({statuses}))")
