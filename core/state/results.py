"""Agent results of a session: put by one agent, taken exactly once by another.

``put`` is one ``EVALSHA`` of ``results_put.lua`` (idempotent on the result id, bounded by
``MEMSCRIBE_STATE_RESULTS_MAX_UNCONSUMED``); ``take`` is one ``EVALSHA`` of
``results_take.lua``, which pops the oldest unconsumed ids and marks them consumed in the same
script, so two takers, in any processes, never get the same result. The newest
``MEMSCRIBE_STATE_RESULTS_RETENTION`` consumed results stay readable in Redis; every result
reaches the store through the WAL (kinds ``ar`` and ``ac``), consumed or not.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import redis
from sqlalchemy import Engine

from config.settings import Settings
from core.cache.breaker import Breaker
from core.errors import ValidationError
from core.models import new_message_id, validate_id
from core.retention.policy import RetentionPolicy
from core.state import durable
from core.state.model import AgentResult, encode
from core.store.keys import StateKeys
from core.store.redis_errors import redis_errors
from core.store.scripts import Scripts

MAX_TAKE = 1000


class Results:
    def __init__(
        self,
        *,
        redis: redis.Redis,
        scripts: Scripts,
        settings: Settings,
        engine: Callable[[], Engine],
        breaker: Breaker,
    ) -> None:
        self.redis = redis
        self.scripts = scripts
        self.settings = settings
        self.engine = engine
        self.breaker = breaker
        self._tenant_budget = settings.tenant_budget_per_shard
        self._retention = RetentionPolicy.of(settings)

    def _ttl_s(self, tenant: str) -> int:
        # Redis never holds a tenant's results longer than its retention of state allows.
        return self._retention.redis_ttl_s(tenant, self.settings.state_results_ttl_s, "state")

    def _keys(self, keys: StateKeys) -> list[str]:
        return [keys.results, keys.unconsumed, keys.consumed, keys.wal, keys.tenant_bytes]

    def _restore(self, keys: StateKeys) -> list[str | int]:
        stored = durable.load_results(
            self.engine(),
            keys.tenant,
            keys.session_id,
            retention=self.settings.state_results_retention,
        )
        return stored.restore_args()

    def _call(self, script: Any, keys: list[str], args: list[str | int]) -> Any:
        with redis_errors():
            return self.breaker.call(lambda: script(keys=keys, args=args))

    def put(self, keys: StateKeys, result: Any, *, result_id: str | None) -> tuple[str, bool]:
        """Returns (result_id, duplicate)."""
        checked_id = validate_id("result_id", result_id or new_message_id())
        try:
            encoded = encode(result)
        except (TypeError, ValueError) as exc:
            raise ValidationError("result", f"must be JSON-serializable: {exc}") from None
        if len(encoded.encode()) > self.settings.max_result_bytes:
            raise ValidationError(
                "result",
                f"is {len(encoded.encode())} bytes of JSON "
                f"(limit {self.settings.max_result_bytes}, MEMSCRIBE_MAX_RESULT_BYTES)",
            )
        settings = self.settings
        header: list[str | int] = [
            checked_id,
            encoded,
            keys.tenant,
            keys.session_id,
            int(time.time() * 1000),
            self._ttl_s(keys.tenant),
            settings.state_results_max_unconsumed,
            settings.max_wal_backlog,
            self._tenant_budget,
            str(settings.tenant_backlog_reserve),
        ]
        script_keys = [*self._keys(keys), keys.pressure]
        reply = self._call(self.scripts.results_put, script_keys, [*header, ""])
        if int(reply[0]) == -1:
            reply = self._call(
                self.scripts.results_put, script_keys, [*header, *self._restore(keys)]
            )
        return checked_id, int(reply[0]) == 1

    def take(self, keys: StateKeys, *, limit: int) -> list[AgentResult]:
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_TAKE:
            raise ValidationError("limit", f"must be an integer 1..{MAX_TAKE}, got {limit!r}")
        now_ms = int(time.time() * 1000)
        header: list[str | int] = [
            limit,
            keys.tenant,
            keys.session_id,
            now_ms,
            self._ttl_s(keys.tenant),
            self.settings.state_results_retention,
        ]
        reply = self._call(self.scripts.results_take, self._keys(keys), [*header, ""])
        if int(reply[0]) == -1:
            reply = self._call(
                self.scripts.results_take, self._keys(keys), [*header, *self._restore(keys)]
            )
        pairs = reply[1:]
        return [
            _result(pairs[i], pairs[i + 1], consumed_ms=now_ms) for i in range(0, len(pairs), 2)
        ]

    def listing(self, keys: StateKeys) -> tuple[list[AgentResult], list[AgentResult]]:
        """(unconsumed oldest first, retained consumed newest first), as Redis holds them."""
        with redis_errors(), self.redis.pipeline(transaction=True) as pipe:
            pipe.lrange(keys.unconsumed, 0, -1)
            pipe.lrange(keys.consumed, 0, -1)
            pipe.hgetall(keys.results)
            waiting, done, held = self.breaker.call(pipe.execute)
        unconsumed = [_result(i, held[i]) for i in waiting if i in held]
        # Older consumed ids are listed without their records (kept to recognise a repeat).
        consumed = [
            _result(i, held[i], consumed_ms=int(held.get(f"c:{i}", 0))) for i in done if i in held
        ]
        return unconsumed, consumed


def _result(result_id: str, value: str, *, consumed_ms: int | None = None) -> AgentResult:
    position, created, encoded = value.split("|", 2)
    return AgentResult(result_id, int(position), json.loads(encoded), int(created), consumed_ms)
