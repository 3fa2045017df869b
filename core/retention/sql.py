"""The purge's statements: one bounded batch each, on the partial ``ix_<table>_expires_at``.

PostgreSQL deletes by ``ctid = ANY(ARRAY(SELECT ctid ... ORDER BY expires_at LIMIT n))``: the
inner query walks the index from its oldest entry and stops after ``n`` rows, the outer one is
a TID scan. No statement scans a table, and each runs in its own short transaction. SQLite does
the same by ``rowid``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, Date, DateTime, String, TextClause, bindparam, text

# Which rows of each table are due, beyond "expires_at < :now". ``t`` is the candidate row.
_OF_T = "{table}.tenant = t.tenant AND {table}.session_id = t.session_id"
# A session's newest summary stays while the session has messages: it stands in for the
# messages it folded (context() and read-through show it). Older summaries go when due.
_SUMMARY_DUE = (
    "(EXISTS (SELECT 1 FROM summaries n WHERE n.tenant = t.tenant AND n.session_id = "
    "t.session_id AND n.covers_through_seq > t.covers_through_seq) OR NOT EXISTS "
    f"(SELECT 1 FROM messages WHERE {_OF_T.format(table='messages')}))"
)
# A session row goes only once nothing of it is left: it holds last_seq, which keeps seq
# from being reused while any row of the session remains.
_SESSION_DUE = " AND ".join(
    f"NOT EXISTS (SELECT 1 FROM {table} WHERE {_OF_T.format(table=table)})"
    for table in ("messages", "summaries", "state_history", "agent_results")
)

# kind -> (table, extra condition, RETURNING columns)
EXPIRING: dict[str, tuple[str, str, str]] = {
    "messages": ("messages", "", "tenant, session_id, seq"),
    "summaries": ("summaries", _SUMMARY_DUE, "tenant"),
    "memories": ("memories", "", "tenant, subject_id, memory_id"),
    "state_history": ("state_history", "", "tenant"),
    "agent_results": ("agent_results", "", "tenant"),
    "sessions": ("sessions", _SESSION_DUE, "tenant"),
    # LangGraph checkpoints (core/checkpoints) follow the retention of state.
    "checkpoints": ("checkpoints", "", "tenant"),
    "checkpoint_blobs": ("checkpoint_blobs", "", "tenant"),
    "checkpoint_writes": ("checkpoint_writes", "", "tenant"),
}
CHECKPOINT_TABLES = ("checkpoints", "checkpoint_blobs", "checkpoint_writes")


def _batch(dialect: str, table: str, where: str, order: str, returning: str, lock: bool) -> str:
    if dialect == "postgresql":
        # SKIP LOCKED: a row a drainer is writing right now is not due in this batch (its
        # newer expires_at or rows would make it survive); the next run looks again.
        skip = " FOR UPDATE SKIP LOCKED" if lock else ""
        return (
            f"DELETE FROM {table} WHERE ctid = ANY(ARRAY(SELECT t.ctid FROM {table} t "
            f"WHERE {where} ORDER BY {order} LIMIT :n{skip})) RETURNING {returning}"
        )
    return (
        f"DELETE FROM {table} WHERE rowid IN (SELECT t.rowid FROM {table} t "
        f"WHERE {where} ORDER BY {order} LIMIT :n) RETURNING {returning}"
    )


def expiring_batch(dialect: str, kind: str) -> TextClause:
    """Delete at most ``:n`` rows of ``kind`` with ``expires_at < :now``, oldest first."""
    table, extra, returning = EXPIRING[kind]
    where = "t.expires_at < :now" + (f" AND {extra}" if extra else "")
    sql = _batch(dialect, table, where, "t.expires_at", returning, lock=kind == "sessions")
    return text(sql).bindparams(
        bindparam("now", type_=DateTime(timezone=True)), bindparam("n", type_=BigInteger)
    )


def deleted_thread_batch(dialect: str, table: str) -> TextClause:
    """Delete at most ``:n`` rows of ``table`` written at or before their thread's
    delete_thread floor (``checkpoint_threads``; the floor row itself stays, so a redelivered
    old entry is still refused)."""
    where = (
        "EXISTS (SELECT 1 FROM checkpoint_threads d WHERE d.tenant = t.tenant AND "
        "d.session_id = t.session_id AND t.written_us <= d.deleted_us)"
    )
    sql = _batch(dialect, table, where, "t.written_us", "tenant", lock=False)
    return text(sql).bindparams(bindparam("n", type_=BigInteger))


def select_due(dialect: str, kind: str) -> str:
    """The inner query of ``expiring_batch`` alone (for EXPLAIN in tests)."""
    table, extra, _ = EXPIRING[kind]
    where = "t.expires_at < :now" + (f" AND {extra}" if extra else "")
    locator = "ctid" if dialect == "postgresql" else "rowid"
    return f"SELECT t.{locator} FROM {table} t WHERE {where} ORDER BY t.expires_at LIMIT :n"


def usage_batch(dialect: str, *, tenant: str | None) -> TextClause:
    """Delete at most ``:n`` llm_usage rows with ``day < :day`` (on ix_llm_usage_day): of one
    tenant, or (``tenant`` None) of every tenant not in ``:skip`` (those with their own rule)."""
    who = "t.tenant = :tenant" if tenant is not None else "t.tenant NOT IN :skip"
    sql = _batch(dialect, "llm_usage", f"t.day < :day AND {who}", "t.day", "tenant", lock=False)
    params: list[Any] = [bindparam("day", type_=Date), bindparam("n", type_=BigInteger)]
    if tenant is not None:
        params.append(bindparam("tenant"))
    else:
        params.append(bindparam("skip", expanding=True, type_=String))
    return text(sql).bindparams(*params)


def lineage_of(dialect: str) -> TextClause:
    """The lineage rows of purged memories (their merges can no longer be undone)."""
    del dialect
    return text(
        "DELETE FROM memory_lineage WHERE merged_id IN :ids OR source_id IN :ids"
    ).bindparams(bindparam("ids", expanding=True))
