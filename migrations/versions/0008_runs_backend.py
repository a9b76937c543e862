"""Runs remember the database session that opened them, so that a run whose process died without
closing it (SIGKILL, out of memory, a second Ctrl-C) is closed as `interrupted` by the next run
instead of showing `running` for ever.

Revision ID: 0008_runs_backend
Revises: 0007_runs_interrupted
Create Date: 2026-11-30
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008_runs_backend"
down_revision: str | None = "0007_runs_interrupted"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "ALTER TABLE runs ADD COLUMN backend_pid integer, ADD COLUMN backend_start timestamptz"
    )
    op.execute(
        "COMMENT ON COLUMN runs.backend_pid IS 'PostgreSQL backend (pg_backend_pid) of the "
        "session that runs the stage: while it lives, the run is alive.'"
    )
    op.execute(
        "COMMENT ON COLUMN runs.backend_start IS 'When that backend started (pids are reused).'"
    )


def downgrade() -> None:
    op.execute("ALTER TABLE runs DROP COLUMN backend_pid, DROP COLUMN backend_start")
