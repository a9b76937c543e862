"""SQLAlchemy definitions of the tables the migrations build: Alembic's `target_metadata`.

The migrations (SQL in `migrations/versions/`) remain what creates the schema; these definitions
say what it is at head, so that `alembic check` passes on a current database and
`alembic revision --autogenerate` writes only real differences. A migration that changes a table,
a column, an index, a key or a comment changes this module too (comments:
pipeline.db.table_comments; `tests/test_alembic.py` fails until they agree).

Not described here, and ignored by autogenerate (migrations/env.py, `include_object`): the
per-space partitions `embeddings_space_<id>` and their HNSW indexes (created at run time by
pipeline.db.spaces and pipeline.loading.indexing), the views and the functions. Check constraints
are written out for the reader; Alembic does not compare them.

Nothing at run time imports this module: asyncpg carries the data.
"""

from __future__ import annotations

from pgvector.sqlalchemy import Vector
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, TIMESTAMP

from pipeline.db.schema import NAMING_CONVENTION
from pipeline.db.table_comments import COMMENTS

metadata = MetaData(naming_convention=NAMING_CONVENTION)

TIMESTAMPTZ = TIMESTAMP(timezone=True)
NOW = text("now()")


def _key(name: str, kind: type[Integer] = Integer) -> Column:
    """The table's key: an integer the database numbers (GENERATED ALWAYS AS IDENTITY)."""
    return Column(name, kind, Identity(always=True), primary_key=True)


def _default_flag(table: str) -> tuple[Column, Index]:
    """The is_default column of `table`, and the partial unique index that lets at most one row
    be the default."""
    return (
        Column("is_default", Boolean, nullable=False, server_default=text("false")),
        Index(
            f"uq_{table}_is_default", "is_default", unique=True, postgresql_where=text("is_default")
        ),
    )


sources = Table(
    "sources",
    metadata,
    _key("source_id"),
    Column("root", Text, nullable=False, unique=True),
    Column("kind", Text, nullable=False),
    Column("spec", Text, nullable=False),
    *_default_flag("sources"),
    Column("first_listed_at", TIMESTAMPTZ, nullable=False, server_default=NOW),
    Column("last_listed_at", TIMESTAMPTZ, nullable=False, server_default=NOW),
)

