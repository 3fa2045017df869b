"""Conversation state through the circuit breaker, with a TCP proxy cutting Redis off like an
outage: reads are served degraded (the local copy, else the durable store), writes fail fast,
and the breaker closes by itself once Redis answers again."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from core.cache import CircuitOpenError
from core.client import MemoryClient
from core.errors import TransientError
from core.log.drainer import Drainer
from tests.conftest import REDIS_URL, SettingsFactory
from tests.helpers.tcp_proxy import TcpProxy


@pytest.fixture
def proxy(redis_client: redis.Redis) -> Iterator[TcpProxy]:
    target = urlsplit(REDIS_URL)
    tcp = TcpProxy(target.hostname or "127.0.0.1", target.port or 6379)
    yield tcp
    tcp.close()


@pytest.fixture
def through_proxy(
    proxy: TcpProxy, make_settings: SettingsFactory, pg_database: str
) -> Iterator[Callable[[], MemoryClient]]:
    """Build MemoryClients whose Redis is reached through the proxy."""
    made: list[MemoryClient] = []

    def build() -> MemoryClient:
        db = urlsplit(REDIS_URL).path.lstrip("/") or "0"
        url = f"redis://127.0.0.1:{proxy.port}/{db}"
        # docs/cache.md's advice for the breaker's client: short timeouts, no client retries.
        client = redis.Redis.from_url(
            url,
            decode_responses=True,
            socket_timeout=0.5,
            socket_connect_timeout=0.5,
            retry=Retry(NoBackoff(), 0),
        )
        settings = make_settings(
            redis_url=url, database_url=pg_database, breaker_failures=2, breaker_cooldown_s=1.0
        )
        memory = MemoryClient(redis=client, settings=settings)
        made.append(memory)
        return memory

    yield build
    for memory in made:
        memory.close()


def _wait_for(condition: Callable[[], bool], *, timeout_s: float = 20.0) -> float:
    """Poll until ``condition()``; returns the seconds it took."""
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < timeout_s, "timed out"
        time.sleep(0.05)
    return time.monotonic() - start


def _elapsed_s(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


@pytest.mark.timeout(60)
def test_outage_serves_the_local_copy_fast_fails_writes_fast_and_recovers(
    through_proxy: Callable[[], MemoryClient], proxy: TcpProxy
) -> None:
    client = through_proxy()
    state = client.state("s")
    state.data = {"n": 1}
    assert state.save() == 1
    warm = client.state("s")  # the local copy exists now
    assert (warm.level, warm.degraded, warm.data) == ("local", False, {"n": 1})

    proxy.cut()
    _wait_for(lambda: client.state("s").degraded and client.breaker.state == "open")
    assert client.breaker.state == "open" and client.breaker.opened_count == 1
    assert client.state_stats()["breaker"] == "open"

    # Acceptance: a degraded read from the local copy takes < 5 ms (median of 20).
    reads: list[float] = []
    for _ in range(20):
        start = time.perf_counter()
        read = client.state("s")
        reads.append(time.perf_counter() - start)
        assert (read.degraded, read.level, read.version, read.data) == (True, "local", 1, {"n": 1})
    assert statistics.median(reads) < 0.005, f"median degraded read {statistics.median(reads)}s"

    # Writes fail fast, without a connection attempt reaching the (cut) proxy.
    attempts = len(proxy.refused_at)
    read.data["n"] = 2
    with pytest.raises(CircuitOpenError) as caught:
        start = time.perf_counter()
        read.save()
    assert time.perf_counter() - start < 0.05
    assert isinstance(caught.value, TransientError)

    def update() -> None:
        with pytest.raises(TransientError):
            client.update_state("s", lambda d: {**d, "n": 3})

    assert _elapsed_s(update) < 0.05
    assert len(proxy.refused_at) == attempts
    assert client.state_stats()["degraded_reads"] >= 20

    proxy.restore()
    # It closes within a cooldown (1 s) of Redis answering, at the next read: < 5 s.
    took = _wait_for(
        lambda: not client.state("s").degraded and client.breaker.state == "closed",
        timeout_s=5.0,
    )
    assert took < 5.0
    back = client.state("s")
    assert (back.version, back.data) == (1, {"n": 1})  # the failed writes wrote nothing
    back.data["n"] = 4
    assert back.save() == 2
    assert client.update_state("s", lambda d: {**d, "n": d["n"] + 1}) == 3
    assert client.state("s").data == {"n": 5}


@pytest.mark.timeout(60)
def test_outage_without_a_local_copy_reads_the_durable_store(
    through_proxy: Callable[[], MemoryClient],
    proxy: TcpProxy,
    redis_client: redis.Redis,
) -> None:
    writer = through_proxy()
    writer.update_state("s", lambda d: {"plan": "gold"}, actor="w")
    state = writer.state("s")
    state.context = {"lang": "fr"}
    assert state.save() == 2
    drainer = Drainer(redis=redis_client, engine=writer.engine, settings=writer.settings)
    assert drainer.flush(timeout_s=30) == 0

    reader = through_proxy()  # never read "s": no local copy
    proxy.cut()
    found = reader.state("s")
    assert (found.degraded, found.level, found.version) == (True, "durable", 2)
    assert found.data == {"plan": "gold"} and found.context == {"lang": "fr"}
    _wait_for(lambda: reader.state("s").degraded and reader.breaker.state == "open")
    again = reader.state("s")
    assert (again.degraded, again.level, again.version) == (True, "durable", 2)
    with pytest.raises(TransientError):
        reader.update_state("s", lambda d: {**d, "plan": "silver"})
    again.data["plan"] = "silver"
    with pytest.raises(CircuitOpenError):
        again.save()
    assert reader.state_stats()["durable_reads"] >= 2

    proxy.restore()
    _wait_for(
        lambda: not reader.state("s").degraded and reader.breaker.state == "closed",
        timeout_s=5.0,
    )
    assert reader.update_state("s", lambda d: {**d, "plan": "silver"}) == 3
    assert writer.state("s").data == {"plan": "silver"}
