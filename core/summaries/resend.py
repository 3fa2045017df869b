"""Summaries whose task was lost: found in the shards' pending indexes and asked for again.

The drainer sends ``llm.summarize`` after a crossing's entry is durable; if that publish fails
(the broker is away), the session stays pending with no task on its way until
``summary_pending_timeout_s`` (an hour) lets the next crossing ask again. A beat task calls
``stale_sessions`` every minute instead: sessions pending longer than ``after_s`` whose summary
lease nobody holds, and whose tenant's budget did not defer them, are sent again. A duplicate
is harmless: a summarize that finds nothing pending returns without an LLM call.
"""

from __future__ import annotations

import time

import redis

from core.store.keys import Keys
from core.summaries.budget import Budgets


def stale_sessions(
    client: redis.Redis, keys: Keys, budgets: Budgets, *, after_s: float, limit: int = 1000
) -> list[tuple[str, str]]:
    """(tenant, session_id) of summaries pending for longer than ``after_s`` with no task
    running; at most ``limit`` per shard, oldest first."""
    cutoff_ms = time.time() * 1000 - after_s * 1000
    with client.pipeline(transaction=False) as pipe:
        for shard in range(keys.shards):
            pipe.zrangebyscore(keys.summary_pending(shard), "-inf", cutoff_ms, start=0, num=limit)
        members: list[list[str]] = pipe.execute()
    candidates = [
        tuple(member.split("/", 1)) for found in members for member in found if "/" in member
    ]
    if not candidates:
        return []
    deferred = budgets.deferred()
    with client.pipeline(transaction=False) as pipe:
        for tenant, session_id in candidates:
            pipe.exists(keys.session(tenant, session_id).summary_lease)
        running = pipe.execute()
    return [
        (tenant, session_id)
        for (tenant, session_id), busy in zip(candidates, running, strict=True)
        if not busy and session_id not in deferred.get(tenant, [])
    ]
