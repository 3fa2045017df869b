"""What every section gets: sizes, settings, clients for the bench stores, and small helpers."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import redis
from pydantic import SecretStr
from sqlalchemy import Connection, Engine

from bench import stores
from bench.config import BenchConfig, Stores
from bench.workload import Workload
from config.settings import Settings
from core.client import MemoryClient
from core.log.status import shard_status
from core.store.connections import redis_client, redis_from_url
from core.store.db import make_engine
from core.store.keys import Keys
from core.store.tokens import token_counter

ROOT = Path(__file__).resolve().parent.parent
# Held in every shard's lease key to keep drainers off while the bench fills the WAL.
HOLD_TOKEN = "bench-hold"


def log(message: str) -> None:
    """Progress goes to stderr; stdout carries only the Markdown report."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def settings_env(settings: Settings) -> dict[str, str]:
    """The MEMSCRIBE_* environment that rebuilds ``settings`` in a worker or beat process."""
    return {
        f"MEMSCRIBE_{name.upper()}": str(
            value.get_secret_value() if isinstance(value, SecretStr) else value
        )
        for name, value in settings.model_dump().items()
    }


@dataclass
class BenchContext:
    config: BenchConfig
    stores: Stores
    log_dir: Path
    _clients: list[redis.Redis] = field(default_factory=list)
    _run_lock: Connection | None = None

    @cached_property
    def settings(self) -> Settings:
        # Store URLs are the bench's; every other field keeps the product default, or the
        # MEMSCRIBE_* value in the environment (to benchmark, say, another batch size).
        return Settings(
            redis_url=self.stores.redis_url,
            broker_url=self.stores.broker_url,
            database_url=self.stores.database_url,
            redis_cluster=self.stores.redis_cluster,
        )

    @cached_property
    def keys(self) -> Keys:
        return Keys.of(self.settings)

    def redis_client(self, url: str) -> redis.Redis:
        """A client for one of the brokers (always a plain server)."""
        client = redis_from_url(url)
        self._clients.append(client)
        return client

    @cached_property
    def redis(self) -> redis.Redis:
        """The data store, a single server or a cluster, as memscribe itself connects."""
        client = redis_client(self.settings)
        self._clients.append(client)
        return client

    @cached_property
    def engine(self) -> Engine:
        return make_engine(self.stores.database_url)

    @cached_property
    def client(self) -> MemoryClient:
        return MemoryClient(redis=self.redis, settings=self.settings, engine=self.engine)

    @cached_property
    def workload(self) -> Workload:
        counter = token_counter(self.settings.tokenizer, self.settings.model)
        return Workload.build(
            sessions=self.config.sessions, tokens=self.config.content_tokens, counter=counter
        )

    def worker_env(self) -> dict[str, str]:
        # This checkout first, so workers run the code being measured.
        path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        return {**settings_env(self.settings), **self.stores.env(), "PYTHONPATH": path}

    # --- stores --------------------------------------------------------------------------------

    def prepare(self) -> None:
        """Claim and empty the bench's Redis databases; create and migrate its database."""
        self._run_lock = stores.lock_run(self.stores.database_url, self.stores.redis_url)
        stores.claim_redis(self.redis, self.stores.redis_url)
        for url in (self.stores.broker_url, self.stores.naive_broker_url):
            stores.claim_redis(self.redis_client(url), url)
        stores.prepare_database(self.stores.database_url)

    def reset(self) -> None:
        """Empty the data database and the tables. Only while no worker runs: a drainer caches
        its consumer groups, which a flush deletes."""
        stores.flush_redis(self.redis)
        stores.truncate(self.engine)

    def backlog(self) -> int:
        return sum(status.backlog for status in shard_status(self.redis, self.keys))

    def wait_for_backlog(self, *, timeout_s: float, poll_s: float = 0.01) -> float:
        """Poll until every WAL entry is acked (acked means committed); returns the time
        (``time.time()``) it was first seen at zero."""
        deadline = time.monotonic() + timeout_s
        while self.backlog():
            if time.monotonic() > deadline:
                raise stores.BenchError(
                    f"WAL backlog not drained after {timeout_s:.0f}s (see {self.log_dir})"
                )
            time.sleep(poll_s)
        return time.time()

    @contextmanager
    def drain_paused(self) -> Iterator[None]:
        """Hold every shard's drain lease: drainers skip a leased shard, so appends stay in
        the WAL until the block ends. Releasing all leases is one ``DEL``: a clean start."""
        leases = [self.keys.lease(shard) for shard in range(self.settings.shards)]
        with self.redis.pipeline(transaction=False) as pipe:
            for key in leases:
                # Overwrites a lease a drainer holds right now: its next renew fails and it
                # stops; its release compares tokens, so it never deletes ours.
                pipe.set(key, HOLD_TOKEN, px=600_000)
            pipe.execute()
        try:
            yield
        finally:
            self.redis.delete(*leases)

    def close(self) -> None:
        if "client" in self.__dict__:
            self.client.close()
        for client in self._clients:
            client.close()
        if "engine" in self.__dict__:
            self.engine.dispose()
        if self._run_lock is not None:
            self._run_lock.close()  # releases the advisory lock
