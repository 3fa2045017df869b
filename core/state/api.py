"""``MemoryClient``'s state methods (a mixin, so the client stays one small module).

See ``docs/state.md``. Everything here writes Redis only, in one ``EVALSHA`` per call; the
drainers make it durable (``core/state/wal.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis
from sqlalchemy import Engine

from config.settings import Settings
from core.cache.breaker import Breaker
from core.errors import TransientError, ValidationError
from core.models import validate_id
from core.state import durable
from core.state.conversation import ConversationState
from core.state.model import FIELDS, KIND_OF, AgentResult, StateChange, StateSchema
from core.state.results import Results
from core.state.store import DataFn, StateStore
from core.store.keys import Keys, StateKeys
from core.store.redis_errors import redis_errors
from core.store.scripts import Scripts

HISTORY_MAX = 1000


class StateAPI:
    redis: redis.Redis
    settings: Settings
    keys: Keys
    scripts: Scripts

    @property
    def engine(self) -> Engine:
        raise NotImplementedError  # MemoryClient's

    def _init_state(self, schema: StateSchema | None) -> None:
        # One breaker for the client's Redis: state reads degrade and writes fail fast on it.
        self.breaker = Breaker(
            failures=self.settings.breaker_failures, cooldown_s=self.settings.breaker_cooldown_s
        )
        engine: Callable[[], Engine] = lambda: self.engine  # noqa: E731
        self._state = StateStore(
            redis=self.redis,
            scripts=self.scripts,
            settings=self.settings,
            engine=engine,
            breaker=self.breaker,
            schema=schema,
        )
        self._results = Results(
            redis=self.redis,
            scripts=self.scripts,
            settings=self.settings,
            engine=engine,
            breaker=self.breaker,
        )

    def _state_keys(self, tenant: str, session_id: str) -> StateKeys:
        validate_id("tenant", tenant)
        validate_id("session_id", session_id)
        return self.keys.state(tenant, session_id)

    def state(self, session_id: str, *, tenant: str = "default") -> ConversationState:
        """The session's ``ConversationState`` (local LRU -> Redis -> durable store).

        One Redis call; a local copy that is still current is served without moving its
        fields. While Redis is unavailable the state comes from the local copy or the store,
        marked ``degraded``."""
        keys = self._state_keys(tenant, session_id)
        return ConversationState(self._state, keys, self._state.read(keys))

    def update_state(
        self,
        session_id: str,
        fn: DataFn,
        *,
        tenant: str = "default",
        actor: str | None = None,
    ) -> int:
        """Apply ``fn(data) -> new data`` to the session's ``data`` atomically; returns the new
        version. A concurrent writer never loses its change: the version is checked in the
        same script that writes, and a conflict is retried with the current data up to
        ``MEMSCRIBE_STATE_UPDATE_RETRIES`` times, then ``ConflictError``. ``fn`` may run more
        than once: keep it free of side effects."""
        keys = self._state_keys(tenant, session_id)
        if actor is not None:
            validate_id("actor", actor)
        return self._state.update(keys, fn, actor=actor)

    def state_history(
        self,
        session_id: str,
        *,
        tenant: str = "default",
        limit: int = 50,
        before_version: int | None = None,
    ) -> list[StateChange]:
        """The durable history of the session's state, newest first: who changed which fields
        when, old and new version, the new values. Holds what the drainers have written."""
        keys = self._state_keys(tenant, session_id)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= HISTORY_MAX:
            raise ValidationError("limit", f"must be an integer 1..{HISTORY_MAX}, got {limit!r}")
        return durable.history(
            self.engine, keys.tenant, keys.session_id, limit=limit, before_version=before_version
        )

    def put_result(
        self,
        session_id: str,
        result: Any,
        *,
        tenant: str = "default",
        result_id: str | None = None,
    ) -> str:
        """Hand an agent result (any JSON) to whoever takes it next; returns its id.
        Idempotent on ``result_id``. One Redis call."""
        result_id, _duplicate = self._results.put(
            self._state_keys(tenant, session_id), result, result_id=result_id
        )
        return result_id

    def take_unconsumed(
        self, session_id: str, *, tenant: str = "default", limit: int = 10
    ) -> list[AgentResult]:
        """The oldest ``limit`` results not consumed yet, marked consumed in the same call:
        two takers never get the same one."""
        return self._results.take(self._state_keys(tenant, session_id), limit=limit)

    def state_stats(self) -> dict[str, Any]:
        """Where this client's state reads were answered: hits per level, durable reads,
        writes, conflicts, degraded reads, hit rate; and the breaker's state."""
        return self._state.stats.as_dict() | {
            "breaker": self.breaker.state,
            "local_entries": len(self._state.local),
            "local_bytes": self._state.local.size_bytes,
        }

    def inspect_state(self, session_id: str, *, tenant: str = "default") -> dict[str, Any]:
        """Everything about one session's state, for debugging: the fields and where they
        live (kind, TTL left in Redis), the versions in each level (local, Redis, the WAL's
        newest not yet durable, the store), the agent results, the last changes."""
        keys = self._state_keys(tenant, session_id)
        state = self.state(session_id, tenant=tenant)
        kind_key = dict(
            zip(("tasks", "evaluation", "context", "temp"), keys.kind_keys(), strict=True)
        )
        try:
            with redis_errors(), self.redis.pipeline(transaction=False) as pipe:
                pipe.hget(keys.main, "v")
                pipe.ttl(keys.main)
                for key in keys.kind_keys():
                    pipe.ttl(key)
                pipe.hget(keys.high_water, keys.member)
                pipe.llen(keys.unconsumed)
                pipe.llen(keys.consumed)
                redis_version, main_ttl, *ttls, pending, waiting, done = pipe.execute()
        except TransientError:
            redis_version, main_ttl, ttls, pending, waiting, done = None, -2, [-2] * 4, None, 0, 0
        ttl_of = dict(zip(kind_key, ttls, strict=True)) | {"state": main_ttl}
        local = self._state.local.get(keys.member)
        stored = durable.load_state(self.engine, keys.tenant, keys.session_id)
        return {
            "tenant": tenant,
            "session_id": session_id,
            "version": state.version,
            "schema_version": self._state.schema_version,
            "level": state.level,
            "degraded": state.degraded,
            "fields": {
                name: {
                    "kind": KIND_OF[name],
                    "value": getattr(state, name),
                    "redis_ttl_s": ttl_of[KIND_OF[name]],
                }
                for name in FIELDS
            },
            "versions": {
                "local": None if local is None else local.value.version,
                "redis": None if redis_version is None else int(redis_version),
                "wal_newest_not_durable": None if pending is None else int(pending),
                "durable": stored.version,
            },
            "results": {
                "unconsumed": int(waiting),
                "consumed_retained": min(int(done), self.settings.state_results_retention),
            },
            "recent_changes": [
                {
                    "version": c.version,
                    "actor": c.actor,
                    "fields": c.fields,
                    "at": c.changed_at.isoformat(),
                }
                for c in durable.history(
                    self.engine, keys.tenant, keys.session_id, limit=5, before_version=None
                )
            ],
            "stats": self.state_stats(),
        }
