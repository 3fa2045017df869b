"""Erasure receipts: one per request, idempotent on ``request_id``, holding no personal data.

A receipt names the subject only by its keyed hash (``subject_ref``), records what was removed
per store as counts, the data keys destroyed, and when each step happened. ``status`` goes
pending -> completed (or failed, with the reason); ``stage`` says where a pending one is.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, select, update

from core.crypto import subject_ref as subject_ref  # re-exported: the receipts' name
from core.errors import ValidationError
from core.models import as_utc
from core.store.db import erasure_receipts, insert_for
from core.store.db_errors import translate_errors

PENDING, COMPLETED, FAILED = "pending", "completed", "failed"
REQUESTED, QUEUED, ERASING, DONE = "requested", "queued", "erasing", "done"
SUBJECT, TENANT = "subject", "tenant"


@dataclass(frozen=True, slots=True)
class Receipt:
    """What ``erase_subject`` / ``erase_tenant`` return and ``erasure_status`` reports."""

    receipt_id: str
    status: str
    scope: str
    tenant: str
    subject_ref: str | None
    stage: str
    requested_at: datetime
    started_at: datetime | None = None
    completed_at: datetime | None = None
    counts: dict[str, Any] = field(default_factory=dict)
    key_ids: list[str] = field(default_factory=list)
    reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        def when(value: datetime | None) -> str | None:
            return None if value is None else value.isoformat()

        return {
            "receipt_id": self.receipt_id,
            "status": self.status,
            "stage": self.stage,
            "scope": self.scope,
            "tenant": self.tenant,
            "subject_ref": self.subject_ref,
            "requested_at": when(self.requested_at),
            "started_at": when(self.started_at),
            "completed_at": when(self.completed_at),
            "counts": self.counts,
            "key_ids": self.key_ids,
            "reason": self.reason,
        }


def _aware(value: datetime | None) -> datetime | None:
    return None if value is None else as_utc(value)


def _receipt(row: Any) -> Receipt:
    requested = _aware(row.requested_at)
    assert requested is not None
    return Receipt(
        receipt_id=row.receipt_id,
        status=row.status,
        scope=row.scope,
        tenant=row.tenant,
        subject_ref=row.subject_ref,
        stage=row.stage,
        requested_at=requested,
        started_at=_aware(row.started_at),
        completed_at=_aware(row.completed_at),
        counts=dict(row.counts or {}),
        key_ids=list(row.key_ids or []),
        reason=row.reason,
    )


def open_receipt(
    engine: Engine, *, request_id: str, scope: str, tenant: str, ref: str | None
) -> tuple[Receipt, bool]:
    """The receipt of ``request_id``: a new one (True), or the one a replay finds (False).
    The same ``request_id`` with other arguments raises ``ValidationError`` and changes
    nothing."""
    digest = hashlib.sha256(f"{scope}|{tenant}|{ref or ''}".encode()).hexdigest()
    receipt_id = f"er-{secrets.token_hex(12)}"
    with translate_errors(), engine.begin() as connection:
        created = connection.execute(
            insert_for(connection, erasure_receipts)
            .values(
                receipt_id=receipt_id,
                request_id=request_id,
                scope=scope,
                tenant=tenant,
                subject_ref=ref,
                args_digest=digest,
                status=PENDING,
                stage=REQUESTED,
                requested_at=datetime.now(UTC),
                counts={},
                key_ids=[],
            )
            .on_conflict_do_nothing(index_elements=["request_id"])
        ).rowcount
        row = connection.execute(
            select(erasure_receipts).where(erasure_receipts.c.request_id == request_id)
        ).one()
    if row.args_digest != digest:
        raise ValidationError(
            "request_id",
            f"{request_id!r} was already used for another erasure (receipt {row.receipt_id})",
        )
    return _receipt(row), bool(created)


def load(engine: Engine, receipt_id: str) -> Receipt | None:
    with translate_errors(), engine.connect() as connection:
        row = connection.execute(
            select(erasure_receipts).where(erasure_receipts.c.receipt_id == receipt_id)
        ).first()
    return None if row is None else _receipt(row)


def of_subject(engine: Engine, tenant: str, ref: str) -> list[Receipt]:
    """Every receipt of one subject (by its keyed hash), oldest first."""
    with translate_errors(), engine.connect() as connection:
        rows = connection.execute(
            select(erasure_receipts)
            .where((erasure_receipts.c.tenant == tenant) & (erasure_receipts.c.subject_ref == ref))
            .order_by(erasure_receipts.c.requested_at)
        ).all()
    return [_receipt(row) for row in rows]


def update_receipt(engine: Engine, receipt_id: str, **values: Any) -> None:
    """Set columns of one receipt (status, stage, counts, key_ids, reason, timestamps)."""
    with translate_errors(), engine.begin() as connection:
        connection.execute(
            update(erasure_receipts)
            .where(erasure_receipts.c.receipt_id == receipt_id)
            .values(**values)
        )
