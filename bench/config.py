"""How big a run is (full, quick, tiny) and which stores it uses (``MEMSCRIBE_BENCH_*``).

The bench owns its stores: three Redis logical databases (data, memscribe's broker, the naive
app's broker) and one PostgreSQL database. It flushes and truncates them, so they are never the
test databases (Redis 9/10, ``memscribe_test``) and never anything an app uses. With
``MEMSCRIBE_BENCH_REDIS_CLUSTER=true`` (or ``--redis-cluster``) the data store is a Redis
Cluster (``MEMSCRIBE_BENCH_REDIS_URL`` names any node, all of it is flushed) and both brokers
must be named: they stay plain servers, as in production.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

from sqlalchemy.engine import make_url

from config.settings import _with_db

TRUE = ("1", "true", "yes", "on")

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/2"
DEFAULT_DATABASE_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/memscribe_bench"


@dataclass(frozen=True)
class Stores:
    redis_url: str
    broker_url: str
    naive_broker_url: str
    database_url: str
    # The data store is a Redis Cluster; the brokers are plain servers (kombu needs them so).
    redis_cluster: bool = False

    @classmethod
    def from_env(cls, *, check: bool = True, redis_cluster: bool | None = None) -> Stores:
        """``MEMSCRIBE_BENCH_REDIS_URL`` (the brokers default to the next two databases),
        ``MEMSCRIBE_BENCH_DATABASE_URL`` and ``MEMSCRIBE_BENCH_REDIS_CLUSTER``."""
        redis_url = os.environ.get("MEMSCRIBE_BENCH_REDIS_URL", DEFAULT_REDIS_URL)
        if redis_cluster is None:
            redis_cluster = os.environ.get("MEMSCRIBE_BENCH_REDIS_CLUSTER", "").lower() in TRUE
        db = int(urlsplit(redis_url).path.lstrip("/") or 0)

        def derive(offset: int) -> str:
            # A cluster has no database but 0: nothing to derive the brokers from.
            return "" if redis_cluster else _with_db(redis_url, db + offset)

        stores = cls(
            redis_url=redis_url,
            broker_url=os.environ.get("MEMSCRIBE_BENCH_BROKER_URL", derive(1)),
            naive_broker_url=os.environ.get("MEMSCRIBE_BENCH_NAIVE_BROKER_URL", derive(2)),
            database_url=os.environ.get("MEMSCRIBE_BENCH_DATABASE_URL", DEFAULT_DATABASE_URL),
            redis_cluster=redis_cluster,
        )
        if check:
            stores.check()
        return stores

    def check(self) -> None:
        if self.redis_cluster and not (self.broker_url and self.naive_broker_url):
            raise ValueError(
                "with a Redis Cluster, set MEMSCRIBE_BENCH_BROKER_URL and "
                "MEMSCRIBE_BENCH_NAIVE_BROKER_URL to two databases of a plain Redis server "
                "(Celery has no Redis Cluster transport)"
            )
        urls = [self.redis_url, self.broker_url, self.naive_broker_url]
        if len(set(urls)) != len(urls):
            raise ValueError(f"the bench needs three distinct Redis databases, got {urls}")
        name = make_url(self.database_url).database or ""
        # The bench truncates its tables: refuse a database that is not obviously its own.
        if "bench" not in name:
            raise ValueError(
                f"MEMSCRIBE_BENCH_DATABASE_URL names database {name!r}; the bench truncates its "
                "tables, so the database name must contain 'bench'"
            )

    def env(self) -> dict[str, str]:
        return {
            "MEMSCRIBE_BENCH_REDIS_URL": self.redis_url,
            "MEMSCRIBE_BENCH_BROKER_URL": self.broker_url,
            "MEMSCRIBE_BENCH_NAIVE_BROKER_URL": self.naive_broker_url,
            "MEMSCRIBE_BENCH_DATABASE_URL": self.database_url,
            "MEMSCRIBE_BENCH_REDIS_CLUSTER": str(self.redis_cluster).lower(),
        }


@dataclass(frozen=True)
class BenchConfig:
    """Sizes of one run. Every figure is the median of ``repetitions`` (lag: its own count)."""

    mode: str
    repetitions: int
    sessions: int
    content_tokens: int
    # 1. append path latency
    latency_calls: int
    # Calls a variant makes before the next one takes its turn. 1: every call alternates, so
    # each variant sees the same scheduler state (see append_latency's docstring).
    latency_chunk: int
    aof_always: bool
    # 2. durable throughput
    throughput_messages: int
    naive_messages: int
    # 3. lag under load
    lag_rate: float
    lag_seconds: float
    lag_repetitions: int
    lag_appenders: int
    # 4. Redis memory
    memory_messages_per_session: int

    def with_overrides(self, **changes: object) -> BenchConfig:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})  # type: ignore[arg-type]


FULL = BenchConfig(
    mode="full",
    repetitions=5,
    sessions=1000,
    content_tokens=100,
    latency_calls=20_000,
    latency_chunk=1,
    aof_always=True,
    throughput_messages=100_000,
    naive_messages=3_000,
    lag_rate=4000,
    lag_seconds=60,
    lag_repetitions=3,
    lag_appenders=2,
    memory_messages_per_session=10,
)
QUICK = replace(
    FULL,
    mode="quick",
    repetitions=3,
    latency_calls=1_500,
    latency_chunk=1,
    throughput_messages=10_000,
    naive_messages=600,
    lag_seconds=4,
    memory_messages_per_session=5,
)
# For tests of the harness itself: seconds, not minutes; the figures mean little.
TINY = replace(
    FULL,
    mode="tiny",
    repetitions=2,
    sessions=50,
    latency_calls=200,
    latency_chunk=1,
    aof_always=False,
    throughput_messages=1_000,
    naive_messages=100,
    lag_rate=500,
    lag_seconds=1,
    lag_repetitions=2,
    lag_appenders=1,
    memory_messages_per_session=2,
)
PRESETS = {config.mode: config for config in (FULL, QUICK, TINY)}
