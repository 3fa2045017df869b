"""A summary never covers cleared or erased messages (core/erasure: the session's floors)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import Connection, select

from core.errors import ClearedError
from core.store.db import of_session, sessions, summaries

if TYPE_CHECKING:
    from core.summaries.store import SummaryRecord


def check_not_cleared(connection: Connection, record: SummaryRecord) -> None:
    """Refuse a summary that folded cleared or erased messages, or continues a summary that
    was removed (core/erasure). FOR SHARE: a
    clear holding the session row commits first and is seen; a later one waits for this
    transaction and then deletes the summary with the rest."""
    query = select(sessions.c.cleared_seq).where(
        of_session(sessions, record.tenant, record.session_id)
    )
    if connection.dialect.name == "postgresql":
        query = query.with_for_update(read=True)
    cleared = connection.execute(query).scalar()
    if cleared is not None and record.from_seq <= cleared:
        raise ClearedError(f"the session was cleared through seq {cleared}")
    # A rolling summary continues the one through from_seq - 1. When that one is gone
    # (clear_summaries, delete_message dropped it meanwhile), this one folds it in: refused.
    if record.from_seq > 1 and record.from_seq - 1 != (cleared or 0):
        before = connection.execute(
            select(summaries.c.covers_through_seq).where(
                of_session(summaries, record.tenant, record.session_id)
                & (summaries.c.covers_through_seq == record.from_seq - 1)
            )
        ).first()
        if before is None:
            raise ClearedError(f"the summary through seq {record.from_seq - 1} was removed")
