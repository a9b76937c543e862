"""Alembic environment (async template), reading the same settings as imgvec itself.

`imgvec db upgrade` (and first use) hands in an open connection through
`config.attributes["connection"]`; plain `alembic upgrade head` (or `check`, `revision
--autogenerate`, `upgrade head --sql`) from the repository root resolves DATABASE_URL or the
embedded server exactly as the CLI does.
"""

import asyncio
import re
from logging.config import fileConfig

from alembic import context
from sqlalchemy.engine import Connection

from pipeline.db.schema import MIGRATION_LOCK_KEY
from pipeline.db.tables import metadata

config = context.config
# `alembic` from the command line: alembic.ini's logging. imgvec's own Config() has no file and
# leaves the process's logging alone.
if config.config_file_name is not None and config.attributes.get("connection") is None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)

# The tables as they are at head (pipeline/db/tables.py): what `alembic check` and
# `revision --autogenerate` compare the database with.
target_metadata = metadata

# Created at run time, one per embedding space (pipeline.db.spaces), with their HNSW indexes
# (pipeline.loading.indexing).
_PARTITION = re.compile(r"embeddings_space_\d+")


def include_name(name, type_, parent_names) -> bool:
    if type_ == "table":
        return not _PARTITION.fullmatch(name or "")
    return True


def include_object(object_, name, type_, reflected, compare_to) -> bool:
    if type_ == "table" and _PARTITION.fullmatch(name or ""):
        return False
    if type_ == "index" and reflected and compare_to is None:
        # Expression indexes (which SQLAlchemy cannot describe) are not compared.
        expressions = getattr(object_, "expressions", ())
        if any(not hasattr(e, "name") for e in expressions):
            return False
    return True


def _configure(**kwargs) -> None:
    context.configure(
        target_metadata=target_metadata,
        include_name=include_name,
        include_object=include_object,
        compare_type=True,
        compare_server_default=True,
        **kwargs,
    )


def do_run_migrations(connection: Connection) -> None:
    _configure(connection=connection, transaction_per_migration=False)
    with context.begin_transaction():
        # Concurrent first uses: one process migrates, the others wait here and then find the
        # version table at head.
        context.execute(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})")
        context.run_migrations()


async def run_async_migrations() -> None:
    from pipeline.db.connection import resolve_url
    from pipeline.db.schema import async_engine
    from pipeline.settings import Settings

    engine = async_engine(await resolve_url(Settings()))
    async with engine.connect() as connection:
        await connection.run_sync(do_run_migrations)
        await connection.commit()
    await engine.dispose()


def run_migrations_offline() -> None:
    """`alembic upgrade head --sql`: the SQL for a DBA, no database needed. Steps that depend on
    the data (which spaces exist, the pgvector version) are emitted as DO blocks that decide on
    the server when the script runs."""
    _configure(url="postgresql://", literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.execute(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})")
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
elif (connection := config.attributes.get("connection")) is not None:
    do_run_migrations(connection)
else:
    asyncio.run(run_async_migrations())
