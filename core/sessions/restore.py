"""Forgotten sessions: what append.lua needs to continue a session that Redis no longer has.

Redis forgets a session when its keys expire (a user back after the TTL), when it is flushed
or restarted without AOF. The durable store still knows it, so the session continues from its
``last_seq`` with its summary, recent buffer and settings restored, exactly as ``context()``
restores them. Entries still in the WAL are newer than the store; the shard's high-water hash
(set by every append, cleared by the drainer once durable) keeps ``seq`` above them.
"""

from __future__ import annotations

from sqlalchemy import Engine

from core.store.codec import buffer_item, encode_message
from core.summaries import store as summary_store
from core.summaries.store import DurableContext

# DurableContext is the session as the durable store knows it: the log's cold path takes it
# from here, so the log never reaches past sessions into summaries.
__all__ = ["DurableContext", "load", "restore_args"]


def load(
    engine: Engine, *, tenant: str, session_id: str, max_messages: int, max_tokens: int
) -> DurableContext | None:
    """The session as the durable store knows it (None: the store never saw it)."""
    return summary_store.load_context(
        engine,
        tenant=tenant,
        session_id=session_id,
        max_messages=max_messages,
        max_tokens=max_tokens,
    )


def restore_args(
    durable: DurableContext | None, *, tenant: str, session_id: str
) -> list[str | int]:
    """append.lua's restore arguments (after the messages) for ``durable``; a brand-new
    session (None) restores as empty, so its first append gets seq 1."""
    if durable is None:
        return [0, "", 0, "", 0, 0, 0, 0, 0]
    summary = durable.summary
    args: list[str | int] = [
        durable.last_seq,
        durable.subject_id or "",
        summary.covers_through_seq if summary else 0,
        summary.text if summary else "",
        summary.tokens if summary else 0,
        durable.unsummarized_tokens,
        durable.summary_count,
        int(summary.created_at.timestamp() * 1000) if summary else 0,
        len(durable.settings),
    ]
    for name, value in sorted(durable.settings.items()):
        args += [name, value]
    for message in durable.messages:
        body = encode_message(
            message_id=message.message_id,
            tenant=tenant,
            session_id=session_id,
            role=message.role,
            content=message.content,
            tokens=message.tokens,
            created_us=int(message.created_at.timestamp() * 1_000_000),
            subject_id=durable.subject_id,
            metadata=message.metadata,
        )
        args += [buffer_item(message.seq, message.tokens, body), message.message_id]
    return args
