"""The circuit breaker on the cache's Redis, with a TCP proxy cutting Redis off like an outage:
it opens, reads answer degraded from the local level, writes fail fast, and it closes by itself
once Redis answers again."""

from __future__ import annotations

import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from config.settings import Settings
from core.cache import Cache, CircuitOpenError
from core.errors import TransientError
from tests.conftest import REDIS_URL
from tests.helpers.tcp_proxy import TcpProxy


@pytest.fixture
def proxy(redis_client: redis.Redis) -> Iterator[TcpProxy]:
    target = urlsplit(REDIS_URL)
    tcp = TcpProxy(target.hostname or "127.0.0.1", target.port or 6379)
    yield tcp
    tcp.close()


def _cache_through(proxy: TcpProxy) -> Cache:
    db = urlsplit(REDIS_URL).path.lstrip("/") or "0"
    url = f"redis://127.0.0.1:{proxy.port}/{db}"
    # What docs/cache.md recommends for the cache's client: short timeouts, no client retries
    # (the breaker decides when to try again).
    client = redis.Redis.from_url(
        url,
        decode_responses=True,
        socket_timeout=0.5,
        socket_connect_timeout=0.5,
        retry=Retry(NoBackoff(), 0),
    )
    settings = Settings(redis_url=url, breaker_failures=2, breaker_cooldown_s=1.0)
    return Cache(redis=client, settings=settings)


def _wait_for(condition: object, *, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.timeout(60)
def test_outage_opens_the_breaker_serves_local_reads_and_fails_writes_fast(
    proxy: TcpProxy,
) -> None:
    """Redis down: reads degrade to the local level, writes raise at once; Redis back: closed."""
    cache = _cache_through(proxy)
    cache.set("profile", {"name": "ann"})
    assert cache.lookup("profile").degraded is False

    proxy.cut()
    result = cache.lookup("profile")
    assert (result.value, result.level, result.degraded) == ({"name": "ann"}, "local", True)
    _wait_for(lambda: cache.lookup("profile").degraded and cache.breaker.state == "open")
    assert cache.breaker.opened_count == 1

    # Open: a write fails fast without a connection attempt reaching the (cut) proxy.
    attempts = len(proxy.refused_at)
    with pytest.raises(CircuitOpenError):
        cache.set("profile", {"name": "bob"})
    with pytest.raises(CircuitOpenError):
        cache.delete("profile")
    assert isinstance(CircuitOpenError("x"), TransientError)
    assert len(proxy.refused_at) == attempts
    # The failed write dropped the local copy: this process never reads what it failed to write.
    missing = cache.lookup("profile")
    assert missing.found is False and missing.degraded is True
    health = cache.health()
    assert health["status"] == "degraded" and cache.stats.degraded_reads >= 3

    # @cached still answers, uncached: the function runs on every call while Redis is away.
    calls: list[int] = []

    @cache.cached(60)
    def double(n: int) -> int:
        calls.append(n)
        return 2 * n

    assert [double(2), double(2)] == [4, 4] and calls == [2, 2]

    proxy.restore()
    # No timing assert: it closes within a cooldown of Redis answering, at the next read.
    _wait_for(lambda: not cache.lookup("profile").degraded and cache.breaker.state == "closed")
    cache.set("profile", {"name": "carl"})
    assert cache.get("profile") == {"name": "carl"}
    assert cache.health()["breaker"] == "closed"


@pytest.mark.timeout(60)
def test_failed_probe_reopens_and_reset_closes(proxy: TcpProxy) -> None:
    """A half-open probe that fails opens the breaker again; reset() closes it."""
    cache = _cache_through(proxy)
    cache.set("k", 1)
    proxy.cut()
    _wait_for(lambda: cache.lookup("k").degraded and cache.breaker.state == "open")
    _wait_for(lambda: cache.breaker.state == "half_open")
    assert cache.lookup("k").degraded  # this read is the probe, and it fails
    assert cache.breaker.state == "open"
    proxy.restore()
    cache.breaker.reset()
    assert cache.breaker.state == "closed"
    _wait_for(lambda: not cache.lookup("k").degraded)
