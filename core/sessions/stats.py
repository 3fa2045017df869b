"""What ``MemoryClient.memory_stats`` reports about one session."""

from __future__ import annotations

from collections.abc import Callable

import redis

from core.models import MemoryStats, SessionMemorySettings, micros_to_datetime
from core.sessions.restore import DurableContext
from core.store.keys import SessionKeys
from core.store.redis_errors import redis_errors


def memory_stats(
    client: redis.Redis,
    keys: SessionKeys,
    *,
    defaults: SessionMemorySettings,
    load_durable: Callable[[SessionKeys], DurableContext | None],
) -> MemoryStats:
    """One Redis round trip for a session in Redis; a cold one is described from the durable
    store (``load_durable``) without re-warming it."""
    with redis_errors(), client.pipeline(transaction=False) as pipe:
        pipe.hgetall(keys.meta)
        pipe.llen(keys.buffer)
        pipe.hgetall(keys.config)
        meta, length, config = pipe.execute()
    effective = defaults.with_overrides(config)
    if meta:
        until = int(meta.get("pend", 0))
        at_ms = int(meta.get("sat", 0))
        return MemoryStats(
            in_redis=True,
            last_seq=int(meta.get("seq", 0)),
            buffered_messages=int(length),
            buffered_tokens=int(meta.get("tok", 0)),
            unsummarized_tokens=int(meta.get("utok", 0)),
            covers_through_seq=int(meta.get("cov", 0)),
            summary_count=int(meta.get("nsum", 0)),
            summary_tokens=int(meta.get("stok", 0)),
            last_summary_at=micros_to_datetime(at_ms * 1000) if at_ms else None,
            summary_pending=until > 0,
            crossings=int(meta.get("xc", 0)),
            requests=int(meta.get("rq", 0)),
            settings=effective,
        )
    durable = load_durable(keys)
    if durable is None:
        return MemoryStats(
            in_redis=False,
            last_seq=0,
            buffered_messages=0,
            buffered_tokens=0,
            unsummarized_tokens=0,
            covers_through_seq=0,
            summary_count=0,
            summary_tokens=0,
            last_summary_at=None,
            summary_pending=False,
            crossings=0,
            requests=0,
            settings=effective,
        )
    latest = durable.summary
    return MemoryStats(
        in_redis=False,
        last_seq=durable.last_seq,
        buffered_messages=0,
        buffered_tokens=0,
        unsummarized_tokens=durable.unsummarized_tokens,
        covers_through_seq=latest.covers_through_seq if latest else 0,
        summary_count=durable.summary_count,
        summary_tokens=latest.tokens if latest else 0,
        last_summary_at=latest.created_at if latest else None,
        summary_pending=False,
        crossings=0,
        requests=0,
        settings=defaults.with_overrides(config or durable.settings),
    )
