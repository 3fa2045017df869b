"""Summaries in the durable store: the history of every session's rolling summary, per-tenant
LLM usage, and the reads that fold and read-through need.

A ``summaries`` row folds messages ``from_seq..covers_through_seq`` into the summary that
covered everything before ``from_seq``, so every row is a summary of seq 1..covers_through_seq.
Rows are idempotent on ``(tenant, session_id, covers_through_seq)``: the first writer wins and
a second attempt reads the stored text back instead of replacing it.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Literal

from sqlalchemy import Connection, Engine, func, select

from core.crypto.cipher import message_aad, summary_aad
from core.crypto.vault import open_contents, sealing
from core.errors import PermanentError
from core.models import Message, as_utc
from core.retention.policy import NO_RETENTION, RetentionPolicy
from core.store.db import insert_for, llm_usage, messages, of_session, sessions, summaries
from core.store.db_errors import translate_errors
from core.summaries.floors import check_not_cleared


@dataclass(frozen=True, slots=True)
class SummaryRecord:
    """One stored summary of a session's seq 1..covers_through_seq."""

    tenant: str
    session_id: str
    covers_through_seq: int
    from_seq: int
    text: str
    tokens: int
    folded_tokens: int
    model: str
    created_at: datetime
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass(frozen=True, slots=True)
class DurableContext:
    """A session as the durable store knows it, shaped like ``context()``."""

    last_seq: int
    subject_id: str | None
    summary: SummaryRecord | None
    summary_count: int
    # The newest messages after the summary that fit the buffer caps, oldest first.
    messages: list[Message]
    # Every message after the summary (kept or not): what the trigger compares.
    unsummarized_tokens: int
    unsummarized_messages: int
    # configure_session's overrides (fields of the Redis config hash), or empty.
    settings: dict[str, str] = field(default_factory=dict)


def _records(engine: Engine, rows: Sequence[Any]) -> list[SummaryRecord]:
    """Stored summaries as records, opened; one whose data key is destroyed reads as gone."""
    texts = open_contents(
        engine,
        [
            (row.key_id, row.text, summary_aad(row.tenant, row.session_id, row.covers_through_seq))
            for row in rows
        ],
    )
    return [_record(row, text) for row, text in zip(rows, texts, strict=True) if text is not None]


def _messages(engine: Engine, rows: Sequence[Any], tenant: str, session_id: str) -> list[Message]:
    """Stored messages, opened; one whose data key is destroyed reads as gone (skipped)."""
    contents = open_contents(
        engine,
        [
            (row.key_id, row.content, message_aad(tenant, session_id, row.message_id))
            for row in rows
        ],
    )
    return [
        _message(row, content)
        for row, content in zip(rows, contents, strict=True)
        if content is not None
    ]


def _record(row: Any, text: str) -> SummaryRecord:
    return SummaryRecord(
        tenant=row.tenant,
        session_id=row.session_id,
        covers_through_seq=row.covers_through_seq,
        from_seq=row.from_seq,
        text=text,
        tokens=row.tokens,
        folded_tokens=row.folded_tokens,
        model=row.model,
        created_at=as_utc(row.created_at),
        prompt_tokens=row.prompt_tokens,
        completion_tokens=row.completion_tokens,
    )


def _message(row: Any, content: str) -> Message:
    return Message(
        message_id=row.message_id,
        seq=row.seq,
        role=row.role,
        content=content,
        tokens=row.tokens,
        created_at=as_utc(row.created_at),
        metadata=row.metadata,
    )


_MESSAGE_COLUMNS = (
    messages.c.message_id,
    messages.c.seq,
    messages.c.role,
    messages.c.content,
    messages.c.tokens,
    messages.c.created_at,
    messages.c.metadata,
    messages.c.key_id,
)


UsageRule = Literal["always", "if_new", "never"]


