"""langgraph-checkpoint-conformance against MemscribeSaver: real Redis and PostgreSQL, the
async methods (on redis.asyncio) and the sync ones (run through the suite by a thin
async-over-sync subclass), with no worker (reads of its own writes) and with a real persist
worker and beat draining underneath (reads that fall through to PostgreSQL)."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import BASE_CAPABILITIES
from langgraph.checkpoint.conformance.report import ProgressCallbacks

from config.settings import Settings
from core.checkpoints.store import AsyncCheckpointStore, CheckpointStore
from core.client import MemoryClient
from core.integrations.langgraph import MemscribeSaver
from core.store.connections import async_redis_client
from core.store.db import make_engine
from tests.chaos.load import wait_until_durable
from worker import processes

Spawn = Callable[..., subprocess.Popen[bytes]]


class SyncPathSaver(MemscribeSaver):
    """Sends every async call of the suite through the sync method (in a thread)."""

    async def aput(self, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(self.put, *args, **kwargs)

    async def aput_writes(self, *args: Any, **kwargs: Any) -> None:
        await asyncio.to_thread(self.put_writes, *args, **kwargs)

    async def aget_tuple(self, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(self.get_tuple, *args, **kwargs)

    async def alist(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        for found in await asyncio.to_thread(lambda: list(self.list(*args, **kwargs))):
            yield found

    async def adelete_thread(self, *args: Any, **kwargs: Any) -> None:
        await asyncio.to_thread(self.delete_thread, *args, **kwargs)

    async def acopy_thread(self, *args: Any, **kwargs: Any) -> None:
        await asyncio.to_thread(self.copy_thread, *args, **kwargs)

    async def aprune(self, *args: Any, **kwargs: Any) -> None:
        await asyncio.to_thread(self.prune, *args, **kwargs)

    async def adelete_for_runs(self, *args: Any, **kwargs: Any) -> None:
        await asyncio.to_thread(self.delete_for_runs, *args, **kwargs)


def _savers(settings: Settings, cls: type[MemscribeSaver]) -> Callable[[], Any]:
    engine = make_engine(settings.database_url)

    async def factory() -> AsyncIterator[MemscribeSaver]:
        # A tenant per capability suite: the suite reuses thread ids such as "thread-0".
        tenant = f"conf{uuid.uuid4().hex[:12]}"
        sync_redis = redis.Redis.from_url(settings.redis_url, decode_responses=True)
        store = CheckpointStore(redis=sync_redis, settings=settings, engine=lambda: engine)
        aio = async_redis_client(settings)
        async_store = AsyncCheckpointStore(redis=aio, settings=settings, engine=lambda: engine)
        yield cls(store=store, async_store=async_store, tenant=tenant)
        sync_redis.close()
        await aio.aclose()

    return factory


# Every extended capability: memscribe implements them all.
EXTENDED = {"copy_thread", "prune", "delete_for_runs"}


def _run(settings: Settings, cls: type[MemscribeSaver], name: str) -> dict[str, list[int]]:
    """Runs the suite; returns capability -> [passed, failed] test counts."""
    counts: dict[str, list[int]] = {}

    def on_result(capability: str, test: str, passed: bool, error: str | None) -> None:
        counts.setdefault(capability, [0, 0])[0 if passed else 1] += 1
        if error:
            print(f"  {capability}: {test}: {error}")

    registered = checkpointer_test(name=name)(_savers(settings, cls))
    progress = ProgressCallbacks(on_test_result=on_result)
    report = asyncio.run(validate(registered, progress=progress))
    report.print_report()
    assert report.passed_all_base()
    assert {cap.value for cap in BASE_CAPABILITIES} | EXTENDED == set(counts)
    assert all(failed == 0 and passed > 0 for passed, failed in counts.values()), counts
    total = sum(passed for passed, _ in counts.values())
    print(f"{name}: {total} conformance tests passed, 0 failed: {counts}")
    return counts


@pytest.mark.parametrize("cls", [MemscribeSaver, SyncPathSaver], ids=["async", "sync"])
def test_conformance_without_a_worker(
    settings: Settings, redis_client: redis.Redis, cls: type[MemscribeSaver]
) -> None:
    """Reads of its own writes: nothing is drained while the suite runs."""
    _run(settings, cls, f"memscribe-{cls.__name__}")
    assert redis_client.dbsize() > 0


@pytest.fixture
def fast_settings(make_settings: Callable[..., Settings], pg_database: str) -> Settings:
    return make_settings(flush_interval_s=0.2, flush_budget_s=0.5, drain_lease_ms=1000)


TABLES = ("checkpoints", "checkpoint_blobs", "checkpoint_writes", "checkpoint_threads")


def _stored(url: str) -> dict[str, int]:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return {
                table: int(
                    connection.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()
                )
                for table in TABLES
            }
    finally:
        engine.dispose()


def test_conformance_through_a_worker(
    fast_settings: Settings, redis_client: redis.Redis, spawn: Spawn, pg_database: str
) -> None:
    """The same suites while a real persist worker and beat drain underneath, then the
    drained result: every table of checkpoints has rows, and the deleted threads' floors
    reached PostgreSQL too."""
    spawn(processes.beat_command(loglevel="WARNING"), settings=fast_settings, name="beat")
    spawn(
        processes.worker_command(["persist"], concurrency=1, loglevel="WARNING"),
        settings=fast_settings,
        name="worker",
    )
    for cls in (MemscribeSaver, SyncPathSaver):
        _run(fast_settings, cls, f"memscribe-{cls.__name__}-worker")
    client = MemoryClient(redis=redis_client, settings=fast_settings)
    assert wait_until_durable(client, timeout_s=90) == 0
    stored = _stored(pg_database)
    assert all(stored[table] > 0 for table in TABLES), stored
    print(f"drained by the worker: {stored}")
