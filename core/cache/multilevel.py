"""The multi-level cache: the local LRU, then Redis, then an optional loader (the durable level).

``get`` goes local -> Redis -> loader and promotes what it finds to the levels above.

Cross-process invalidation: a version stamp per key in Redis, checked on every local hit.
Every ``set`` writes a fresh random stamp beside the value (one MULTI); ``delete`` and
``invalidate_tag`` delete the stamp with the value. A local entry remembers the stamp it was
read or written with, and a local hit is served only after one ``GET`` of the stamp finds it
unchanged. So once process B's ``set``/``delete``/``invalidate_tag`` has returned, process A's
next read cannot be stale: that read asks Redis, whose stamp B has already replaced. The local
level then saves the value's transfer and JSON decoding, not the round trip.

Why not redis-py's client-side caching (RESP3 ``CLIENT TRACKING``, ``CacheConfig``): its
invalidation pushes arrive asynchronously on the tracked connection and a hit only drains what
has already reached the socket, so a push still in flight after B's reply is a stale read; it
caches replies per command rather than values, knows no tags, is bounded by entries only, and
an outage clears it (a degraded read needs the local copy). A pub/sub channel alone has the
same asynchrony. The stamp check trades one small round trip per local hit for strictness.

While the breaker is open the local level answers without a stamp check, marked
``degraded``; writes raise ``TransientError`` at once (docs/cache.md).
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import redis

from config.settings import Settings
from core.cache.breaker import Breaker
from core.cache.local import LocalLRU
from core.errors import TransientError, ValidationError
from core.store.keys import Keys
from core.store.scripts import lua_source

log = logging.getLogger(__name__)

# Keys and tags become parts of Redis key names: a closed alphabet, and never a pattern
# (nothing here runs KEYS or SCAN MATCH; tags are explicit index sets).
NAME = re.compile(r"^[A-Za-z0-9_.:/@=-]{1,200}$")
# Below this many reads the hit rate says nothing yet.
HEALTH_MIN_READS = 20
HEALTH_MIN_HIT_RATE = 0.5

Level = Literal["local", "redis", "loader"]
Loader = Callable[[str], Any]


@dataclass(frozen=True, slots=True)
class CacheResult:
    """What ``lookup`` found: the value (None: nowhere), the level that answered, and whether
    Redis was skipped because it is unavailable (the local copy was not checked)."""

    value: Any
    level: Level | None
    degraded: bool = False

    @property
    def found(self) -> bool:
        return self.level is not None


@dataclass(slots=True)
class LevelStats:
    hits: int = 0
    misses: int = 0
    writes: int = 0
    loads: int = 0

    @property
    def hit_rate(self) -> float:
        asked = self.hits + self.misses
        return self.hits / asked if asked else 0.0


@dataclass(slots=True)
class CacheStats:
    local: LevelStats = field(default_factory=LevelStats)
    redis: LevelStats = field(default_factory=LevelStats)
    loader: LevelStats = field(default_factory=LevelStats)
    reads: int = 0
    hits: int = 0  # reads answered by any level
    degraded_reads: int = 0
    stale: int = 0  # local entries found outdated by the stamp check

    @property
    def hit_rate(self) -> float:
        return self.hits / self.reads if self.reads else 0.0

    def as_dict(self) -> dict[str, Any]:
        levels = {
            name: {**asdict(level), "hit_rate": level.hit_rate}
            for name, level in (
                ("local", self.local),
                ("redis", self.redis),
                ("loader", self.loader),
            )
        }
        combined = {
            "reads": self.reads,
            "hits": self.hits,
            "misses": self.reads - self.hits,
            "hit_rate": self.hit_rate,
            "degraded_reads": self.degraded_reads,
            "stale": self.stale,
        }
        return {**levels, "combined": combined}


def check_name(field_name: str, name: str) -> str:
    if not isinstance(name, str) or not NAME.match(name):
        raise ValidationError(field_name, f"must match {NAME.pattern}: {name!r}")
    return name


def encode(value: Any) -> str:
    """JSON only: a value that is not JSON is the caller's error."""
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValidationError("value", f"cache values must be JSON-serializable: {exc}") from None


