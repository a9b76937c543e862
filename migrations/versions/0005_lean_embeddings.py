"""Leaner embeddings for a faster load: vectors inline, one index and one foreign key per row.

- Vectors are kept in the table's own pages (STORAGE PLAIN) in every space's partition where they
  fit. A 512-d vector is 2 KB, just over the size at which PostgreSQL moves a value out of line
  into the TOAST table (pgvector's type is EXTERNAL): every insert then writes two tables and two
  indexes, and every exact or filtered scan fetches each vector from the TOAST table. Vectors of
  more than INLINE_MAX_DIMENSION dimensions would not fit a page; those partitions keep the default.
- The primary key becomes (object_id, space_id): it serves the loader's lookups of a space's
  (space_id, object_id) and the cascade from objects (by object_id) alike, so the separate
  ix_embeddings_object_id goes — one index fewer to write per row.
- The foreign key to embedding_spaces goes: a row of space N can only live in the partition
  embeddings_space_N, which exists only once space N is registered, so the per-row check proves
  nothing and cost a quarter of the load's time. (The key to objects stays.)

New partitions get the same storage (pipeline.db.spaces).

Revision ID: 0005_lean_embeddings
Revises: 0004_analyst_functions
Create Date: 2026-11-22
"""

from collections.abc import Sequence

from alembic import context, op
from sqlalchemy import text

revision: str = "0005_lean_embeddings"
down_revision: str | None = "0004_analyst_functions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INLINE_MAX_DIMENSION = 1900  # 7.6 KB of floats + the row's other columns < the 8 KB page


def upgrade() -> None:
    op.execute("ALTER TABLE embeddings DROP CONSTRAINT fk_embeddings_space_id_embedding_spaces")
    op.execute("ALTER TABLE embeddings DROP CONSTRAINT pk_embeddings")
    op.execute("DROP INDEX ix_embeddings_object_id")
    op.execute(
        "ALTER TABLE embeddings ADD CONSTRAINT pk_embeddings PRIMARY KEY (object_id, space_id)"
    )
    _set_storage("PLAIN")


def downgrade() -> None:
    _set_storage("DEFAULT")
    op.execute("ALTER TABLE embeddings DROP CONSTRAINT pk_embeddings")
    op.execute(
        "ALTER TABLE embeddings ADD CONSTRAINT pk_embeddings PRIMARY KEY (space_id, object_id)"
    )
    op.execute("CREATE INDEX ix_embeddings_object_id ON embeddings (object_id)")
    op.execute(
        "ALTER TABLE embeddings ADD CONSTRAINT fk_embeddings_space_id_embedding_spaces "
        "FOREIGN KEY (space_id) REFERENCES embedding_spaces (space_id)"
    )


def _set_storage(storage: str) -> None:
    if context.is_offline_mode():
        # `alembic upgrade head --sql`: the spaces are known only when the script runs.
        op.execute(
            f"""
            DO $do$
            DECLARE space integer;
            BEGIN
                FOR space IN SELECT space_id FROM embedding_spaces
                             WHERE dimension <= {INLINE_MAX_DIMENSION} LOOP
                    EXECUTE format('ALTER TABLE embeddings_space_%s ALTER COLUMN embedding
                                    SET STORAGE {storage}', space);
                END LOOP;
            END
            $do$
            """
        )
        return
    spaces = op.get_bind().execute(
        text("SELECT space_id FROM embedding_spaces WHERE dimension <= :dim"),
        {"dim": INLINE_MAX_DIMENSION},
    )
    for (space_id,) in spaces:
        # Only rows written from now on change; existing rows stay where they are until rewritten.
        op.execute(
            f"ALTER TABLE embeddings_space_{int(space_id)} ALTER COLUMN embedding SET STORAGE {storage}"
        )
