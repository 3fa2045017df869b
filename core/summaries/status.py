"""What ``memscribe status`` shows about summaries."""

from __future__ import annotations

import time
from typing import Any

import redis

from config.settings import Settings
from core.store.keys import Keys
from core.store.tokens import token_counter
from core.summaries.budget import Budgets
from core.summaries.llm import describe_backend


def summarization_status(client: redis.Redis, keys: Keys, settings: Settings) -> dict[str, Any]:
    """What ``memscribe status`` shows about summaries: the backend (named plainly, including
    the local extractive default), the tokenizer, pending summaries per shard, and tenants
    whose summaries are deferred because their daily token budget is spent."""
    now_ms = time.time() * 1000
    stale_ms = settings.summary_pending_timeout_s * 1000
    with client.pipeline(transaction=False) as pipe:
        for shard in range(keys.shards):
            pipe.zcard(keys.summary_pending(shard))
            pipe.zrange(keys.summary_pending(shard), 0, 0, withscores=True)
            pipe.zcount(keys.summary_pending(shard), "-inf", now_ms - stale_ms)
        replies = pipe.execute()
    pending = sum(int(n) for n in replies[0::3])
    stale = sum(int(n) for n in replies[2::3])
    oldest = [float(first[0][1]) for first in replies[1::3] if first]
    try:
        counter = token_counter(settings.tokenizer, settings.model)
        tokenizer = counter.name + ("" if counter.exact else " (estimated counts)")
    except Exception as exc:  # a status must say what is wrong, not crash on it
        tokenizer = f"unavailable: {exc}"
    budgets = Budgets(client, keys, settings)
    deferred = []
    for tenant, sessions in budgets.deferred().items():
        usage = budgets.usage(tenant)
        deferred.append(
            {
                "tenant": tenant,
                "sessions": len(sessions),
                "spent_today": usage.spent,
                "daily_budget": usage.budget,
                "exhausted": usage.exhausted,
            }
        )
    return {
        "backend": describe_backend(settings),
        "tokenizer": tokenizer,
        "trigger_tokens": settings.summary_trigger_tokens,
        "keep_recent_tokens": settings.keep_recent_tokens,
        "tenant_daily_token_budget": settings.tenant_daily_token_budget or None,
        "pending": {
            "sessions": pending,
            "oldest_age_s": round((now_ms - min(oldest)) / 1000, 1) if oldest else None,
            "older_than_timeout": stale,
        },
        "deferred_by_budget": deferred,
    }
