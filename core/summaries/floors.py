"""A summary never covers cleared or erased messages (core/erasure: the session's floors)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import Connection, select

from core.errors import ClearedError
from core.store.db import of_session, sessions

if TYPE_CHECKING:
    from core.summaries.store import SummaryRecord


def check_not_cleared(connection: Connection, record: SummaryRecord) -> None:
    """Refuse a summary that folded cleared or erased messages (core/erasure). FOR SHARE: a
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