objects = Table(
    "objects",
    metadata,
    _key("object_id", BigInteger),
    Column("locator", Text, nullable=False, unique=True),
    Column("scheme", Text, nullable=False),
    Column("bucket", Text),
    Column("key", Text, nullable=False),
    Column("name", Text, nullable=False, index=True),
    Column("size", BigInteger),
    Column("generation", Text),
    Column("etag", Text),
    Column("md5", Text),
    Column("crc32c", Text),
    Column("content_hash", Text, index=True),
    Column("content_type", Text),
    Column("updated_at", TIMESTAMPTZ),
    Column("first_seen", TIMESTAMPTZ, nullable=False, server_default=NOW),
    Column("last_seen", TIMESTAMPTZ, nullable=False, server_default=NOW),
    Column("deleted_at", TIMESTAMPTZ),
    Column(
        "source_id",
        Integer,
        ForeignKey("sources.source_id"),
        server_default=text("imgvec_default_source()"),
    ),
    Column("attributes", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Index(
        "ix_objects_attributes",
        "attributes",
        postgresql_using="gin",
        postgresql_ops={"attributes": "jsonb_path_ops"},
    ),
    Index(
        "uq_objects_source_id_name",
        "source_id",
        "name",
        unique=True,
        postgresql_where=text("deleted_at IS NULL"),
    ),
)

embedding_spaces = Table(
    "embedding_spaces",
    metadata,
    _key("space_id"),
    Column("name", Text, nullable=False, unique=True),
    Column("backend", Text, nullable=False),
    Column("model", Text, nullable=False),
    Column("weights", Text, nullable=False),
    Column("dimension", Integer, nullable=False),
    Column("metric", Text, nullable=False, server_default=text("'cosine'::text")),
    Column("normalized", Boolean, nullable=False),
    *_default_flag("embedding_spaces"),
    Column("created_at", TIMESTAMPTZ, nullable=False, server_default=NOW),
    CheckConstraint("dimension BETWEEN 1 AND 16000", name="dimension"),
    CheckConstraint("metric IN ('cosine', 'l2', 'ip')", name="metric"),
)

# Partitioned by space: one partition embeddings_space_<id> per space (pipeline.db.spaces), each
# with its HNSW index on embedding::vector(<dim>) (pipeline.loading.indexing). No key to embedding_spaces (0005).
embeddings = Table(
    "embeddings",
    metadata,
    Column("space_id", Integer, nullable=False),
    Column(
        "object_id",
        BigInteger,
        ForeignKey("objects.object_id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("embedding", Vector(), nullable=False),
    Column("content_hash", Text),
    Column("created_at", TIMESTAMPTZ, nullable=False, server_default=NOW),
    PrimaryKeyConstraint("object_id", "space_id"),
    postgresql_partition_by="LIST (space_id)",
)

runs = Table(
    "runs",
    metadata,
    _key("run_id", BigInteger),
    Column("stage", Text, nullable=False),
    Column("source", Text),
    Column("space_id", Integer, ForeignKey("embedding_spaces.space_id")),
    Column("started_at", TIMESTAMPTZ, nullable=False, server_default=NOW, index=True),
    Column("finished_at", TIMESTAMPTZ),
    Column("status", Text, nullable=False, server_default=text("'running'::text")),
    Column("counts", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("error", Text),
    Column("backend_pid", Integer),
    Column("backend_start", TIMESTAMPTZ),
    Column("exit_code", Integer),
    Column("sharded_run", Text),
    Column("shard", Text),
    CheckConstraint("stage IN ('list', 'embed', 'load', 'index', 'run')", name="stage"),
    CheckConstraint("shard ~ '^[0-9]+/[0-9]+$'", name="shard"),
    CheckConstraint(
        "status IN ('running', 'succeeded', 'partial', 'failed', 'interrupted')", name="status"
    ),
    Index("ix_runs_sharded_run", "sharded_run", postgresql_where=text("sharded_run IS NOT NULL")),
)

failures = Table(
    "failures",
    metadata,
    _key("failure_id", BigInteger),
    Column("locator", Text, nullable=False),
    Column("stage", Text, nullable=False),
    Column("space_id", Integer, ForeignKey("embedding_spaces.space_id")),
    Column("reason", Text, nullable=False),
    Column("attempts", Integer, nullable=False, server_default=text("1")),
    Column("first_failed_at", TIMESTAMPTZ, nullable=False, server_default=NOW),
    Column("last_failed_at", TIMESTAMPTZ, nullable=False, server_default=NOW),
    Column("run_id", BigInteger, ForeignKey("runs.run_id", ondelete="SET NULL")),
    UniqueConstraint("locator", "stage", "space_id", postgresql_nulls_not_distinct=True),
    CheckConstraint("stage IN ('list', 'embed', 'load')", name="stage"),
)

loaded_parts = Table(
    "loaded_parts",
    metadata,
    Column("space_id", Integer, ForeignKey("embedding_spaces.space_id"), nullable=False),
    Column("part", Text, nullable=False),
    Column("rows", Integer, nullable=False),
    Column("loaded_at", TIMESTAMPTZ, nullable=False, server_default=NOW),
    Column("run_id", BigInteger, ForeignKey("runs.run_id", ondelete="SET NULL")),
    PrimaryKeyConstraint("space_id", "part"),
)

text_embeddings = Table(
    "text_embeddings",
    metadata,
    _key("text_embedding_id", BigInteger),
    Column("text", Text, nullable=False),
    Column(
        "space_id",
        Integer,
        ForeignKey("embedding_spaces.space_id"),
        nullable=False,
        server_default=text("imgvec_default_space()"),
    ),
    Column("embedding", Vector()),
    Column("created_at", TIMESTAMPTZ, nullable=False, server_default=NOW),
    Column("embedded_at", TIMESTAMPTZ),
    UniqueConstraint("text", "space_id"),
)

for _name, (_comment, _columns) in COMMENTS.items():
    _table = metadata.tables[_name]
    _table.comment = _comment
    for _column, _text in _columns.items():
        _table.c[_column].comment = _text