class Cache:
    """Local LRU -> Redis -> ``loader``. Thread-safe; one per process is the intent."""

    def __init__(
        self,
        *,
        redis: redis.Redis,
        settings: Settings,
        loader: Loader | None = None,
        breaker: Breaker | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.redis = redis
        self.keys = Keys.of(settings)
        self.default_ttl_s = settings.cache_default_ttl_s
        self.loader = loader
        self.local = LocalLRU(
            max_entries=settings.cache_local_max_entries,
            max_bytes=settings.cache_local_max_bytes,
            clock=clock,
        )
        self.breaker = breaker or Breaker(
            failures=settings.breaker_failures, cooldown_s=settings.breaker_cooldown_s
        )
        self.stats = CacheStats()
        self._invalidate_tag = redis.register_script(lua_source("cache_invalidate_tag"))

    # --- reads ----------------------------------------------------------------------------
    def get(self, key: str, default: Any = None) -> Any:
        """The value of ``key`` from the nearest level that has it, else ``default``."""
        result = self.lookup(key)
        return result.value if result.found else default

    def lookup(self, key: str) -> CacheResult:
        """``get`` with where the value came from and whether the read was degraded."""
        check_name("key", key)
        self.stats.reads += 1
        entry = self.local.get(key)
        if entry is not None:
            try:
                stamp = self.breaker.call(lambda: self.redis.get(self.keys.cache_stamp(key)))
            except TransientError:
                return self._answer(CacheResult(entry.value, "local", degraded=True))
            if stamp == entry.stamp:
                self.stats.local.hits += 1
                return self._answer(CacheResult(entry.value, "local"))
            # Another process set or dropped it since we read it.
            self.stats.stale += 1
            self.local.delete(key)
        self.stats.local.misses += 1
        try:
            found = self.breaker.call(lambda: self._read_redis(key))
        except TransientError:
            return self._answer(self._load(key, degraded=True))
        if found is None:
            self.stats.redis.misses += 1
            return self._answer(self._load(key, degraded=False))
        self.stats.redis.hits += 1
        encoded, stamp, ttl_ms = found
        self._keep(key, encoded, ttl_s=ttl_ms / 1000, stamp=stamp)
        return self._answer(CacheResult(json.loads(encoded), "redis"))

    def _read_redis(self, key: str) -> tuple[str, str, int] | None:
        value_key = self.keys.cache_value(key)
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.get(value_key)
            pipe.get(self.keys.cache_stamp(key))
            pipe.pttl(value_key)
            encoded, stamp, ttl_ms = pipe.execute()
        if encoded is None or stamp is None:
            return None
        return encoded, stamp, ttl_ms if ttl_ms > 0 else int(self.default_ttl_s * 1000)

    def _load(self, key: str, *, degraded: bool) -> CacheResult:
        if self.loader is None:
            return CacheResult(None, None, degraded)
        value = self.loader(key)
        if value is None:
            self.stats.loader.misses += 1
            return CacheResult(None, None, degraded)
        self.stats.loader.hits += 1
        self.stats.loader.loads += 1
        if not degraded:
            try:
                self.set(key, value)
            except TransientError:  # Redis went away between the read and this write
                log.warning("cache: loaded %r but could not write it to Redis", key)
        return CacheResult(value, "loader", degraded)

    def _answer(self, result: CacheResult) -> CacheResult:
        if result.found:
            self.stats.hits += 1
        if result.degraded:
            self.stats.degraded_reads += 1
        return result

    def _keep(self, key: str, encoded: str, *, ttl_s: float, stamp: str) -> None:
        # The local copy is decoded from the JSON, so every level returns the same shapes.
        size = len(encoded.encode())
        if self.local.put(key, json.loads(encoded), size_bytes=size, ttl_s=ttl_s, stamp=stamp):
            self.stats.local.writes += 1

    # --- writes ---------------------------------------------------------------------------
    def set(
        self, key: str, value: Any, *, ttl_s: float | None = None, tags: Iterable[str] = ()
    ) -> None:
        """Write ``value`` (JSON) to Redis and the local level for ``ttl_s`` (default from the
        settings), indexed under ``tags``. Raises ``TransientError`` when Redis is unavailable
        (at once while the breaker is open); the local copy is dropped then."""
        check_name("key", key)
        tags = [check_name("tag", tag) for tag in tags]
        encoded = encode(value)
        ttl_s = self.default_ttl_s if ttl_s is None else ttl_s
        if ttl_s <= 0:
            raise ValidationError("ttl_s", "must be positive")
        ttl_ms = max(1, int(ttl_s * 1000))
        stamp = uuid.uuid4().hex
        # Drop first: a failed write must not leave this process reading its own old copy.
        self.local.delete(key)
        self.breaker.call(lambda: self._write_redis(key, encoded, stamp, ttl_ms, tags))
        self.stats.redis.writes += 1
        self._keep(key, encoded, ttl_s=ttl_s, stamp=stamp)

    def _write_redis(
        self, key: str, encoded: str, stamp: str, ttl_ms: int, tags: list[str]
    ) -> None:
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(self.keys.cache_value(key), encoded, px=ttl_ms)
            pipe.set(self.keys.cache_stamp(key), stamp, px=ttl_ms)
            for tag in tags:
                index = self.keys.cache_tag(tag)
                pipe.sadd(index, key)
                # The index lives as long as its longest-lived member (NX: first, GT: longer).
                pipe.pexpire(index, ttl_ms, nx=True)
                pipe.pexpire(index, ttl_ms, gt=True)
            pipe.execute()

    def delete(self, key: str) -> None:
        """Drop ``key`` from every cache level (the loader's store is not touched)."""
        check_name("key", key)
        self.local.delete(key)
        self.breaker.call(
            lambda: self.redis.delete(self.keys.cache_value(key), self.keys.cache_stamp(key))
        )

    def invalidate_tag(self, tag: str) -> int:
        """Drop every key written with ``tag``; how many the tag index held. Other processes
        see it at their next read (their stamps are gone); this one's local copies go now."""
        check_name("tag", tag)
        prefix_value = self.keys.cache_value("")
        prefix_stamp = self.keys.cache_stamp("")
        index = self.keys.cache_tag(tag)
        dropped = self.breaker.call(
            lambda: self._invalidate_tag(keys=[index], args=[prefix_value, prefix_stamp])
        )
        for key in dropped:
            self.local.delete(key)
        return len(dropped)

    def warm(
        self,
        items: Mapping[str, Any] | Iterable[tuple[str, Any]],
        *,
        ttl_s: float | None = None,
        tags: Iterable[str] = (),
    ) -> int:
        """Write many values at once (a deploy, a restart); how many were written."""
        pairs = items.items() if isinstance(items, Mapping) else items
        tags = list(tags)
        written = 0
        for key, value in pairs:
            self.set(key, value, ttl_s=ttl_s, tags=tags)
            written += 1
        return written

    # --- health ---------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        """``status`` ok / warn (hit rate below 0.5 over enough reads) / degraded (the breaker
        is not closed), the ``warnings`` behind it, the breaker's state and the stats."""
        warnings: list[str] = []
        state = self.breaker.state
        if state != "closed":
            warnings.append(f"Redis breaker is {state}: reads are served from the local level")
        if self.stats.reads >= HEALTH_MIN_READS and self.stats.hit_rate < HEALTH_MIN_HIT_RATE:
            warnings.append(
                f"hit rate {self.stats.hit_rate:.2f} is below {HEALTH_MIN_HIT_RATE} "
                f"over {self.stats.reads} reads"
            )
        for warning in warnings:
            log.warning("cache: %s", warning)
        status = "degraded" if state != "closed" else ("warn" if warnings else "ok")
        return {
            "status": status,
            "warnings": warnings,
            "breaker": state,
            "local_entries": len(self.local),
            "local_bytes": self.local.size_bytes,
            "stats": self.stats.as_dict(),
        }

    def cached(
        self,
        ttl_s: float | None = None,
        *,
        tags: Iterable[str] = (),
        key: Callable[..., str] | None = None,
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """``@cache.cached(ttl_s, tags=..., key=...)``: see ``core.cache.decorator.cached``."""
        from core.cache.decorator import cached

        return cached(self, ttl_s, tags=tags, key=key)
