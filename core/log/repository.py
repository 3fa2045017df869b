"""Bulk writes and reads of the durable store.

On PostgreSQL a batch is COPYed into a temporary staging table; one statement upserts the
batch's sessions from it (aggregated by PostgreSQL) and one ``INSERT ... SELECT ... ON CONFLICT
(message_id) DO NOTHING`` moves the messages. On SQLite it is one executemany.
Only a repeated ``message_id`` is skipped: a different message that collides on
``(tenant, session_id, seq)`` raises, so it is dead-lettered instead of silently dropped.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, func
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from core.memories.wal import MemoryRow, apply_memory_rows
from core.state.wal import StateRow, apply_state_rows
from core.store.db import messages, sessions
from core.store.db_errors import translate_errors

MESSAGE_COLUMNS = (
    "message_id",
    "tenant",
    "session_id",
    "seq",
    "role",
    "content",
    "tokens",
    "metadata",
    "created_at",
    # The data key content is sealed under (core/log/sealing.py); None: plaintext.
    "key_id",
)
# The staging table also carries subject_id, which belongs to the session, not the message.
_STAGED_COLUMNS = ", ".join((*MESSAGE_COLUMNS, "subject_id"))
# COPY's text format: backslash, tab, newline and carriage return are escaped; \N is NULL.
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_NULL = "\\N"
# ON COMMIT DELETE ROWS: the rows of one batch never outlive its transaction (a rollback drops
# them too), so the table is empty whenever a batch starts.
_STAGING_DDL = """
CREATE TEMP TABLE IF NOT EXISTS ms_stage_batch (
    message_id text, tenant text, session_id text, seq bigint, role text, content text,
    tokens integer, metadata json, created_at timestamptz, key_id text, subject_id text
) ON COMMIT DELETE ROWS
"""
# A session has one subject (append.lua refuses another), so the first one in seq order is
# the one. ORDER BY gives a fixed lock order: two drainers upserting sessions never deadlock.
_UPSERT_STAGED_SESSIONS = """
INSERT INTO sessions AS s (tenant, session_id, subject_id, created_at, updated_at, last_seq)
SELECT tenant, session_id,
       (array_agg(subject_id ORDER BY seq) FILTER (WHERE subject_id IS NOT NULL))[1],
       min(created_at), max(created_at), max(seq)
FROM ms_stage_batch
GROUP BY tenant, session_id
ORDER BY tenant, session_id
ON CONFLICT (tenant, session_id) DO UPDATE SET
    updated_at = greatest(s.updated_at, excluded.updated_at),
    last_seq = greatest(s.last_seq, excluded.last_seq),
    subject_id = coalesce(s.subject_id, excluded.subject_id)
