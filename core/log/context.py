"""``context()``: a session's summary and buffered messages, read from Redis in one round
trip, or from the durable store when Redis has forgotten the session (which re-warms it).

``read`` and ``read_async`` differ only in their I/O: the reply is parsed by ``from_reply``
and a durable read becomes a context in ``from_durable``, for both.
"""

from __future__ import annotations

import asyncio
from typing import Any

from core.log.appender import Appender
from core.log.async_appender import AsyncAppender
from core.models import Context
from core.sessions.restore import DurableContext
from core.store.codec import decode_buffer_item
from core.store.keys import SessionKeys
from core.store.redis_errors import redis_errors
from core.store.scripts import AsyncScripts, Scripts


def read(scripts: Scripts, appender: Appender, keys: SessionKeys) -> tuple[Context, str | None]:
    """The session's context and its subject (None when it has none)."""
    with redis_errors():
        found = scripts.context(keys=[keys.meta, keys.buffer])
    if found:
        return from_reply(found)
    return read_through(appender, keys)


async def read_async(
    scripts: AsyncScripts, appender: AsyncAppender, keys: SessionKeys
) -> tuple[Context, str | None]:
    """``read`` on ``redis.asyncio``: one EVALSHA on a hit; on a miss the durable read runs
    in a worker thread (SQLAlchemy is synchronous) and the re-warm is awaited."""
    with redis_errors():
        found = await scripts.context(keys=[keys.meta, keys.buffer])
    if found:
        return from_reply(found)
    durable = await asyncio.to_thread(appender.sync.durable, keys)
    if durable is None:
        return Context(), None
    await appender.restore(keys, durable)
    return from_durable(durable)


def read_through(appender: Appender, keys: SessionKeys) -> tuple[Context, str | None]:
    """Redis has nothing for the session: the durable store answers, and Redis is re-warmed."""
    durable = appender.durable(keys)
    if durable is None:
        return Context(), None
    appender.restore(keys, durable)
    return from_durable(durable)


def from_reply(found: Any) -> tuple[Context, str | None]:
    """context.lua's non-empty reply ``[meta as a flat list, buffer items]`` as a context and
    the session's subject."""
    flat, items = found
    meta = dict(zip(flat[::2], flat[1::2], strict=True))
    messages = [decode_buffer_item(item) for item in items]
    covered = int(meta.get("cov", 0))
    last = int(meta.get("seq", 0))
    first = messages[0].seq if messages else last + 1
    summary_tokens = int(meta.get("stok", 0)) if "summary" in meta else 0
    context = Context(
        messages=messages,
        summary=meta.get("summary"),
        tokens=summary_tokens + int(meta.get("tok", 0)),
        summary_tokens=summary_tokens,
        covers_through_seq=covered,
        omitted_messages=max(0, first - covered - 1),
    )
    return context, meta.get("sub")


def from_durable(durable: DurableContext) -> tuple[Context, str | None]:
    """The context the durable store gave for a session Redis had forgotten."""
    summary = durable.summary
    summary_tokens = summary.tokens if summary else 0
    context = Context(
        messages=durable.messages,
        summary=summary.text if summary else None,
        tokens=summary_tokens + sum(message.tokens for message in durable.messages),
        from_durable_store=True,
        summary_tokens=summary_tokens,
        covers_through_seq=summary.covers_through_seq if summary else 0,
        omitted_messages=durable.unsummarized_messages - len(durable.messages),
    )
    return context, durable.subject_id
