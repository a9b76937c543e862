"""Loaded parts: which embed-stage CSV parts are in the embeddings table (exactly-once loads).

Revision ID: 0002_loaded_parts
Revises: 0001_initial
Create Date: 2026-11-22
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002_loaded_parts"
down_revision: str | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE loaded_parts (
            space_id   integer NOT NULL,
            part       text NOT NULL,
            rows       integer NOT NULL,
            loaded_at  timestamptz NOT NULL DEFAULT now(),
            run_id     bigint,
            CONSTRAINT pk_loaded_parts PRIMARY KEY (space_id, part),
            CONSTRAINT fk_loaded_parts_space_id_embedding_spaces FOREIGN KEY (space_id)
                REFERENCES embedding_spaces (space_id),
            CONSTRAINT fk_loaded_parts_run_id_runs FOREIGN KEY (run_id)
                REFERENCES runs (run_id) ON DELETE SET NULL
        )
        """
    )
    comments = {
        None: "Embed-stage CSV parts already loaded into embeddings; written in the same transaction "
        "as the part's rows, so a crash never loads a part twice or half.",
        "space_id": "The space the part belongs to.",
        "part": "Where the part lives: its path or gs:// URI, e.g. /work/embeddings/clip--ViT-B-32--laion2b_s34b_b79k--512/part-00017.csv.",
        "rows": "Vectors the part held.",
        "loaded_at": "When it was loaded.",
        "run_id": "The load run that loaded it.",
    }
    for column, text in comments.items():
        target = "TABLE loaded_parts" if column is None else f"COLUMN loaded_parts.{column}"
        op.execute(f"COMMENT ON {target} IS '{text.replace(chr(39), chr(39) * 2)}'")


def downgrade() -> None:
    op.execute("DROP TABLE loaded_parts")
