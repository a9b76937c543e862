"""The schema's head revision, read from the migration files without Alembic, is Alembic's own."""

from pipeline.db import schema


def test_head_read_from_the_files_is_alembics_head():
    schema.head_revision.cache_clear()
    assert schema.head_revision() == schema._alembic_head()
    assert schema.head_revision().startswith(f"{len(list_versions()):04d}_")


def list_versions():
    return sorted(schema.migrations_dir().joinpath("versions").glob("0*.py"))
