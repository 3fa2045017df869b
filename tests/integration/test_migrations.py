"""Alembic migrations produce exactly the schema core/store/db.py describes."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from core.store.db import make_engine, metadata
from tests.conftest import both_backends


@both_backends
def test_migrations_match_the_models(database_url: str) -> None:
    """No difference between the migrated database and the SQLAlchemy tables."""
    engine = make_engine(database_url)
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), metadata)
    engine.dispose()
    assert diff == []
