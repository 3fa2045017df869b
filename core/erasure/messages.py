"""``delete_message``: one message gone everywhere, and the summaries that covered it dropped.

The store keeps a tombstone of the message (its id and seq, never its content): the drainer
drops a WAL entry of it that was not yet drained (under the session row's lock, like the
floors of core/erasure/sessions.py), and its seq is never reused. Every summary that folded it
(a rolling summary through seq >= the message's) is deleted; the session's summary falls back
to the one before, and what the dropped ones had folded counts as unsummarized again, so the
next summary is rebuilt without the message.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import redis
from sqlalchemy import Connection, Engine, delete, func, select

from core.erasure import scrub
from core.erasure.scrub import Erased
from core.log.repository import MessageRow
from core.store.db import insert_for, message_tombstones, messages, of_session, sessions, summaries
from core.store.db_errors import translate_errors
from core.store.keys import Keys, SessionKeys
from core.store.redis_errors import redis_errors
from core.store.scripts import Scripts


@dataclass(frozen=True, slots=True)
class Located:
    session_id: str
    seq: int
    tokens: int


def locate(
    client: redis.Redis,
    engine: Engine,
    keys: Keys,
    message_id: str,
    *,
    tenant: str,
    session_id: str | None,
) -> Located | None:
    """Where the message is: the store, else (not yet drained) the WAL. Message ids are
    unique across sessions, so no session is needed; giving one skips the WAL search."""
    with translate_errors(), engine.connect() as connection:
        row = connection.execute(
            select(messages.c.session_id, messages.c.seq, messages.c.tokens).where(
                (messages.c.message_id == message_id) & (messages.c.tenant == tenant)
            )
        ).first()
    if row is not None:
        return Located(row.session_id, int(row.seq), int(row.tokens))
    with redis_errors():
        for shard in _shards(keys, tenant, session_id):
            for _entry_id, known in scrub.known_entries(client, keys.wal(shard)):
                found = known.row
                if (
                    isinstance(found, MessageRow)
                    and found.message_id == message_id
                    and found.tenant == tenant
                ):
                    return Located(found.session_id, found.seq, found.tokens)
    return None


def _shards(keys: Keys, tenant: str, session_id: str | None) -> list[int]:
    if session_id is not None:
        return [keys.session(tenant, session_id).shard]
    return list(range(keys.shards))


@dataclass(frozen=True, slots=True)
class Dropped:
    session_id: str
    summaries: int
    unsummarized_again: int
    left_cov: int
    left_text: str
    left_tokens: int
    left_count: int
    left_ms: int


def _tombstone(
    connection: Connection, keys: SessionKeys, message_id: str, found: Located
) -> Dropped:
    now = datetime.now(UTC)
    statement = insert_for(connection, sessions).values(
        tenant=keys.tenant,
        session_id=keys.session_id,
        created_at=now,
        updated_at=now,
        last_seq=found.seq,
    )
    # The session row's lock orders us against the drainer (core/log/repository.py).
    connection.execute(
        statement.on_conflict_do_update(
            index_elements=["tenant", "session_id"], set_={"updated_at": now}
        )
    )
    connection.execute(
        insert_for(connection, message_tombstones)
        .values(
            message_id=message_id,
            tenant=keys.tenant,
            session_id=keys.session_id,
            seq=found.seq,
            deleted_at=now,
        )
        .on_conflict_do_nothing(index_elements=["message_id"])
    )
    connection.execute(delete(messages).where(messages.c.message_id == message_id))
    covering = of_session(summaries, keys.tenant, keys.session_id) & (
        summaries.c.covers_through_seq >= found.seq
    )
    count, folded = connection.execute(
        select(func.count(), func.coalesce(func.sum(summaries.c.folded_tokens), 0)).where(covering)
    ).one()
    connection.execute(delete(summaries).where(covering))
    left = connection.execute(
        select(summaries)
        .where(of_session(summaries, keys.tenant, keys.session_id))
        .order_by(summaries.c.covers_through_seq.desc())
        .limit(1)
    ).first()
    remaining = connection.execute(
        select(func.count()).where(of_session(summaries, keys.tenant, keys.session_id))
    ).scalar_one()
    return Dropped(
        session_id=keys.session_id,
        summaries=int(count),
        # The message itself is gone: it is not unsummarized again.
        unsummarized_again=max(0, int(folded) - found.tokens) if count else 0,
        left_cov=int(left.covers_through_seq) if left else 0,
        left_text=left.text if left else "",
        left_tokens=int(left.tokens) if left else 0,
        left_count=int(remaining),
        left_ms=int(left.created_at.timestamp() * 1000) if left else 0,
    )


def delete_message(
    client: redis.Redis,
    scripts: Scripts,
    engine: Engine,
    keys: Keys,
    message_id: str,
    *,
    tenant: str,
    session_id: str | None = None,
) -> Dropped | None:
    """Delete one message everywhere; None when no such message exists (nothing changed)."""
    found = locate(client, engine, keys, message_id, tenant=tenant, session_id=session_id)
    if found is None:
        return None
    session = keys.session(tenant, found.session_id)
    with translate_errors(), engine.begin() as connection:
        dropped = _tombstone(connection, session, message_id, found)
    args: list[str | int] = [found.seq, message_id, session.member, int(dropped.summaries > 0)]
    if dropped.summaries:
        args += [
            dropped.left_cov,
            dropped.left_text,
            dropped.left_tokens,
            dropped.left_count,
            dropped.left_ms,
            dropped.unsummarized_again,
        ]
    with redis_errors():
        scripts.message_delete(
            keys=[
                session.meta,
                session.buffer,
                session.recent_ids,
                session.summary_lease,
                session.summary_draft,
                session.summary_pending,
            ],
            args=args,
        )
        # Its WAL entry (drained or not) and any dead letter of it hold the content.
        scrub.scrub(client, keys, Erased(message_ids={message_id}), delete=True)
    return dropped
