"""The schema is owned by Alembic: upgrade on first use, `imgvec db upgrade`, downgrade for tests.

asyncpg carries the data; SQLAlchemy (on the same asyncpg driver) is only here to run Alembic.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import TYPE_CHECKING

import pipeline

# Alembic and SQLAlchemy's engine are imported only to migrate: every command opens the database,
# and checking that the schema is current needs neither (they cost ~0.2 s a process).
if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy.ext.asyncio import AsyncEngine

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
# pg_advisory_xact_lock key serialising concurrent migrations ("imgvec" in ASCII).
MIGRATION_LOCK_KEY = 0x696D67766563


def migrations_dir() -> Path:
    """`migrations/` in a checkout, or the copy an installed wheel carries inside the package."""
    package = Path(pipeline.__file__).parent
    for candidate in (package / "_migrations", package.parent / "migrations"):
        if (candidate / "env.py").exists():
            return candidate
    raise FileNotFoundError("imgvec's migrations are missing from this installation")


def alembic_config() -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    return config


@functools.cache
def head_revision() -> str:
    """The newest revision, read from the migration files' `revision` / `down_revision` lines
    (Alembic's own reading imports every migration: that is left for when one must run)."""
    revisions, parents = set(), set()
    for path in migrations_dir().joinpath("versions").glob("*.py"):
        text = path.read_text(encoding="utf-8")
        revisions.update(_REVISION.findall(text))
        parents.update(_DOWN_REVISION.findall(text))
    heads = revisions - parents
    if len(heads) == 1:
        return heads.pop()
    return _alembic_head()  # not laid out as expected: ask Alembic


_REVISION = re.compile(r"^revision(?:: str)? = [\"']([^\"']+)[\"']", re.M)
_DOWN_REVISION = re.compile(r"^down_revision(?:: [^=]+)? = [\"']([^\"']+)[\"']", re.M)


def _alembic_head() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def async_engine(url: str) -> AsyncEngine:
    """An engine whose connections come from `pipeline.db.connection.connect` (same retries,
    same URL handling, unix sockets included)."""
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.pool import NullPool

    from pipeline.db.connection import connect

    async def creator():
        return await connect(url, register_vector=False)

    return create_async_engine("postgresql+asyncpg://", async_creator=creator, poolclass=NullPool)


async def upgrade(url: str, revision: str = "head") -> None:
    from alembic import command

    await _run(url, command.upgrade, revision)


async def downgrade(url: str, revision: str) -> None:
    from alembic import command

    await _run(url, command.downgrade, revision)


async def current_revision(conn) -> str | None:
    """The revision an asyncpg connection's database is at (None: never migrated)."""
    exists = await conn.fetchval("SELECT to_regclass('alembic_version') IS NOT NULL")
    if not exists:
        return None
    return await conn.fetchval("SELECT version_num FROM alembic_version")


async def ensure_schema(url: str, conn) -> bool:
    """Upgrade to head unless already there (the common, cheap case). True when it migrated."""
    if await current_revision(conn) == head_revision():
        return False
    await upgrade(url)
    return True


async def _run(url: str, fn, revision: str) -> None:
    config = alembic_config()
    engine = async_engine(url)
    try:
        async with engine.connect() as connection:

            def run(sync_connection):
                config.attributes["connection"] = sync_connection
                fn(config, revision)

            await connection.run_sync(run)
            await connection.commit()
    finally:
        await engine.dispose()