def save_summary(
    engine: Engine,
    record: SummaryRecord,
    *,
    usage: UsageRule,
    policy: RetentionPolicy = NO_RETENTION,
) -> SummaryRecord:
    """Store ``record`` unless a summary through the same seq exists; returns the stored one.

    ``usage`` adds the call's tokens to the tenant's ``llm_usage`` in the same transaction:
    "always" for a fresh LLM answer (paid whether or not its summary won), "if_new" for a
    draft adopted after a failure (its first attempt may not have reached the store).
    ``policy`` gives the row its ``expires_at`` (the tenant's retention of summaries).
    """
    values: dict[str, Any] = {
        "tenant": record.tenant,
        "session_id": record.session_id,
        "covers_through_seq": record.covers_through_seq,
        "from_seq": record.from_seq,
        "text": record.text,
        "tokens": record.tokens,
        "folded_tokens": record.folded_tokens,
        "model": record.model,
        "prompt_tokens": record.prompt_tokens,
        "completion_tokens": record.completion_tokens,
        "created_at": record.created_at,
        "expires_at": policy.expires_at(record.tenant, "summaries", record.created_at),
    }
    with ExitStack() as hold, translate_errors(), engine.begin() as connection:
        _seal_summary(engine, connection, hold, values)
        check_not_cleared(connection, record)
        inserted = connection.execute(
            insert_for(connection, summaries)
            .values(values)
            .on_conflict_do_nothing(index_elements=["tenant", "session_id", "covers_through_seq"])
        ).rowcount
        if usage == "always" or (usage == "if_new" and inserted):
            _add_usage(connection, record)
        stored = connection.execute(
            select(summaries).where(
                of_session(summaries, record.tenant, record.session_id),
                summaries.c.covers_through_seq == record.covers_through_seq,
            )
        ).one()
    if inserted:
        return record  # the text we sealed, without opening it again
    found = _records(engine, [stored])
    if not found:
        raise PermanentError("the stored summary's data key was destroyed")
    return found[0]


def _seal_summary(
    engine: Engine, connection: Connection, hold: ExitStack, values: dict[str, Any]
) -> None:
    """Seal ``values["text"]`` under the session subject's data key (no subject, or
    encryption off: plaintext). The key hold joins ``hold``, which closes after the commit."""
    vault = sealing(engine)
    if vault is None:
        return
    subject = connection.execute(
        select(sessions.c.subject_id).where(
            of_session(sessions, values["tenant"], values["session_id"])
        )
    ).scalar()
    if subject is None:
        return
    sealer = hold.enter_context(vault.sealer())
    aad = summary_aad(values["tenant"], values["session_id"], values["covers_through_seq"])
    values["key_id"], values["text"] = sealer.seal(values["tenant"], subject, values["text"], aad)


def _add_usage(connection: Connection, record: SummaryRecord) -> None:
    add_usage(
        connection,
        tenant=record.tenant,
        model=record.model,
        prompt_tokens=record.prompt_tokens,
        completion_tokens=record.completion_tokens,
        now=record.created_at,
    )


def add_usage(
    connection: Connection,
    *,
    tenant: str,
    model: str,
    prompt_tokens: int,
    completion_tokens: int,
    now: datetime,
) -> None:
    """One paid LLM call in ``llm_usage`` (the tenant's UTC day and model row), on the
    caller's transaction: summaries and consolidation merges alike."""
    statement = insert_for(connection, llm_usage).values(
        tenant=tenant,
        day=now.astimezone(UTC).date(),
        model=model,
        calls=1,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
    )
    excluded = statement.excluded
    connection.execute(
        statement.on_conflict_do_update(
            index_elements=["tenant", "day", "model"],
            set_={
                "calls": llm_usage.c.calls + excluded.calls,
                "prompt_tokens": llm_usage.c.prompt_tokens + excluded.prompt_tokens,
                "completion_tokens": llm_usage.c.completion_tokens + excluded.completion_tokens,
            },
        )
    )


def load_messages(
    engine: Engine, *, tenant: str, session_id: str, from_seq: int, to_seq: int
) -> list[Message]:
    """The stored messages with ``from_seq <= seq <= to_seq``, oldest first (may have gaps
    where the drainer has not caught up; the caller checks)."""
    with translate_errors(), engine.connect() as connection:
        rows = connection.execute(
            select(*_MESSAGE_COLUMNS)
            .where(
                of_session(messages, tenant, session_id),
                messages.c.seq >= from_seq,
                messages.c.seq <= to_seq,
            )
            .order_by(messages.c.seq)
        ).all()
    return _messages(engine, rows, tenant, session_id)


def load_messages_before(
    engine: Engine, *, tenant: str, session_id: str, before_seq: int | None, limit: int
) -> list[Message]:
    """The newest ``limit`` stored messages with ``seq < before_seq`` (None: the newest
    overall), oldest first. One query on the primary key (tenant, session_id, seq)."""
    where = of_session(messages, tenant, session_id)
    if before_seq is not None:
        where = where & (messages.c.seq < before_seq)
    with translate_errors(), engine.connect() as connection:
        rows = connection.execute(
            select(*_MESSAGE_COLUMNS).where(where).order_by(messages.c.seq.desc()).limit(limit)
        ).all()
    return _messages(engine, list(reversed(rows)), tenant, session_id)


