"""One consistent, read-only view of the content database for the length of a backup.

PostgreSQL: a ``REPEATABLE READ READ ONLY`` transaction; every table is read from the snapshot
its first statement took, whatever commits meanwhile, and nothing is locked against writers.
SQLite (the embedded default): an explicit ``BEGIN``, a read transaction that WAL mode keeps
on one snapshot until it ends.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, select, text

from core.store.db import erasure_receipts
from core.store.db_errors import translate_errors

# Receipts are written (requested_at) moments before they commit; this covers any clock skew.
RECENT = timedelta(minutes=10)


@dataclass(frozen=True)
class Snapshot:
    connection: Connection
    taken_at: datetime
    alembic_revision: str
    dialect: str
    # Erasures under way when the snapshot was taken: their rows are left out.
    erasing_subjects: frozenset[tuple[str, str]]  # (tenant, subject_ref)
    erasing_tenants: frozenset[str]
    # Receipts of the last RECENT that the snapshot sees: one that appears later began during
    # the backup (BackupWriter checks).
    seen_receipts: frozenset[str]

    def stream(self, statement: Any, *, batch_rows: int) -> Any:
        options = self.connection.execution_options(stream_results=True, yield_per=batch_rows)
        return options.execute(statement)


@contextmanager
def snapshot(engine: Engine) -> Iterator[Snapshot]:
    with translate_errors(), engine.connect() as connection:
        postgres = connection.dialect.name == "postgresql"
        if postgres:
            connection = connection.execution_options(isolation_level="REPEATABLE READ")
            connection.begin()
            connection.execute(text("SET TRANSACTION READ ONLY"))
            taken_at = connection.execute(text("SELECT now()")).scalar_one()
        else:
            connection.exec_driver_sql("BEGIN")
            taken_at = datetime.now(UTC)
        revision = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
        aware = taken_at if taken_at.tzinfo else taken_at.replace(tzinfo=UTC)
        seen = connection.execute(
            select(erasure_receipts.c.receipt_id).where(
                erasure_receipts.c.requested_at >= aware - RECENT
            )
        ).scalars()
        seen_receipts = frozenset(seen)
        pending = connection.execute(
            select(
                erasure_receipts.c.scope, erasure_receipts.c.tenant, erasure_receipts.c.subject_ref
            ).where(erasure_receipts.c.status == "pending")
        ).all()
        try:
            yield Snapshot(
                connection=connection,
                taken_at=aware,
                alembic_revision=str(revision or ""),
                dialect=connection.dialect.name,
                erasing_subjects=frozenset(
                    (row.tenant, row.subject_ref) for row in pending if row.subject_ref
                ),
                erasing_tenants=frozenset(row.tenant for row in pending if not row.subject_ref),
                seen_receipts=seen_receipts,
            )
        finally:
            if postgres:
                connection.rollback()
            else:
                connection.exec_driver_sql("ROLLBACK")
