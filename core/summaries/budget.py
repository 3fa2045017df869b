"""LLM token usage per tenant and UTC day, and the daily budget that defers summaries.

Usage is counted in Redis (``<prefix>:usage:<tenant>:<YYYYMMDD>``: prompt, completion, calls)
right after each paid call, and in the durable store with the summary (``llm_usage``). A budget
is checked before a call, so a tenant can overshoot by at most one call's tokens.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import redis

from config.settings import Settings
from core.store.keys import Keys

USAGE_TTL_S = 8 * 24 * 3600  # a week of history for status, then Redis forgets


def utc_day(now_s: float | None = None) -> str:
    return datetime.fromtimestamp(time.time() if now_s is None else now_s, tz=UTC).strftime(
        "%Y%m%d"
    )


def next_utc_midnight_ms(now_s: float) -> int:
    today = datetime.fromtimestamp(now_s, tz=UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return int((today + timedelta(days=1)).timestamp() * 1000)


@dataclass(frozen=True, slots=True)
class TenantUsage:
    tenant: str
    day: str
    calls: int
    prompt_tokens: int
    completion_tokens: int
    budget: int  # 0: no limit

    @property
    def spent(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def exhausted(self) -> bool:
        return self.budget > 0 and self.spent >= self.budget


class Budgets:
    """Per-tenant usage counters and daily budgets, in Redis."""

    def __init__(self, client: redis.Redis, keys: Keys, settings: Settings) -> None:
        self._redis = client
        self._keys = keys
        self._default = settings.tenant_daily_token_budget

    def usage(self, tenant: str, *, now_s: float | None = None) -> TenantUsage:
        day = utc_day(now_s)
        with self._redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(self._keys.llm_usage(tenant, day))
            pipe.hget(self._keys.tenant_budgets(), tenant)
            counters, override = pipe.execute()
        return TenantUsage(
            tenant=tenant,
            day=day,
            calls=int(counters.get("calls", 0)),
            prompt_tokens=int(counters.get("prompt", 0)),
            completion_tokens=int(counters.get("completion", 0)),
            budget=self._default if override is None else int(override),
        )

    def record(
        self, tenant: str, *, prompt_tokens: int, completion_tokens: int, now_s: float
    ) -> None:
        key = self._keys.llm_usage(tenant, utc_day(now_s))
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.hincrby(key, "calls", 1)
            pipe.hincrby(key, "prompt", prompt_tokens)
            pipe.hincrby(key, "completion", completion_tokens)
            pipe.expire(key, USAGE_TTL_S)
            pipe.execute()

    def set_budget(self, tenant: str, daily_tokens: int | None) -> None:
        """Override the default budget for one tenant (0: no limit); None: back to the default."""
        if daily_tokens is None:
            self._redis.hdel(self._keys.tenant_budgets(), tenant)
        else:
            self._redis.hset(self._keys.tenant_budgets(), tenant, daily_tokens)

    def defer(self, tenant: str, session_id: str, *, now_ms: int) -> None:
        # Two keys in two cluster slots, so two commands rather than one MULTI, tenant first:
        # a crash in between leaves a tenant with no deferred session (``deferred`` skips it),
        # never a deferred session that ``resume_deferred`` cannot find.
        self._redis.sadd(self._keys.deferred_tenants(), tenant)
        self._redis.zadd(self._keys.deferred_sessions(tenant), {session_id: now_ms})

    def undefer(self, tenant: str, session_id: str) -> None:
        self._redis.zrem(self._keys.deferred_sessions(tenant), session_id)

    def deferred(self) -> dict[str, list[str]]:
        """Tenants with deferred summaries, and their sessions (oldest deferral first)."""
        tenants: list[str] = sorted(self._redis.smembers(self._keys.deferred_tenants()))  # type: ignore[arg-type]
        if not tenants:
            return {}
        with self._redis.pipeline(transaction=False) as pipe:
            for tenant in tenants:
                pipe.zrange(self._keys.deferred_sessions(tenant), 0, -1)
            replies = pipe.execute()
        # A tenant stays in the set once its sessions are done (removing it here could race
        # with a new deferral); the set only ever holds tenant names.
        return {
            tenant: list(sessions)
            for tenant, sessions in zip(tenants, replies, strict=True)
            if sessions
        }
