"""9. The cache (core/cache): the local level's gets and sets per second beside
``cachetools.TTLCache`` (the ``bench`` extra), and ``Cache.get`` p50 against PING and a plain
redis-py GET measured in the same turns.

- local level: ``LocalLRU.get``/``put`` alone (no stamp check), the in-memory figure the seed
  quotes; TTLCache does the same work with entries-only bounds.
- ``Cache.get``, local hit: the stamp check is one GET of a short string, so its p50 sits near
  a plain GET; what the local level saves is the value's transfer and JSON decoding.
- ``Cache.get``, Redis level: the local copy is dropped before each read (one pipelined MULTI
  of GET value, GET stamp, PTTL, then the promotion).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from redis import Redis

from bench.context import BenchContext, log
from bench.figures import Figure, Samples, summarize
from bench.section import Section
from bench.turns import against_ping, p50s_in_turns
from core.cache import Cache, LocalLRU

KEYS = 256
VALUE = {"user": "u-1", "plan": "pro", "features": ["a", "b", "c"], "limits": {"rpm": 600}}
SIZE_BYTES = 90


def _per_second(operation: Callable[[int], object], count: int) -> float:
    began = time.perf_counter()
    for i in range(count):
        operation(i)
    return count / (time.perf_counter() - began)


def _local_rates(count: int) -> dict[str, float]:
    lru = LocalLRU(max_entries=KEYS * 2, max_bytes=KEYS * 2 * SIZE_BYTES)
    names = [f"k:{i}" for i in range(KEYS)]
    rates = {
        "local.set": _per_second(
            lambda i: lru.put(names[i % KEYS], VALUE, size_bytes=SIZE_BYTES, ttl_s=300), count
        ),
        "local.get": _per_second(lambda i: lru.get(names[i % KEYS]), count),
    }
    try:
        from cachetools import TTLCache
    except ImportError:
        return rates
    ttl_cache: TTLCache[str, object] = TTLCache(maxsize=KEYS * 2, ttl=300)

    def put(i: int) -> None:
        ttl_cache[names[i % KEYS]] = VALUE

    rates["cachetools.set"] = _per_second(put, count)
    rates["cachetools.get"] = _per_second(lambda i: ttl_cache.get(names[i % KEYS]), count)
    return rates


def _latency_calls(redis: Redis, cache: Cache) -> dict[str, Callable[[int], object]]:
    plain_key = cache.keys.cache_value("k:0")

    def from_redis(i: int) -> object:
        name = f"k:{i % KEYS}"
        cache.local.delete(name)
        return cache.lookup(name)

    return {
        "ping": lambda _i: redis.ping(),
        "redis_get": lambda _i: redis.get(plain_key),
        "local_hit": lambda i: cache.lookup(f"k:{i % KEYS}"),
        "redis_level": from_redis,
    }


def run(ctx: BenchContext) -> list[Figure]:
    config, redis = ctx.config, ctx.redis
    count = max(50, config.latency_calls // 4)
    local_count = max(5_000, config.latency_calls * 20)
    samples = Samples()
    for repetition in range(config.repetitions):
        ctx.reset()
        cache = Cache(redis=redis, settings=ctx.settings)
        cache.warm({f"k:{i}": VALUE for i in range(KEYS)})
        calls = _latency_calls(redis, cache)
        for key, p50 in p50s_in_turns(calls, count=count, chunk=config.latency_chunk).items():
            samples.add(f"{key}.p50", p50)
        for key, rate in _local_rates(local_count).items():
            samples.add(key, rate)
        log(
            f"cache {repetition + 1}/{config.repetitions}: "
            f"local get {samples['local.get'][-1]:,.0f}/s, set {samples['local.set'][-1]:,.0f}/s"
            f", Redis-level get p50 {samples['redis_level.p50'][-1]:.0f}us"
        )
    ctx.reset()
    figures = _rate_figures(samples)
    labels = {
        "ping": "Redis PING p50",
        "redis_get": "plain redis-py GET",
        "local_hit": "Cache.get, local hit (stamp check)",
        "redis_level": "Cache.get from the Redis level",
    }
    figures += against_ping("cache", labels, samples)
    figures.append(
        summarize(
            "cache.redis_level.p50_vs_get",
            "Cache.get from the Redis level: p50 / plain GET p50",
            "x",
            samples.ratio("redis_level.p50", "redis_get.p50"),
            anchor="cache.redis_get.p50",
        )
    )
    return figures


def _rate_figures(samples: Samples) -> list[Figure]:
    figures: list[Figure] = []
    anchored = "cachetools.get" in samples.values
    for operation in ("get", "set"):
        if anchored:
            figures.append(
                summarize(
                    f"cache.cachetools.{operation}_per_s",
                    f"cachetools.TTLCache {operation}",
                    "ops/s",
                    samples[f"cachetools.{operation}"],
                )
            )
        figures.append(
            summarize(
                f"cache.local.{operation}_per_s",
                f"local level (LocalLRU) {operation}",
                "ops/s",
                samples[f"local.{operation}"],
            )
        )
        if anchored:
            figures.append(
                summarize(
                    f"cache.local.{operation}_vs_cachetools",
                    f"local level {operation} / TTLCache {operation}",
                    "x",
                    samples.ratio(f"local.{operation}", f"cachetools.{operation}"),
                    anchor=f"cache.cachetools.{operation}_per_s",
                )
            )
    return figures


SECTION = Section(
    key="cache",
    title="Cache: local level beside cachetools.TTLCache, Redis level against PING and GET",
    run=run,
    notes=(
        "The seed quotes 27k sets/s and 180k gets/s in memory (measured on another machine) "
        "and targets read p95 < 5 ms, write p95 < 10 ms. The local level bounds entries and "
        "bytes (here a fixed size per value; Cache passes the JSON length), TTLCache only "
        "entries. A "
        "local hit still asks Redis for the key's stamp (docs/cache.md: no stale read after "
        "another process's write returned). Without the bench extra the TTLCache figures "
        "are absent."
    ),
)
