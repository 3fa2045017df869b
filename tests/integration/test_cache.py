"""The multi-level cache on a real Redis: levels, promotion, stats, tags, @cached, warming,
health, and cross-process invalidation against a second OS process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis

from config.settings import Settings
from core.cache import Cache
from core.errors import ValidationError
from tests.conftest import REDIS_URL

ROOT = Path(__file__).resolve().parents[2]


def _settings(**overrides: Any) -> Settings:
    return Settings(redis_url=REDIS_URL, **overrides)


@pytest.fixture
def cache(redis_client: redis.Redis) -> Cache:
    return Cache(redis=redis_client, settings=_settings())


def _in_process_b(*args: str) -> str:
    """Run one cache call in another OS process and wait for it to return."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.helpers.cache_writer", REDIS_URL, *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_get_goes_local_then_redis_then_loader_and_promotes(redis_client: redis.Redis) -> None:
    """A miss everywhere loads; the loaded value lands in Redis and locally; a fresh process's
    first read is a Redis hit that promotes to its local level."""
    loads: list[str] = []

    def loader(key: str) -> Any:
        loads.append(key)
        return {"loaded": key} if key.startswith("db:") else None

    first = Cache(redis=redis_client, settings=_settings(), loader=loader)
    result = first.lookup("db:1")
    assert (result.value, result.level, result.degraded) == ({"loaded": "db:1"}, "loader", False)
    assert first.lookup("db:1").level == "local"
    assert loads == ["db:1"]
    assert first.lookup("nowhere").found is False

    second = Cache(redis=redis_client, settings=_settings(), loader=loader)
    assert second.lookup("db:1").level == "redis"
    assert second.lookup("db:1").level == "local"
    assert loads == ["db:1", "nowhere"]  # the loader is asked once per miss everywhere
    stats = second.stats.as_dict()
    assert stats["local"]["hits"] == 1 and stats["local"]["misses"] == 1
    assert stats["redis"]["hits"] == 1 and stats["local"]["writes"] == 1
    assert stats["combined"]["hit_rate"] == 1.0

    first_stats = first.stats.as_dict()
    assert first_stats["loader"]["loads"] == 1 and first_stats["loader"]["misses"] == 1
    assert first_stats["redis"]["misses"] == 2 and first_stats["redis"]["writes"] == 1
    assert first_stats["combined"]["reads"] == 3 and first_stats["combined"]["hits"] == 2


def test_values_are_json_and_ttls_apply_in_redis(cache: Cache, redis_client: redis.Redis) -> None:
    """Redis holds the JSON text with the TTL asked for; a non-JSON value is refused."""
    cache.set("k", {"a": [1, 2]}, ttl_s=30)
    assert redis_client.get(cache.keys.cache_value("k")) == '{"a":[1,2]}'
    assert 0 < redis_client.pttl(cache.keys.cache_value("k")) <= 30_000
    with pytest.raises(ValidationError, match="JSON"):
        cache.set("k2", {1, 2})
    assert redis_client.exists(cache.keys.cache_value("k2")) == 0


def test_keys_and_tags_outside_the_safe_charset_are_refused(cache: Cache) -> None:
    """Names become parts of Redis keys: no spaces, no glob characters."""
    for bad in ("a b", "a*", "x?", "[t]", "", "a\\b"):
        with pytest.raises(ValidationError):
            cache.set(bad, 1)
        with pytest.raises(ValidationError):
            cache.invalidate_tag(bad)


def test_delete_and_invalidate_tag(cache: Cache, redis_client: redis.Redis) -> None:
    """delete drops one key; invalidate_tag drops exactly the keys written with the tag."""
    cache.set("u:1", 1, tags=["user:1"])
    cache.set("u:1:posts", [1, 2], tags=["user:1", "posts"])
    cache.set("u:2", 2, tags=["user:2"])
    cache.delete("u:2")
    assert cache.get("u:2") is None
    assert cache.invalidate_tag("user:1") == 2
    assert cache.get("u:1") is None and cache.get("u:1:posts") is None
    assert redis_client.exists(cache.keys.cache_tag("user:1")) == 0
    cache.set("u:3", 3, tags=["user:3"])
    assert cache.invalidate_tag("nobody") == 0
    assert cache.get("u:3") == 3


def test_cross_process_set_delete_and_tag_are_never_read_stale(redis_client: redis.Redis) -> None:
    """Process A holds a key locally; after process B's set / delete / invalidate_tag returns,
    A's next read is fresh."""
    a = Cache(redis=redis_client, settings=_settings())
    a.set("shared", {"v": 1}, tags=["group"])
    a.set("other", "kept", tags=["else"])
    assert a.lookup("shared").level == "local"

    _in_process_b("set", "shared", '{"v": 2}', "group")
    assert a.get("shared") == {"v": 2}
    assert a.lookup("shared").level == "local"  # the fresh value is promoted again

    assert _in_process_b("invalidate_tag", "group") == "1"
    assert a.get("shared") is None
    assert a.get("other") == "kept"

    a.set("shared", {"v": 3})
    _in_process_b("delete", "shared")
    assert a.get("shared") is None
    assert a.stats.stale == 3


def test_cached_decorator_keys_by_arguments_and_refuses_non_json(cache: Cache) -> None:
    """@cached runs the function once per arguments, honours tags, refuses non-JSON results."""
    calls: list[int] = []

    @cache.cached(60, tags=("squares",))
    def square(n: int) -> int:
        calls.append(n)
        return n * n

    assert [square(3), square(3), square(4)] == [9, 9, 16]
    assert calls == [3, 4]
    cache.invalidate_tag("squares")
    assert square(3) == 9 and calls == [3, 4, 3]

    @cache.cached(60, key=lambda user: f"profile:{user}")
    def profile(user: str) -> dict[str, str]:
        return {"user": user}

    assert profile("ann") == {"user": "ann"}
    assert cache.get("profile:ann") == {"user": "ann"}

    @cache.cached(60)
    def not_json() -> object:
        return object()

    with pytest.raises(ValidationError, match="JSON-serializable"):
        not_json()


def test_warm_fills_both_levels(redis_client: redis.Redis) -> None:
    """warm() writes every item; another process's cache finds them in Redis."""
    cache = Cache(redis=redis_client, settings=_settings())
    assert cache.warm({f"w:{i}": i for i in range(10)}, tags=["warm"]) == 10
    assert all(cache.lookup(f"w:{i}").level == "local" for i in range(10))
    other = Cache(redis=redis_client, settings=_settings())
    assert [other.get(f"w:{i}") for i in range(10)] == list(range(10))
    assert cache.invalidate_tag("warm") == 10


def test_health_warns_below_half_hit_rate(cache: Cache) -> None:
    """health() is ok with a good hit rate and warns below 0.5."""
    cache.set("hot", 1)
    for _ in range(30):
        cache.get("hot")
    assert cache.health()["status"] == "ok"
    for i in range(60):
        cache.get(f"cold:{i}")
    health = cache.health()
    assert health["status"] == "warn" and "hit rate" in health["warnings"][0]
    assert health["breaker"] == "closed"


def test_local_level_respects_the_settings_bounds(redis_client: redis.Redis) -> None:
    """The local level holds at most cache_local_max_entries; evicted keys come from Redis."""
    cache = Cache(redis=redis_client, settings=_settings(cache_local_max_entries=3))
    cache.warm({f"k:{i}": i for i in range(5)})
    assert len(cache.local) == 3
    assert cache.lookup("k:0").level == "redis"
