"""Alembic environment (async template), reading the same settings as imgvec itself.

`imgvec db upgrade` (and first use) hands in an open connection through
`config.attributes["connection"]`; plain `alembic upgrade head` from the repository root resolves
DATABASE_URL or the embedded server exactly as the CLI does.
"""

import asyncio

from alembic import context
from sqlalchemy import MetaData
from sqlalchemy.engine import Connection

from pipeline.db.schema import MIGRATION_LOCK_KEY, NAMING_CONVENTION

config = context.config
# The schema is written as SQL in the revisions (partitions, pgvector indexes, comments): no
# autogenerate, but the same naming convention for any op.create_* a later revision uses.
target_metadata = MetaData(naming_convention=NAMING_CONVENTION)


def do_run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection, target_metadata=target_metadata, transaction_per_migration=False
    )
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
    context.configure(
        url="postgresql://",
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
elif (connection := config.attributes.get("connection")) is not None:
    do_run_migrations(connection)
else:
    asyncio.run(run_async_migrations())
