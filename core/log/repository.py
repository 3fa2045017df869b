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

from sqlalchemy import Connection, Engine, func, select, tuple_
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from core.checkpoints.wal import CheckpointWalRow, apply_checkpoint_rows
from core.memories.wal import MemoryRow, apply_memory_rows
from core.retention.policy import NO_RETENTION, RetentionPolicy
from core.state.wal import StateRow, apply_state_rows
from core.store.db import message_tombstones, messages, sessions, write_lock
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
    # created_at + the tenant's retention of messages (core/retention); NULL: kept forever.
    "expires_at",
    # The data key content is sealed under (core/log/sealing.py); None: plaintext.
    "key_id",
)
# The staging table also carries subject_id, which belongs to the session, not the message.
# It stages expires_at as keep_s, the tenant's retention in seconds (one cached string per
# tenant), and PostgreSQL adds it to created_at: formatting a timestamp per row in Python
# would cost the drain measurably.
_STAGED = tuple("keep_s" if name == "expires_at" else name for name in MESSAGE_COLUMNS)
_STAGED_COLUMNS = ", ".join((*_STAGED, "subject_id"))
_EXPIRES = "created_at + keep_s * interval '1 second'"
_SELECTED = ", ".join(_EXPIRES if name == "expires_at" else name for name in MESSAGE_COLUMNS)
# COPY's text format: backslash, tab, newline and carriage return are escaped; \N is NULL.
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_NULL = "\\N"
# ON COMMIT DELETE ROWS: the rows of one batch never outlive its transaction (a rollback drops
# them too), so the table is empty whenever a batch starts.
_STAGING_DDL = """
CREATE TEMP TABLE IF NOT EXISTS ms_stage_batch (
    message_id text, tenant text, session_id text, seq bigint, role text, content text,
    tokens integer, metadata json, created_at timestamptz, keep_s bigint, key_id text,
    subject_id text
) ON COMMIT DELETE ROWS
"""
# A session has one subject (append.lua refuses another), so the first one in seq order is
# the one. ORDER BY gives a fixed lock order: two drainers upserting sessions never deadlock.
_UPSERT_STAGED_SESSIONS = """
INSERT INTO sessions AS s (tenant, session_id, subject_id, created_at, updated_at, last_seq,
                           expires_at)
SELECT tenant, session_id,
       (array_agg(subject_id ORDER BY seq) FILTER (WHERE subject_id IS NOT NULL))[1],
       min(created_at), max(created_at), max(seq), max(created_at + keep_s * interval '1 second')
FROM ms_stage_batch
GROUP BY tenant, session_id
ORDER BY tenant, session_id
ON CONFLICT (tenant, session_id) DO UPDATE SET
    updated_at = greatest(s.updated_at, excluded.updated_at),
    last_seq = greatest(s.last_seq, excluded.last_seq),
    subject_id = coalesce(s.subject_id, excluded.subject_id),
    expires_at = greatest(s.expires_at, excluded.expires_at)
"""
# Cleared and erased messages (core/erasure): at or below the session's floor, or deleted one by
# one. Run before the session upsert (so an erased session does not get its subject back from
# an old entry) and again after it: the upsert holds the session row's lock, so this second
# look sees a clear that committed meanwhile, and a clear that comes later waits for this
# batch and then deletes what it wrote.
_DROP_CLEARED_STAGED = """
DELETE FROM ms_stage_batch b USING sessions s
WHERE s.tenant = b.tenant AND s.session_id = b.session_id AND b.seq <= s.cleared_seq
"""
_DROP_DELETED_STAGED = """
DELETE FROM ms_stage_batch b USING message_tombstones t WHERE t.message_id = b.message_id
"""
# ORDER BY seq: PostgreSQL evaluates a volatile target (clock_timestamp()) after the sort, so
# within a session persisted_at never decreases as seq grows (P2's "in seq order", made
# observable). COPY order is already seq order per session; the sort of one batch is cheap.
_MOVE_STAGED = f"""
INSERT INTO messages ({", ".join(MESSAGE_COLUMNS)}, persisted_at)
SELECT {_SELECTED}, clock_timestamp() FROM ms_stage_batch
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

    def as_params(self, expires_at: datetime | None) -> dict[str, Any]:
        # expires_at is the policy's, not the entry's: the WAL entry does not carry it.
        params = {name: getattr(self, name) for name in MESSAGE_COLUMNS if name != "expires_at"}
        params["expires_at"] = expires_at
        return params


def _text(value: str) -> str:
    # Most fields need no escaping; four substring scans cost far less than a translate.
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        return value.translate(_COPY_ESCAPES)
    return value


def _copy_line(row: MessageRow, keep_s: str) -> str:
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
        f"{row.created_at.isoformat()}\t{keep_s}\t{key_id}\t{subject}\n"
    )


def _persist_postgres(
    connection: Connection, rows: Sequence[MessageRow], policy: RetentionPolicy
) -> int:
    """COPY the batch into staging; upsert its sessions and move its messages from there."""
    keep: dict[str, str] = {}
    for tenant in {row.tenant for row in rows}:
        seconds = policy.seconds(tenant, "messages")
        keep[tenant] = str(seconds) if seconds else _NULL
    buffer = io.StringIO("".join([_copy_line(row, keep[row.tenant]) for row in rows]))
    dbapi = connection.connection.dbapi_connection
    assert dbapi is not None
    cursor = dbapi.cursor()
    try:
        cursor.execute(_STAGING_DDL)
        cursor.copy_expert(f"COPY ms_stage_batch ({_STAGED_COLUMNS}) FROM STDIN", buffer)
        cursor.execute(_DROP_CLEARED_STAGED)
        cursor.execute(_DROP_DELETED_STAGED)
        cursor.execute(_UPSERT_STAGED_SESSIONS)
        cursor.execute(_DROP_CLEARED_STAGED)
        cursor.execute(_MOVE_STAGED)
        inserted: int = cursor.rowcount
    finally:
        cursor.close()
    return inserted


def _insert_messages_sqlite(
    connection: Connection, rows: Sequence[MessageRow], policy: RetentionPolicy
) -> int:
    now = datetime.now(UTC)
    expires = policy.expires_at
    statement = sqlite_insert(messages).on_conflict_do_nothing(index_elements=["message_id"])
    result = connection.execute(
        statement,
        [
            {
                **row.as_params(expires(row.tenant, "messages", row.created_at)),
                "persisted_at": now,
            }
            for row in rows
        ],
    )
    return max(result.rowcount, 0)


def _upsert_sessions_sqlite(
    connection: Connection, rows: Sequence[MessageRow], policy: RetentionPolicy
) -> None:
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
                "expires_at": policy.expires_at(row.tenant, "messages", row.created_at),
            }
            continue
        current["created_at"] = min(current["created_at"], row.created_at)
        current["updated_at"] = max(current["updated_at"], row.created_at)
        current["last_seq"] = max(current["last_seq"], row.seq)
        current["subject_id"] = current["subject_id"] or row.subject_id
        current["expires_at"] = _later(
            current["expires_at"], policy.expires_at(row.tenant, "messages", row.created_at)
        )
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
                # Like PostgreSQL's greatest(), which ignores NULLs: a session expires with
                # its newest message (and only once no rows of it remain; core/retention).
                "expires_at": func.coalesce(
                    greatest(sessions.c.expires_at, excluded.expires_at),
                    sessions.c.expires_at,
                    excluded.expires_at,
                ),
            },
        )
    )


def _not_cleared_sqlite(connection: Connection, rows: Sequence[MessageRow]) -> list[MessageRow]:
    """``rows`` without cleared or deleted messages (PostgreSQL: _DROP_CLEARED_STAGED)."""
    pairs = sorted({(row.tenant, row.session_id) for row in rows})
    floors = {
        (tenant, session_id): cleared
        for tenant, session_id, cleared in connection.execute(
            select(sessions.c.tenant, sessions.c.session_id, sessions.c.cleared_seq).where(
                tuple_(sessions.c.tenant, sessions.c.session_id).in_(pairs)
            )
        )
    }
    deleted = set(
        connection.execute(
            select(message_tombstones.c.message_id).where(
                message_tombstones.c.message_id.in_([row.message_id for row in rows])
            )
        ).scalars()
    )
    return [
        row
        for row in rows
        if row.seq > floors.get((row.tenant, row.session_id), 0) and row.message_id not in deleted
    ]


def _later(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else max(a, b)


def persist_messages(
    engine: Engine,
    rows: Sequence[MessageRow],
    memory_rows: Sequence[MemoryRow] = (),
    state_rows: Sequence[StateRow] = (),
    checkpoint_rows: Sequence[CheckpointWalRow] = (),
    *,
    policy: RetentionPolicy = NO_RETENTION,
) -> int:
    """Write ``rows`` and their sessions, and apply ``memory_rows``, ``state_rows`` and
    ``checkpoint_rows`` in order, in one transaction; returns rows newly inserted or changed.

    Idempotent on ``message_id``: a batch that is replayed after a crash inserts nothing twice.
    """
    if not rows and not memory_rows and not state_rows and not checkpoint_rows:
        return 0
    inserted = 0
    with translate_errors(), engine.begin() as connection:
        write_lock(connection)  # SQLite: the floors and tombstones read below cannot move
        if rows and connection.dialect.name == "postgresql":
            inserted = _persist_postgres(connection, rows, policy)
        elif rows:
            # SQLite has one writer at a time: the floors read here cannot move under us.
            rows = _not_cleared_sqlite(connection, rows)
            if rows:
                _upsert_sessions_sqlite(connection, rows, policy)
                inserted = _insert_messages_sqlite(connection, rows, policy)
        if memory_rows:
            inserted += apply_memory_rows(connection, memory_rows, policy=policy)
        if state_rows:
            inserted += apply_state_rows(connection, state_rows, policy=policy)
        if checkpoint_rows:
            inserted += apply_checkpoint_rows(connection, checkpoint_rows, policy=policy)
    return inserted
