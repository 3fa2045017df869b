"""``CheckpointStore`` (sync) and ``AsyncCheckpointStore`` (asyncio): write-behind checkpoints.

Writes are one EVALSHA each (a put with its blobs, a task's writes, a delete) and reach the
store through the WAL. Reads take one EVALSHA (the record, its blobs and its writes) and fall
through to the store only for what Redis does not hold: a checkpoint older than Redis's copy
of the thread, a blob from before that copy began, or a thread Redis forgot. ``list`` always
asks both (Redis cannot know what it lacks), newest first.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from functools import lru_cache
from typing import Any

import redis
import redis.asyncio as aredis
from redis.commands.core import AsyncScript
from sqlalchemy import Engine

from config.settings import Settings
from core.checkpoints import durable
from core.checkpoints.calls import (
    Limits,
    RedisRead,
    delete_call,
    index_range,
    loaded,
    merge_ids,
    merge_writes,
    parse_read,
    put_call,
    read_call,
    writes_call,
)
from core.checkpoints.keys import CheckpointKeys, checkpoint_keys, run_threads_key
from core.checkpoints.model import Blob, CheckpointRecord, Loaded, PendingWrite
from core.models import validate_id
from core.store.keys import Keys
from core.store.redis_errors import redis_errors
from core.store.scripts import AsyncScripts, Scripts


def _matches(record: CheckpointRecord, wanted: Mapping[str, Any] | None) -> bool:
    return not wanted or all(record.metadata.get(k) == v for k, v in wanted.items())


def _complete_from_store(
    engine: Engine, keys: CheckpointKeys, read: RedisRead, ns: str, checkpoint_id: str | None
) -> (
    tuple[CheckpointRecord, dict[tuple[str, str], tuple[str, str | None]], list[PendingWrite]]
    | None
):
    """The store's part of a read: the record when Redis lacked it, and missing blobs."""
    tenant, thread = keys.tenant, keys.thread_id
    record = read.record
    writes: list[PendingWrite] = []
    if record is None:
        record = durable.load_record(engine, tenant, thread, ns, checkpoint_id, read.floor)
        if record is None:
            return None
        writes = durable.load_writes(engine, tenant, thread, ns, record.checkpoint_id, read.floor)
        missing = list(record.blobs)
    else:
        missing = read.missing
    values = dict(read.values)
    values.update(durable.load_blobs(engine, tenant, thread, ns, missing, read.floor))
    return record, values, writes


class _Base:
    def __init__(self, *, settings: Settings, engine: Callable[[], Engine]) -> None:
        self.settings = settings
        self._engine = engine
        self._keys = Keys.of(settings)
        self.limits = Limits.of(settings)
        # Every put of a thread builds the same eleven key names: the busy threads' are kept
        # (only valid ids reach the cache; a bad one raises before it is stored).
        self._thread_keys = lru_cache(maxsize=4096)(self._checked_keys)

    def _run_keys(self, tenant: str, run_ids: Sequence[str]) -> list[str]:
        return [
            run_threads_key(self._keys, shard, tenant, run_id)
            for run_id in run_ids
            for shard in range(self._keys.shards)
        ]

    def thread_keys(self, tenant: str, thread_id: str) -> CheckpointKeys:
        return self._thread_keys(tenant, thread_id)

    def _checked_keys(self, tenant: str, thread_id: str) -> CheckpointKeys:
        validate_id("tenant", tenant)
        validate_id("thread_id", thread_id)
        return checkpoint_keys(self._keys, tenant, thread_id)


