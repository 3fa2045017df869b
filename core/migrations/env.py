"""Alembic environment: runs migrations online against the URL set by ``core.store.db.migrate``."""

from __future__ import annotations

from alembic import context

from core.store.db import make_engine, metadata

config = context.config
url = config.get_main_option("sqlalchemy.url")
assert url, "core.store.db.migrate sets sqlalchemy.url"

engine = make_engine(url)
with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
