"""Bulk writes: the sessions row a batch leaves behind, batch after batch, replays included."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from core.log.repository import MessageRow, persist_messages
from core.store.db import make_engine, sessions
from tests.conftest import both_backends

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _rows(session_id: str, seqs: range, subject_id: str | None) -> list[MessageRow]:
    return [
        MessageRow(
            message_id=f"{session_id}-m{seq}",
            tenant="t",
            session_id=session_id,
            seq=seq,
            role="user",
            content=f"turn {seq}\twith a tab",
            tokens=5,
            metadata={"n": seq} if seq % 2 else None,
            created_at=T0 + timedelta(seconds=seq),
            subject_id=subject_id,
        )
        for seq in seqs
    ]


@both_backends
def test_sessions_row_follows_every_batch(database_url: str) -> None:
    """A session keeps its first created_at and first subject, takes the newest updated_at and
    highest seq, and a replayed older batch moves nothing back."""
    engine = make_engine(database_url)
    first = _rows("a", range(1, 4), None) + _rows("b", range(1, 3), "bob")
    second = _rows("a", range(4, 6), "alice")
    assert persist_messages(engine, first) == 5
    assert persist_messages(engine, second) == 2
    assert persist_messages(engine, first) == 0  # a replay after a crash
    with engine.connect() as connection:
        rows = connection.execute(  # through the Table, so SQLite's text dates are parsed
            sa.select(
                sessions.c.session_id,
                sessions.c.subject_id,
                sessions.c.created_at,
                sessions.c.updated_at,
                sessions.c.last_seq,
            ).order_by(sessions.c.session_id)
        ).all()
        stored = connection.execute(sa.text("SELECT count(*) FROM messages")).scalar_one()
    engine.dispose()
    found = [
        (r.session_id, r.subject_id, _utc(r.created_at), _utc(r.updated_at), r.last_seq)
        for r in rows
    ]
    assert found == [
        ("a", "alice", T0 + timedelta(seconds=1), T0 + timedelta(seconds=5), 5),
        ("b", "bob", T0 + timedelta(seconds=1), T0 + timedelta(seconds=2), 2),
    ]
    assert stored == 7


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)