class CheckpointStore(_Base):
    """Thread-safe; share one per process."""

    def __init__(
        self,
        *,
        redis: redis.Redis,
        settings: Settings,
        engine: Callable[[], Engine],
        scripts: Scripts | None = None,
    ) -> None:
        super().__init__(settings=settings, engine=engine)
        self.redis = redis
        self.scripts = scripts or Scripts.register(redis)

    def put(self, keys: CheckpointKeys, record: CheckpointRecord, blobs: Sequence[Blob]) -> int:
        names, args = put_call(keys, record, blobs, self.limits)
        with redis_errors():
            return int(self.scripts.checkpoint_put(keys=names, args=args))

    def put_writes(
        self,
        keys: CheckpointKeys,
        ns: str,
        checkpoint_id: str,
        writes: Sequence[PendingWrite],
        *,
        replace: bool,
        subject_id: str | None = None,
    ) -> int:
        names, args = writes_call(
            keys,
            ns,
            checkpoint_id,
            writes,
            replace=replace,
            limits=self.limits,
            subject_id=subject_id,
        )
        with redis_errors():
            return int(self.scripts.checkpoint_writes(keys=names, args=args))

    def _read(self, keys: CheckpointKeys, ns: str, checkpoint_id: str | None) -> RedisRead:
        names, args = read_call(keys, ns, checkpoint_id)
        with redis_errors():
            return parse_read(self.scripts.checkpoint_read(keys=names, args=args), ns)

    def get(self, keys: CheckpointKeys, ns: str, checkpoint_id: str | None) -> Loaded | None:
        read = self._read(keys, ns, checkpoint_id)
        if read.record is not None and not read.missing:
            return loaded(read.record, read.values, read.writes)
        found = _complete_from_store(self._engine(), keys, read, ns, checkpoint_id)
        if found is None:
            return None
        record, values, writes = found
        if read.record is None:
            # The record came from the store: writes made since may be in Redis only.
            fresh = read if checkpoint_id else self._read(keys, ns, record.checkpoint_id)
            writes = merge_writes(writes, fresh.writes)
        else:
            writes = read.writes
        return loaded(record, values, writes)

    def ids(
        self, keys: CheckpointKeys, ns: str | None, before: str | None
    ) -> list[tuple[str, str]]:
        high, low = index_range(ns)
        with redis_errors():
            pipe = self.redis.pipeline(transaction=False)
            pipe.zrevrangebylex(keys.index, high, low)
            pipe.hget(keys.clock, "floor")
            members, floor = pipe.execute()
        stored = durable.list_ids(
            self._engine(), keys.tenant, keys.thread_id, ns, before=before, floor=int(floor or 0)
        )
        return merge_ids(stored, members, before)

    def list(
        self,
        keys: CheckpointKeys,
        ns: str | None,
        *,
        before: str | None = None,
        limit: int | None = None,
        metadata_filter: Mapping[str, Any] | None = None,
    ) -> Iterator[Loaded]:
        given = 0
        for found_ns, checkpoint_id in self.ids(keys, ns, before):
            if limit is not None and given >= limit:
                return
            found = self.get(keys, found_ns, checkpoint_id)
            if found is not None and _matches(found.record, metadata_filter):
                given += 1
                yield found

    def delete_thread(self, keys: CheckpointKeys) -> int:
        names, args = delete_call(keys)
        with redis_errors():
            return int(self.scripts.checkpoint_delete(keys=names, args=args))

    def run_threads(self, tenant: str, run_ids: Sequence[str]) -> set[str]:
        """The tenant's threads with checkpoints of any of ``run_ids``: Redis's per-shard
        index of each run (threads not yet durable) and the store's."""
        validate_id("tenant", tenant)
        with redis_errors():
            pipe = self.redis.pipeline(transaction=False)
            for key in self._run_keys(tenant, run_ids):
                pipe.smembers(key)
            found = {str(thread) for members in pipe.execute() for thread in members}
        return found | durable.threads_of_runs(self._engine(), tenant, run_ids)


