"""Runs name the task that made them: on N machines (Cloud Run Jobs, Kubernetes Indexed Jobs, Slurm
arrays) every task writes its own list, embed and load rows, and "which task failed, and how far
did it get?" is a question for the table, not for the work dir's files.

- `runs.sharded_run text`: the id of the sharded run the row is one task's stage of
  (`imgvec run --run-id`, or the engine's execution id); NULL outside a sharded run.
- `runs.shard text`: that task, `I/N` (0-based, as `--shard` takes it); also set by a lone
  `imgvec embed --shard I/N`.
- An index on `sharded_run`, for `imgvec status` (only the rows that have one).

Revision ID: 0011_runs_shard
Revises: 0010_attributes
Create Date: 2026-11-30
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0011_runs_shard"
down_revision: str | None = "0010_attributes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "ALTER TABLE runs ADD COLUMN sharded_run text, ADD COLUMN shard text, "
        "ADD CONSTRAINT ck_runs_shard CHECK (shard ~ '^[0-9]+/[0-9]+$')"
    )
    op.execute(
        "CREATE INDEX ix_runs_sharded_run ON runs (sharded_run) WHERE sharded_run IS NOT NULL"
    )
    op.execute(
        "COMMENT ON COLUMN runs.sharded_run IS 'The sharded run this row is one task''s stage of "
        "(imgvec run --run-id, or the batch engine''s execution id); NULL outside one.'"
    )
    op.execute(
        "COMMENT ON COLUMN runs.shard IS 'The task: I/N, task I (0-based) of N, as --shard takes "
        "it; NULL when the stage ran unsharded.'"
    )


def downgrade() -> None:
    op.execute("DROP INDEX ix_runs_sharded_run")
    op.execute(
        "ALTER TABLE runs DROP CONSTRAINT ck_runs_shard, DROP COLUMN sharded_run, DROP COLUMN shard"
    )
