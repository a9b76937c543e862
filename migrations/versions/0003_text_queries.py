"""Saved text queries, so analysts search images by words from SQL alone.

Revision ID: 0003_text_queries
Revises: 0002_loaded_parts
Create Date: 2026-11-22
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003_text_queries"
down_revision: str | None = "0002_loaded_parts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COMMENTS = [
    (
        "FUNCTION imgvec_default_space()",
        "The space_id of the default embedding space (the one behind image_embeddings).",
    ),
    (
        "TABLE text_embeddings",
        "Text vectors per space, for text-to-image search. A row with no embedding yet is "
        "pending: `imgvec text-embed` (or the next `imgvec run` of that space) fills it.",
    ),
    ("COLUMN text_embeddings.text_embedding_id", "Key."),
    (
        "COLUMN text_embeddings.text",
        "The words, e.g. 'red car' (CLIP reads up to 77 tokens, Vertex AI 32).",
    ),
    (
        "COLUMN text_embeddings.space_id",
        "The space the vector lives in; defaults to the default space.",
    ),
    ("COLUMN text_embeddings.embedding", "The text's vector in that space; NULL while pending."),
    ("COLUMN text_embeddings.created_at", "When the text was saved."),
    ("COLUMN text_embeddings.embedded_at", "When its vector was computed."),
    (
        "VIEW text_queries",
        "Saved texts of the default space: ORDER BY embedding <-> (SELECT embedding FROM "
        "text_queries WHERE text = 'red car'). INSERT INTO text_queries (text) VALUES ('…') saves a new one.",
    ),
    ("COLUMN text_queries.text", "The words."),
    ("COLUMN text_queries.embedding", "Their vector in the default space; NULL while pending."),
    ("COLUMN text_queries.created_at", "When the text was saved."),
    ("COLUMN text_queries.embedded_at", "When its vector was computed."),
]


def upgrade() -> None:
    for statement in (
        """CREATE FUNCTION imgvec_default_space() RETURNS integer LANGUAGE sql STABLE
           AS $$ SELECT space_id FROM embedding_spaces WHERE is_default $$""",
        """CREATE TABLE text_embeddings (
            text_embedding_id bigint GENERATED ALWAYS AS IDENTITY,
            text         text NOT NULL,
            space_id     integer NOT NULL DEFAULT imgvec_default_space(),
            embedding    vector,
            created_at   timestamptz NOT NULL DEFAULT now(),
            embedded_at  timestamptz,
            CONSTRAINT pk_text_embeddings PRIMARY KEY (text_embedding_id),
            CONSTRAINT uq_text_embeddings_text_space_id UNIQUE (text, space_id),
            CONSTRAINT fk_text_embeddings_space_id_embedding_spaces FOREIGN KEY (space_id)
                REFERENCES embedding_spaces (space_id)
        )""",
        # A simple view over one table: PostgreSQL makes it insertable as it is.
        """CREATE VIEW text_queries AS
           SELECT text, embedding, created_at, embedded_at FROM text_embeddings
           WHERE space_id = imgvec_default_space()""",
    ):
        op.execute(statement)
    for target, text in COMMENTS:
        op.execute(f"COMMENT ON {target} IS '{text.replace(chr(39), chr(39) * 2)}'")


def downgrade() -> None:
    op.execute("DROP VIEW text_queries")
    op.execute("DROP TABLE text_embeddings")
    op.execute("DROP FUNCTION imgvec_default_space()")
