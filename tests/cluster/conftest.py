"""The Redis Cluster tests' stores: one private 3-master cluster for the whole session (free
loopback ports, torn down at the end), the broker on the plain test Redis (kombu has no Redis
Cluster transport), and the test PostgreSQL database."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.cluster import RedisCluster

from config.settings import Settings
from core.client import MemoryClient
from core.store.connections import redis_client, redis_from_url
from tests.conftest import BROKER_URL
from tests.helpers.private_cluster import PrivateCluster

SettingsFactory = Callable[..., Settings]
# What a command across slots looks like: the server's CROSSSLOT reply, a script touching a key
# of another node, and redis-py's own refusals (it checks slots before sending).
CROSS_SLOT = re.compile(
    r"CROSSSLOT|non local key|must map to the same (key )?slot|different slots|CrossSlot"
)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateCluster]:
    nodes = PrivateCluster(tmp_path_factory.mktemp("redis-cluster"))
    try:
        nodes.start()
        yield nodes
    finally:
        nodes.stop()


@pytest.fixture
def make_cluster_settings(
    make_settings: SettingsFactory, pg_database: str, cluster: PrivateCluster
) -> SettingsFactory:
    """Settings for the cluster (16 shards, as in production), keyword overrides on top."""

    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "redis_url": cluster.url,
            "redis_cluster": True,
            "broker_url": BROKER_URL,
            "database_url": pg_database,
            "shards": 16,
        }
        return make_settings(**{**values, **overrides})

    return build


@pytest.fixture
def cluster_settings(make_cluster_settings: SettingsFactory) -> Settings:
    return make_cluster_settings()


@pytest.fixture
def cluster_redis(cluster: PrivateCluster, cluster_settings: Settings) -> Iterator[redis.Redis]:
    """The factory's client for the cluster, every primary flushed; the broker flushed too."""
    client = redis_client(cluster_settings)
    assert isinstance(client, RedisCluster)
    client.flushdb()  # redis-py sends FLUSHDB to every primary
    broker = redis_from_url(BROKER_URL)
    broker.flushdb()
    broker.close()
    cluster.reset_stats()
    yield client
    client.close()


@pytest.fixture
def cluster_client(
    cluster_redis: redis.Redis, cluster_settings: Settings
) -> Iterator[MemoryClient]:
    memory = MemoryClient(redis=cluster_redis, settings=cluster_settings)
    yield memory
    if memory._engine is not None:
        memory._engine.dispose()


def assert_no_cross_slot(cluster: PrivateCluster, logs: Path | None = None) -> None:
    """No node answered CROSSSLOT since the test began, and no log mentions a cross-slot
    command (worker and beat logs of the test, when given)."""
    counts = cluster.error_counts()
    assert all("CROSSSLOT" not in errors for errors in counts.values()), counts
    if logs is not None:
        for log in sorted(logs.glob("*.log")):
            found = CROSS_SLOT.search(log.read_text(errors="replace"))
            assert found is None, f"{log.name}: {found.group(0) if found else ''}"


def master_of(client: redis.Redis, key: str) -> str:
    """The primary that owns ``key`` (by its slot), as "host:port"."""
    assert isinstance(client, RedisCluster)
    return str(client.get_node_from_key(key).name)


def nodes_holding(client: redis.Redis, keys: list[str]) -> set[str]:
    """The primaries that own ``keys``."""
    return {master_of(client, key) for key in keys}


def primaries(client: redis.Redis) -> set[str]:
    assert isinstance(client, RedisCluster)
    return {node.name for node in client.get_primaries()}


def keys_per_primary(client: redis.Redis) -> dict[str, int]:
    assert isinstance(client, RedisCluster)
    return {node.name: int(client.dbsize(target_nodes=node)) for node in client.get_primaries()}