class AsyncCheckpointStore(_Base):
    """The same on ``redis.asyncio``; the store's reads run in a worker thread."""

    def __init__(
        self,
        *,
        redis: aredis.Redis,
        settings: Settings,
        engine: Callable[[], Engine],
        scripts: AsyncScripts | None = None,
    ) -> None:
        super().__init__(settings=settings, engine=engine)
        self.redis = redis
        self.scripts = scripts or AsyncScripts.register(redis)

    async def _run(self, script: AsyncScript, names: list[str], args: list[Any]) -> Any:
        with redis_errors():
            return await script(keys=names, args=args)

    async def put(
        self, keys: CheckpointKeys, record: CheckpointRecord, blobs: Sequence[Blob]
    ) -> int:
        return int(
            await self._run(
                self.scripts.checkpoint_put, *put_call(keys, record, blobs, self.limits)
            )
        )

    async def put_writes(
        self,
        keys: CheckpointKeys,
        ns: str,
        checkpoint_id: str,
        writes: Sequence[PendingWrite],
        *,
        replace: bool,
        subject_id: str | None = None,
    ) -> int:
        call = writes_call(
            keys,
            ns,
            checkpoint_id,
            writes,
            replace=replace,
            limits=self.limits,
            subject_id=subject_id,
        )
        return int(await self._run(self.scripts.checkpoint_writes, *call))

    async def _read(self, keys: CheckpointKeys, ns: str, checkpoint_id: str | None) -> RedisRead:
        return parse_read(
            await self._run(self.scripts.checkpoint_read, *read_call(keys, ns, checkpoint_id)), ns
        )

    async def get(self, keys: CheckpointKeys, ns: str, checkpoint_id: str | None) -> Loaded | None:
        read = await self._read(keys, ns, checkpoint_id)
        if read.record is not None and not read.missing:
            return loaded(read.record, read.values, read.writes)
        found = await asyncio.to_thread(
            _complete_from_store, self._engine(), keys, read, ns, checkpoint_id
        )
        if found is None:
            return None
        record, values, writes = found
        if read.record is None:
            fresh = read if checkpoint_id else await self._read(keys, ns, record.checkpoint_id)
            writes = merge_writes(writes, fresh.writes)
        else:
            writes = read.writes
        return loaded(record, values, writes)

    async def ids(
        self, keys: CheckpointKeys, ns: str | None, before: str | None
    ) -> list[tuple[str, str]]:
        high, low = index_range(ns)
        with redis_errors():
            pipe = self.redis.pipeline(transaction=False)
            pipe.zrevrangebylex(keys.index, high, low)
            pipe.hget(keys.clock, "floor")
            members, floor = await pipe.execute()
        stored = await asyncio.to_thread(
            durable.list_ids,
            self._engine(),
            keys.tenant,
            keys.thread_id,
            ns,
            before=before,
            floor=int(floor or 0),
        )
        return merge_ids(stored, members, before)

    async def list(
        self,
        keys: CheckpointKeys,
        ns: str | None,
        *,
        before: str | None = None,
        limit: int | None = None,
        metadata_filter: Mapping[str, Any] | None = None,
    ) -> AsyncIterator[Loaded]:
        given = 0
        for found_ns, checkpoint_id in await self.ids(keys, ns, before):
            if limit is not None and given >= limit:
                return
            found = await self.get(keys, found_ns, checkpoint_id)
            if found is not None and _matches(found.record, metadata_filter):
                given += 1
                yield found

    async def delete_thread(self, keys: CheckpointKeys) -> int:
        return int(await self._run(self.scripts.checkpoint_delete, *delete_call(keys)))

    async def run_threads(self, tenant: str, run_ids: Sequence[str]) -> set[str]:
        validate_id("tenant", tenant)
        with redis_errors():
            pipe = self.redis.pipeline(transaction=False)
            for key in self._run_keys(tenant, run_ids):
                pipe.smembers(key)
            found = {str(thread) for members in await pipe.execute() for thread in members}
        stored = await asyncio.to_thread(durable.threads_of_runs, self._engine(), tenant, run_ids)
        return found | stored
