"""Backpressure: appends fail fast with a clear, retryable error before Redis fills up, and one
tenant cannot fill Redis for all. A refused append writes nothing."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from config.settings import Settings
from core.client import MemoryClient, redis_from_url
from core.errors import BackpressureError, TransientError
from core.log.drainer import Drainer
from tests.helpers.private_redis import PrivateRedis
from tests.helpers.redis_state import redis_snapshot


def test_a_full_shard_refuses_appends_until_it_drains(
    redis_client: redis.Redis, make_settings: Callable[..., Settings], database_url: str
) -> None:
    settings = make_settings(database_url=database_url, shards=1, max_wal_backlog=5)
    client = MemoryClient(redis=redis_client, settings=settings)
    for i in range(5):
        client.append("s", "user", f"turn {i}")
    before = redis_snapshot(redis_client)
    with pytest.raises(BackpressureError) as refused:
        client.append("s", "user", "one too many")
    assert refused.value.reason == "backlog"
    assert isinstance(refused.value, TransientError)  # callers retry it like any transient
    assert "limit 5" in str(refused.value)
    assert redis_snapshot(redis_client) == before  # nothing written
    drainer = Drainer(redis=redis_client, engine=client.engine, settings=settings)
    assert drainer.flush(timeout_s=30) == 0
    assert client.append("s", "user", "after the drain").seq == 6


def test_one_tenant_over_its_quota_does_not_stop_the_others(
    redis_client: redis.Redis, make_settings: Callable[..., Settings], database_url: str
) -> None:
    settings = make_settings(database_url=database_url, shards=1, tenant_backlog_budget_bytes=2000)
    client = MemoryClient(redis=redis_client, settings=settings)
    heavy = "x" * 300
    with pytest.raises(BackpressureError) as refused:
        for i in range(20):
            client.append("s", "user", f"{heavy} {i}", tenant="heavy")
    assert refused.value.reason == "quota" and "tenant heavy" in str(refused.value)
    assert client.append("s", "user", "still served", tenant="light").seq == 1
    # Draining gives the bytes back: the heavy tenant is served again.
    drainer = Drainer(redis=redis_client, engine=client.engine, settings=settings)
    assert drainer.flush(timeout_s=30) == 0
    assert not redis_client.hget(client.keys.tenant_bytes(0), "heavy")
    assert client.append("s", "user", "served again", tenant="heavy").seq > 1


def test_the_reserve_is_kept_for_tenants_within_their_budget(
    redis_client: redis.Redis, make_settings: Callable[..., Settings], database_url: str
) -> None:
    """Past (1 - reserve) of the shard's backlog limit, a tenant near its budget is refused
    while a light tenant still appends into the reserve."""
    settings = make_settings(
        database_url=database_url,
        shards=1,
        max_wal_backlog=10,
        tenant_backlog_budget_bytes=100_000,
        tenant_backlog_reserve=0.5,
    )
    client = MemoryClient(redis=redis_client, settings=settings)
    big = "y" * 12_000  # 5 of these are past half of the heavy tenant's budget
    for i in range(5):
        client.append("s", "user", f"{big} {i}", tenant="heavy")
    with pytest.raises(BackpressureError) as refused:
        client.append("s", "user", "more", tenant="heavy")
    assert refused.value.reason == "quota"
    for i in range(5):  # the light tenant fills the reserve, up to the hard limit
        client.append("t", "user", f"light {i}", tenant="light")
    with pytest.raises(BackpressureError) as full:
        client.append("t", "user", "over the limit", tenant="light")
    assert full.value.reason == "backlog"


def test_memory_pressure_and_oom_are_clear_retryable_errors(
    tmp_path: Path, make_settings: Callable[..., Settings], database_url: str
) -> None:
    """A drainer flags a Redis past its memory threshold (appends refused fast); a Redis that is
    full anyway (noeviction OOM) surfaces as BackpressureError, never a raw ResponseError."""
    server = PrivateRedis(tmp_path / "redis", appendonly=False)
    server.start()
    try:
        settings = make_settings(
            redis_url=server.url(), database_url=database_url, redis_memory_high_ratio=0.5
        )
        client = MemoryClient(redis=redis_from_url(server.url()), settings=settings)
        client.append("s", "user", "before")
        used = int(client.redis.info("memory")["used_memory"])
        client.redis.config_set("maxmemory", used + 300_000)
        drainer = Drainer(redis=client.redis, engine=client.engine, settings=settings)
        assert drainer.memory.check()  # used > 0.5 of maxmemory
        with pytest.raises(BackpressureError) as flagged:
            client.append("s", "user", "refused")
        assert flagged.value.reason == "memory"
        # Without the flag (no drainer running), Redis itself refuses: still a clear error.
        for shard in range(settings.shards):
            client.redis.delete(client.keys.pressure(shard))
        with pytest.raises(BackpressureError) as oom:
            for i in range(1000):
                client.append(f"s{i % 7}", "user", "z" * 2000)
        assert oom.value.reason == "memory" and "out of memory" in str(oom.value)
        client.redis.config_set("maxmemory", 0)
        drainer.memory._next = 0  # look again now
        assert not drainer.memory.check()
        assert client.append("s", "user", "accepted again").seq > 1
        client.close()
    finally:
        server.stop()
