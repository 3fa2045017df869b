"""Exponential backoff shared by every drainer through Redis: a small circuit breaker.

While the durable store fails, every worker process sees the same "next attempt" time, so a
fleet of drainers makes one probe per interval instead of each spinning on its own.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

import redis


@dataclass(frozen=True)
class BackoffState:
    failures: int
    retry_in_s: float
    last_error: str


class Backoff:
    """Delay after the n-th consecutive failure: base * 2**(n-1), capped, with equal jitter
    (between half and all of it), so successive waits grow even with the randomness."""

    def __init__(self, client: redis.Redis, key: str, *, base_ms: int, cap_s: float) -> None:
        self._redis = client
        self.key = key
        self.base_ms = base_ms
        self.cap_ms = cap_s * 1000

    def wait_s(self) -> float:
        """Seconds until the next attempt is due (0: go ahead)."""
        next_ms = self._redis.hget(self.key, "next_ms")
        if next_ms is None:
            return 0.0
        return max(0.0, (float(next_ms) - time.time() * 1000) / 1000)

    def failed(self, error: str) -> float:
        """Record a failure; returns the delay before the next attempt, in seconds."""
        failures = int(self._redis.hincrby(self.key, "failures", 1))
        ceiling_ms = min(self.cap_ms, self.base_ms * 2 ** min(failures - 1, 40))
        delay_ms = ceiling_ms / 2 + random.uniform(0, ceiling_ms / 2)
        self._redis.hset(
            self.key,
            mapping={"next_ms": time.time() * 1000 + delay_ms, "error": error[:300]},
        )
        return float(delay_ms) / 1000

    def succeeded(self) -> None:
        self._redis.delete(self.key)

    def state(self) -> BackoffState | None:
        fields = self._redis.hgetall(self.key)
        if not fields:
            return None
        return BackoffState(
            failures=int(fields.get("failures", 0)),
            retry_in_s=self.wait_s(),
            last_error=str(fields.get("error", "")),
        )