def load_context(
    engine: Engine, *, tenant: str, session_id: str, max_messages: int, max_tokens: int
) -> DurableContext | None:
    """The latest summary and the newest messages after it within the buffer caps (at least
    the newest one), or None when the store has no such session."""
    with translate_errors(), engine.connect() as connection:
        session = connection.execute(
            select(sessions.c.last_seq, sessions.c.subject_id, sessions.c.settings).where(
                of_session(sessions, tenant, session_id)
            )
        ).first()
        if session is None:
            return None
        latest = connection.execute(
            select(summaries)
            .where(of_session(summaries, tenant, session_id))
            .order_by(summaries.c.covers_through_seq.desc())
            .limit(1)
        ).first()
        # A summary whose key is destroyed reads as none (its messages are gone with it).
        summary = next(iter(_records(engine, [latest])), None) if latest is not None else None
        count = 0
        if summary is not None:
            count = connection.execute(
                select(func.count()).where(of_session(summaries, tenant, session_id))
            ).scalar_one()
        after = summary.covers_through_seq if summary else 0
        unsummarized = of_session(messages, tenant, session_id) & (messages.c.seq > after)
        total_messages, total_tokens = connection.execute(
            select(func.count(), func.coalesce(func.sum(messages.c.tokens), 0)).where(unsummarized)
        ).one()
        newest = connection.execute(
            select(*_MESSAGE_COLUMNS)
            .where(unsummarized)
            .order_by(messages.c.seq.desc())
            .limit(max_messages)
        ).all()
    kept: list[Message] = []
    tokens = 0
    for message in reversed(_messages(engine, list(reversed(newest)), tenant, session_id)):
        if kept and tokens + message.tokens > max_tokens:
            break
        kept.append(message)
        tokens += message.tokens
    kept.reverse()
    return DurableContext(
        last_seq=session.last_seq,
        subject_id=session.subject_id,
        summary=summary,
        summary_count=int(count),
        messages=kept,
        unsummarized_tokens=int(total_tokens),
        unsummarized_messages=int(total_messages),
        settings={str(k): str(v) for k, v in (session.settings or {}).items()},
    )


def list_summaries(engine: Engine, *, tenant: str, session_id: str) -> list[SummaryRecord]:
    """A session's summary history, oldest first."""
    with translate_errors(), engine.connect() as connection:
        rows = connection.execute(
            select(summaries)
            .where(of_session(summaries, tenant, session_id))
            .order_by(summaries.c.covers_through_seq)
        ).all()
    return _records(engine, rows)


def latest_summaries(
    engine: Engine, *, tenant: str, session_id: str, limit: int
) -> list[SummaryRecord]:
    """A session's ``limit`` newest summaries, newest first (the primary key's order)."""
    with translate_errors(), engine.connect() as connection:
        rows = connection.execute(
            select(summaries)
            .where(of_session(summaries, tenant, session_id))
            .order_by(summaries.c.covers_through_seq.desc())
            .limit(limit)
        ).all()
    return _records(engine, rows)


def summary_history_stats(
    engine: Engine, *, tenant: str, session_id: str
) -> tuple[int, SummaryRecord | None]:
    """How many summaries a session has in the store, and the latest."""
    with translate_errors(), engine.connect() as connection:
        count = connection.execute(
            select(func.count()).where(of_session(summaries, tenant, session_id))
        ).scalar_one()
        latest = connection.execute(
            select(summaries)
            .where(of_session(summaries, tenant, session_id))
            .order_by(summaries.c.covers_through_seq.desc())
            .limit(1)
        ).first()
    opened = _records(engine, [latest]) if latest is not None else []
    return int(count), opened[0] if opened else None


def usage_on(engine: Engine, *, tenant: str, day: date) -> dict[str, int]:
    """One tenant's LLM usage on one UTC day, summed over models."""
    with translate_errors(), engine.connect() as connection:
        calls, prompt, completion = connection.execute(
            select(
                func.coalesce(func.sum(llm_usage.c.calls), 0),
                func.coalesce(func.sum(llm_usage.c.prompt_tokens), 0),
                func.coalesce(func.sum(llm_usage.c.completion_tokens), 0),
            ).where(llm_usage.c.tenant == tenant, llm_usage.c.day == day)
        ).one()
    return {"calls": int(calls), "prompt_tokens": int(prompt), "completion_tokens": int(completion)}
