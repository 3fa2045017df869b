"""Reads and writes of conversation state: local LRU -> Redis -> durable store.

A read asks Redis in one ``EVALSHA`` of ``state_read.lua``: when this process holds a local
copy, the script only confirms its version (``{1, v}``) and the copy is served without moving
the fields; otherwise the fields come back and are kept locally. A session Redis does not hold
(or a kind whose TTL ran out) is read from the store with its version and re-warmed by the
same script, which refuses while the WAL still holds a newer version than the store.

A write is one ``EVALSHA`` of ``state_patch.lua``: version check, the changed fields, a WAL
entry of kind ``st``. ``update`` retries a version conflict with the current data that the
conflict reply carries (no extra read), up to ``MEMSCRIBE_STATE_UPDATE_RETRIES`` times.

Degradation: every Redis call goes through the circuit breaker. While Redis is away (or the
breaker is open) reads are served from the local copy, else from the durable store, marked
``degraded``; writes raise ``TransientError`` at once. They are never written to PostgreSQL
directly: that would overtake patches still in the WAL and break version order.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, Literal

import redis
from sqlalchemy import Engine

from config.settings import Settings
from core.cache.breaker import Breaker
from core.cache.local import LocalLRU
from core.errors import ConflictError, TransientError
from core.retention.policy import RetentionPolicy
from core.state import durable
from core.state.model import FIELDS, StateSchema, check_field, encode, kind_ttls
from core.store.keys import StateKeys
from core.store.redis_errors import redis_errors
from core.store.scripts import Scripts

Level = Literal["local", "redis", "durable"]
KINDS = ("tasks", "evaluation", "context", "temp")
LOCK_STRIPES = 64
DataFn = Callable[[dict[str, Any]], dict[str, Any]]


class VersionConflict(ConflictError):
    """A patch's expected version was not the current one; carries the current data."""

    def __init__(
        self, message: str, *, current_version: int, current_data: str, current_schema: int
    ) -> None:
        super().__init__(message, current_version=current_version)
        self.current_data = current_data
        self.current_schema = current_schema


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One version of a session's state as Redis holds it: field -> JSON ('' = never set)."""

    version: int
    schema_version: int
    fields: dict[str, str]

    def size_bytes(self) -> int:
        return sum(len(value) for value in self.fields.values()) + 16


@dataclass
class StateStats:
    """Where state reads were answered (``MemoryClient.state_stats``)."""

    reads: int = 0
    local_hits: int = 0
    redis_hits: int = 0
    redis_misses: int = 0
    durable_reads: int = 0
    writes: int = 0
    conflicts: int = 0
    degraded_reads: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def hit_rate(self) -> float:
        """Reads answered by a cache level (local or Redis) over all reads."""
        return (self.local_hits + self.redis_hits) / self.reads if self.reads else 0.0

    def count(self, **deltas: int) -> None:
        with self.lock:
            for name, delta in deltas.items():
                setattr(self, name, getattr(self, name) + delta)

    def as_dict(self) -> dict[str, Any]:
        names = [f.name for f in fields(self) if f.name != "lock"]
        return {name: getattr(self, name) for name in names} | {"hit_rate": round(self.hit_rate, 4)}


@dataclass(frozen=True, slots=True)
class Read:
    snapshot: Snapshot
    level: Level
    degraded: bool = False