"""
# ORDER BY seq: PostgreSQL evaluates a volatile target (clock_timestamp()) after the sort, so
# within a session persisted_at never decreases as seq grows (P2's "in seq order", made
# observable). COPY order is already seq order per session; the sort of one batch is cheap.
_MOVE_STAGED = f"""
INSERT INTO messages ({", ".join(MESSAGE_COLUMNS)}, persisted_at)
SELECT {", ".join(MESSAGE_COLUMNS)}, clock_timestamp() FROM ms_stage_batch
ORDER BY seq
ON CONFLICT (message_id) DO NOTHING
"""


@dataclass(frozen=True, slots=True)
class MessageRow:
    """One message on its way into the durable store."""

    message_id: str
    tenant: str
    session_id: str
    seq: int
    role: str
    content: str
    tokens: int
    metadata: dict[str, Any] | None
    created_at: datetime
    subject_id: str | None = None
    key_id: str | None = None

    def as_params(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in MESSAGE_COLUMNS}


def _text(value: str) -> str:
    # Most fields need no escaping; four substring scans cost far less than a translate.
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        return value.translate(_COPY_ESCAPES)
    return value


def _copy_line(row: MessageRow) -> str:
    """One row of COPY text format, in ``_STAGED_COLUMNS`` order."""
    metadata = (
        _NULL
        if row.metadata is None
        else _text(json.dumps(row.metadata, ensure_ascii=False, separators=(",", ":")))
    )
    subject = _NULL if row.subject_id is None else _text(row.subject_id)
    key_id = _NULL if row.key_id is None else _text(row.key_id)
    return (
        f"{_text(row.message_id)}\t{_text(row.tenant)}\t{_text(row.session_id)}\t{int(row.seq)}\t"
        f"{_text(row.role)}\t{_text(row.content)}\t{int(row.tokens)}\t{metadata}\t"
        f"{row.created_at.isoformat()}\t{key_id}\t{subject}\n"
    )


def _persist_postgres(connection: Connection, rows: Sequence[MessageRow]) -> int:
    """COPY the batch into staging; upsert its sessions and move its messages from there."""
    buffer = io.StringIO("".join([_copy_line(row) for row in rows]))
    dbapi = connection.connection.dbapi_connection
    assert dbapi is not None
    cursor = dbapi.cursor()
    try:
        cursor.execute(_STAGING_DDL)
        cursor.copy_expert(f"COPY ms_stage_batch ({_STAGED_COLUMNS}) FROM STDIN", buffer)
        cursor.execute(_UPSERT_STAGED_SESSIONS)
        cursor.execute(_MOVE_STAGED)
        inserted: int = cursor.rowcount
    finally:
        cursor.close()
    return inserted


def _insert_messages_sqlite(connection: Connection, rows: Sequence[MessageRow]) -> int:
    now = datetime.now(UTC)
    statement = sqlite_insert(messages).on_conflict_do_nothing(index_elements=["message_id"])
    result = connection.execute(
        statement, [{**row.as_params(), "persisted_at": now} for row in rows]
    )
    return max(result.rowcount, 0)


def _upsert_sessions_sqlite(connection: Connection, rows: Sequence[MessageRow]) -> None:
    # PostgreSQL does the same from the staging table (_UPSERT_STAGED_SESSIONS).
    by_session: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        key = (row.tenant, row.session_id)
        current = by_session.get(key)
        if current is None:
            by_session[key] = {
                "tenant": row.tenant,
                "session_id": row.session_id,
                "subject_id": row.subject_id,
                "created_at": row.created_at,
                "updated_at": row.created_at,
                "last_seq": row.seq,
            }
            continue
        current["created_at"] = min(current["created_at"], row.created_at)
        current["updated_at"] = max(current["updated_at"], row.created_at)
        current["last_seq"] = max(current["last_seq"], row.seq)
        current["subject_id"] = current["subject_id"] or row.subject_id
    values = [by_session[key] for key in sorted(by_session)]  # fixed order: no deadlocks
    statement = sqlite_insert(sessions).values(values)
    greatest = func.max  # SQLite's two-argument max() is a scalar function
    excluded = statement.excluded
    connection.execute(
        statement.on_conflict_do_update(
            index_elements=["tenant", "session_id"],
            set_={
                "updated_at": greatest(sessions.c.updated_at, excluded.updated_at),
                "last_seq": greatest(sessions.c.last_seq, excluded.last_seq),
                "subject_id": func.coalesce(sessions.c.subject_id, excluded.subject_id),
            },
        )
    )


def persist_messages(
    engine: Engine,
    rows: Sequence[MessageRow],
    memory_rows: Sequence[MemoryRow] = (),
    state_rows: Sequence[StateRow] = (),
) -> int:
    """Write ``rows`` and their sessions, and apply ``memory_rows`` and ``state_rows`` in
    order, in one transaction; returns rows newly inserted or changed.

    Idempotent on ``message_id``: a batch that is replayed after a crash inserts nothing twice.
    """
    if not rows and not memory_rows and not state_rows:
        return 0
    inserted = 0
    with translate_errors(), engine.begin() as connection:
        if rows and connection.dialect.name == "postgresql":
            inserted = _persist_postgres(connection, rows)
        elif rows:
            _upsert_sessions_sqlite(connection, rows)
            inserted = _insert_messages_sqlite(connection, rows)
        if memory_rows:
            inserted += apply_memory_rows(connection, memory_rows)
        if state_rows:
            inserted += apply_state_rows(connection, state_rows)
    return inserted
