"""MEMSCRIBE_REDIS_CLUSTER: what a cluster configuration must say, and what it refuses."""

from __future__ import annotations

import pytest
from pydantic import ValidationError as SettingsError
from redis.cluster import RedisCluster

from bench.config import Stores
from config.settings import Settings
from core.store.connections import redis_client

NODE = "redis://10.0.0.5:7000/0"


def test_cluster_needs_its_own_broker() -> None:
    """The broker cannot be derived from a cluster URL (no database 1, no kombu transport)."""
    with pytest.raises(SettingsError, match="broker_url must be set when redis_cluster"):
        Settings(redis_url=NODE, redis_cluster=True, broker_url="")
    settings = Settings(redis_url=NODE, redis_cluster=True, broker_url="redis://10.0.0.9:6379/1")
    assert settings.broker_url == "redis://10.0.0.9:6379/1"


def test_cluster_url_names_database_zero() -> None:
    """A cluster has database 0 only: another number is refused, naming redis_url."""
    with pytest.raises(SettingsError, match="redis_url must name database 0"):
        Settings(redis_url="redis://10.0.0.5:7000/3", redis_cluster=True, broker_url=NODE)
    assert Settings(redis_url="redis://10.0.0.5:7000", redis_cluster=True, broker_url=NODE)


def test_environment_switches_to_a_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    """MEMSCRIBE_REDIS_CLUSTER=true sets redis_cluster; without it the factory builds a plain
    client (tests/cluster checks the RedisCluster branch against a real cluster)."""
    monkeypatch.setenv("MEMSCRIBE_REDIS_CLUSTER", "true")
    monkeypatch.setenv("MEMSCRIBE_REDIS_URL", NODE)
    monkeypatch.setenv("MEMSCRIBE_BROKER_URL", "redis://10.0.0.9:6379/1")
    assert Settings().redis_cluster is True
    plain = redis_client(Settings(redis_url="redis://127.0.0.1:1/0", redis_cluster=False))
    assert not isinstance(plain, RedisCluster)  # a plain client connects lazily: no server here
    plain.close()


def test_bench_on_a_cluster_needs_both_brokers(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bench's cluster option refuses to guess broker databases on a cluster."""
    monkeypatch.setenv("MEMSCRIBE_BENCH_REDIS_URL", NODE)
    monkeypatch.setenv("MEMSCRIBE_BENCH_DATABASE_URL", "postgresql://h/memscribe_bench")
    monkeypatch.delenv("MEMSCRIBE_BENCH_BROKER_URL", raising=False)
    monkeypatch.delenv("MEMSCRIBE_BENCH_NAIVE_BROKER_URL", raising=False)
    with pytest.raises(ValueError, match="MEMSCRIBE_BENCH_BROKER_URL"):
        Stores.from_env(redis_cluster=True)
    monkeypatch.setenv("MEMSCRIBE_BENCH_BROKER_URL", "redis://127.0.0.1:6379/3")
    monkeypatch.setenv("MEMSCRIBE_BENCH_NAIVE_BROKER_URL", "redis://127.0.0.1:6379/4")
    stores = Stores.from_env(redis_cluster=True)
    assert stores.redis_cluster and stores.env()["MEMSCRIBE_BENCH_REDIS_CLUSTER"] == "true"