class StateStore:
    """Conversation state of one deployment. Thread-safe; owned by a ``MemoryClient``."""

    def __init__(
        self,
        *,
        redis: redis.Redis,
        scripts: Scripts,
        settings: Settings,
        engine: Callable[[], Engine],
        breaker: Breaker,
        schema: StateSchema | None = None,
    ) -> None:
        self.redis = redis
        self.scripts = scripts
        self.settings = settings
        self.engine = engine
        self.breaker = breaker
        self.schema = schema
        self.stats = StateStats()
        self.local = LocalLRU(
            max_entries=settings.cache_local_max_entries, max_bytes=settings.cache_local_max_bytes
        )
        self._ttls = kind_ttls(settings)
        self._retention = RetentionPolicy.of(settings)
        self._locks = [threading.Lock() for _ in range(LOCK_STRIPES)]
        self._tenant_budget = settings.tenant_budget_per_shard

    # --- reads --------------------------------------------------------------------------------

    def read(self, keys: StateKeys) -> Read:
        """The session's state from the nearest level that holds it (see the module doc)."""
        self.stats.count(reads=1)
        held = self.local.get(keys.member)
        local: Snapshot | None = None if held is None else held.value
        try:
            reply = self._call_read(keys, "" if local is None else local.version, [])
        except TransientError:
            return self._degraded(keys, local)
        if int(reply[0]) == 1 and local is not None:
            self.stats.count(local_hits=1)
            return Read(local, "local")
        if int(reply[0]) == 2 and "?" not in reply[5:]:
            self.stats.count(redis_hits=1)
            return Read(self._keep(keys, _snapshot(reply)), "redis")
        # Not in Redis, or a kind expired there: the store answers and re-warms Redis.
        self.stats.count(redis_misses=1, durable_reads=1)
        stored = durable.load_state(self.engine(), keys.tenant, keys.session_id)
        reply = self._call_read(keys, "", stored.restore_args())
        return Read(self._keep(keys, _snapshot(reply)), "durable")

    def _ttls_of(self, tenant: str) -> list[int]:
        # Redis never holds a tenant's state longer than its retention of state allows.
        return [self._retention.redis_ttl_s(tenant, ttl, "state") for ttl in self._ttls]

    def _call_read(self, keys: StateKeys, known: int | str, restore: list[str | int]) -> Any:
        def call() -> Any:
            return self.scripts.state_read(
                keys=[keys.main, *keys.kind_keys(), keys.high_water],
                args=[known, keys.member, *self._ttls_of(keys.tenant), *restore],
            )

        with redis_errors():
            reply = self.breaker.call(call)
        if int(reply[0]) == -3:
            raise _behind(keys, int(reply[1]))
        return reply

    def _degraded(self, keys: StateKeys, local: Snapshot | None) -> Read:
        self.stats.count(degraded_reads=1)
        if local is not None:
            self.stats.count(local_hits=1)
            return Read(local, "local", degraded=True)
        self.stats.count(durable_reads=1)
        stored = durable.load_state(self.engine(), keys.tenant, keys.session_id)
        snapshot = Snapshot(stored.version, stored.schema_version, _all_fields(stored.fields))
        return Read(snapshot, "durable", degraded=True)

    def _keep(self, keys: StateKeys, snapshot: Snapshot) -> Snapshot:
        self.local.put(
            keys.member,
            snapshot,
            size_bytes=snapshot.size_bytes(),
            ttl_s=self.settings.state_ttl_s,
        )
        return snapshot

    # --- writes -------------------------------------------------------------------------------

    def patch(
        self,
        keys: StateKeys,
        changes: dict[str, str],
        *,
        expected: int | None,
        actor: str | None,
        schema_version: int,
        base: Snapshot | None = None,
    ) -> int:
        """Write ``changes`` (field -> JSON) if the version is still ``expected`` (None: any);
        returns the new version. Raises ``ConflictError`` (carrying the current version and
        data in ``.current``) when it is not."""
        header: list[str | int] = [
            "" if expected is None else expected,
            keys.tenant,
            keys.member,
            keys.session_id,
            actor or "",
            int(time.time() * 1000),
            schema_version,
            self.settings.max_wal_backlog,
            self._tenant_budget,
            str(self.settings.tenant_backlog_reserve),
            *self._ttls_of(keys.tenant),
            len(changes),
        ]
        for name, encoded in changes.items():
            header += [name, encoded]
        reply = self._call_patch(keys, [*header, ""])
        if int(reply[0]) == -1:
            stored = durable.load_state(self.engine(), keys.tenant, keys.session_id)
            reply = self._call_patch(keys, [*header, *stored.restore_args()])
        if int(reply[0]) == -2:
            self.stats.count(conflicts=1)
            raise VersionConflict(
                f"state of session {keys.session_id!r} is at version {int(reply[1])}, "
                f"not {expected}",
                current_version=int(reply[1]),
                current_data=_text(reply[2]),
                current_schema=int(reply[3] or 1),
            )
        version = int(reply[1])
        self.stats.count(writes=1)
        if base is not None and base.version == version - 1:
            self._keep(keys, Snapshot(version, schema_version, base.fields | changes))
        else:
            self.local.delete(keys.member)
        return version

    def _call_patch(self, keys: StateKeys, args: list[str | int]) -> Any:
        def call() -> Any:
            return self.scripts.state_patch(
                keys=[
                    keys.main,
                    *keys.kind_keys(),
                    keys.wal,
                    keys.high_water,
                    keys.tenant_bytes,
                    keys.pressure,
                ],
                args=args,
            )

        with redis_errors():
            reply = self.breaker.call(call)
        if int(reply[0]) == -3:
            raise _behind(keys, int(reply[1]))
        return reply

    def update(self, keys: StateKeys, fn: DataFn, *, actor: str | None) -> int:
        """``fn(data) -> data`` applied atomically; returns the new version (see module doc).

        Threads of one process updating one session take turns (a striped lock): under the
        GIL a thread that lost a race resumes only after others have committed again, so
        optimistic retries among threads starve. Across processes the version check alone
        decides, and a writer that keeps losing backs off."""
        with self._locks[hash(keys.member) % len(self._locks)]:
            return self._update(keys, fn, actor=actor)

    def _update(self, keys: StateKeys, fn: DataFn, *, actor: str | None) -> int:
        # The local copy is a guess that the patch's version check verifies: when it is
        # current (this process wrote last) an update is one round trip; when not, the
        # conflict reply brings the current data.
        held = self.local.get(keys.member)
        base: Snapshot | None = None if held is None else held.value
        verified = base is None
        if base is None:
            read = self.read(keys)
            if read.degraded:
                raise TransientError("Redis is unavailable: state updates fail until it is back")
            base = read.snapshot
        version, data_json, schema_version = base.version, base.fields["data"], base.schema_version
        for attempt in range(self.settings.state_update_retries + 1):
            data = self.upgrade(json.loads(data_json) if data_json else {}, schema_version)
            changed = fn(data)
            encoded = check_field("data", self.validate(changed), max_bytes=self._max_field())
            if encoded == data_json and schema_version == self.schema_version:
                if verified:
                    return version
                # Nothing to change, but only the store's current version may say so.
                base = self.read(keys).snapshot
                version, data_json = base.version, base.fields["data"]
                schema_version, verified = base.schema_version, True
                continue
            try:
                return self.patch(
                    keys,
                    {"data": encoded},
                    expected=version,
                    actor=actor,
                    schema_version=self.schema_version,
                    base=base,
                )
            except VersionConflict as conflict:
                verified = True
                version = conflict.current_version
                data_json, schema_version = conflict.current_data, conflict.current_schema
                base = None
                if attempt == self.settings.state_update_retries:
                    raise ConflictError(
                        f"state of session {keys.session_id!r}: {attempt + 1} attempts lost a "
                        f"race (MEMSCRIBE_STATE_UPDATE_RETRIES={attempt})",
                        current_version=version,
                    ) from None
                # The reply holds the current data: retry at once, while it is current. Only a
                # writer that keeps losing backs off (jittered), to let a crowd thin out.
                if attempt >= 4:
                    time.sleep(random.uniform(0, min(0.02, 0.0005 * 2 ** (attempt - 4))))
        raise AssertionError("unreachable")

    # --- schema -------------------------------------------------------------------------------

    @property
    def schema_version(self) -> int:
        return 1 if self.schema is None else self.schema.version

    def upgrade(self, data: dict[str, Any], written_by: int) -> dict[str, Any]:
        if self.schema is None:
            return data
        if written_by == self.schema.version:
            return data
        return self.schema.upgrade(data, written_by)

    def validate(self, data: Any) -> Any:
        if self.schema is None or not isinstance(data, dict):
            return data
        return self.schema.validate(data)

    def _max_field(self) -> int:
        return self.settings.state_max_field_bytes


def _behind(keys: StateKeys, version: int) -> TransientError:
    return TransientError(
        f"state of session {keys.session_id!r}: the durable store is behind version {version} "
        "still in the WAL; retry once the drainers catch up"
    )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")


def _snapshot(reply: Any) -> Snapshot:
    _, version, schema, *values = reply
    fields = dict(zip(FIELDS, (_text(value) for value in values), strict=True))
    return Snapshot(int(version), int(schema), fields)


def _all_fields(given: dict[str, str]) -> dict[str, str]:
    return {name: given.get(name, "") for name in FIELDS}


__all__ = ["Read", "Snapshot", "StateStats", "StateStore", "encode"]
