"""``MemscribeSaver``: a LangGraph checkpointer with memscribe's write-behind.

``put`` and ``put_writes`` are one Redis round trip each (an EVALSHA that also appends to the
thread's WAL shard); the drainers make them durable in PostgreSQL, exactly once. Reads come
from Redis and fall through to PostgreSQL for what Redis no longer holds; they see their own
writes before any drain. ``delete_thread`` hides the thread from every reader at once (a floor
in Redis) and the purge deletes its rows (docs/langgraph.md).

    from core.integrations.langgraph import MemscribeSaver

    saver = MemscribeSaver.from_settings()  # MEMSCRIBE_* settings
    graph = builder.compile(checkpointer=saver)
    graph.invoke(inputs, {"configurable": {"thread_id": "chat-42"}})

Values are serialized by LangGraph's serializer (msgpack or JSON; other types are refused),
exactly as the other savers store them. Channel values that are plain (None, str, int, float, bool)
stay inside the checkpoint; the others are blobs keyed by (channel, version), so a checkpoint
stores only the channels that changed.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    get_checkpoint_id,
)
from langgraph.checkpoint.serde.base import SerializerProtocol

from config.settings import Settings, get_settings
from core.async_client import AsyncMemoryClient
from core.checkpoints import threads
from core.checkpoints.keys import CheckpointKeys
from core.checkpoints.store import AsyncCheckpointStore, CheckpointStore
from core.client import MemoryClient
from core.errors import ValidationError
from core.integrations.langgraph.codec import (
    CheckpointCodec,
    configurable_of,
    namespace_of,
    thread_of,
)
from core.models import validate_id


class MemscribeSaver(CheckpointCodec, BaseCheckpointSaver[str]):
    """A LangGraph checkpointer over memscribe. Thread-safe; share one per process. The async
    methods run on ``redis.asyncio`` (their PostgreSQL reads in a worker thread).

    ``subject_key``: the ``configurable`` key that names the data subject a thread is about
    (e.g. ``"user_id"``); ``erase_subject`` then deletes that subject's threads, and a backup
    seals their rows under the subject's key. None: threads belong to the tenant only."""

    def __init__(
        self,
        *,
        store: CheckpointStore,
        async_store: AsyncCheckpointStore | None = None,
        tenant: str = "default",
        serde: SerializerProtocol | None = None,
        subject_key: str | None = None,
    ) -> None:
        super().__init__(serde=serde)
        self.store = store
        self.async_store = async_store
        self.tenant = tenant
        self.subject_key = subject_key
        validate_id("tenant", tenant)  # now, not at the first put

    @classmethod
    def from_settings(
        cls,
        settings: Settings | None = None,
        *,
        tenant: str = "default",
        serde: SerializerProtocol | None = None,
        subject_key: str | None = None,
    ) -> MemscribeSaver:
        """A saver for the configured stores (``MEMSCRIBE_REDIS_URL``, ``_DATABASE_URL``)."""
        client = MemoryClient.from_settings(settings or get_settings())
        return cls.from_clients(
            client,
            AsyncMemoryClient.from_client(client),
            tenant=tenant,
            serde=serde,
            subject_key=subject_key,
        )

    @classmethod
    def from_clients(
        cls,
        client: MemoryClient,
        async_client: AsyncMemoryClient | None = None,
        *,
        tenant: str = "default",
        serde: SerializerProtocol | None = None,
        subject_key: str | None = None,
    ) -> MemscribeSaver:
        """A saver on an app's own clients (their connections and durable engine)."""
        store = CheckpointStore(
            redis=client.redis,
            settings=client.settings,
            engine=lambda: client.engine,
            scripts=client.scripts,
        )
        async_store = None
        if async_client is not None:
            async_store = AsyncCheckpointStore(
                redis=async_client.redis,
                settings=async_client.settings,
                engine=lambda: async_client.engine,
                scripts=async_client.scripts,
            )
        return cls(
            store=store,
            async_store=async_store,
            tenant=tenant,
            serde=serde,
            subject_key=subject_key,
        )

    # --- shared by the sync and async paths -----------------------------------------------

    def _keys(self, thread: str) -> CheckpointKeys:
        return self.store.thread_keys(self.tenant, thread)

    def _list_args(
        self, config: RunnableConfig | None, before: RunnableConfig | None
    ) -> tuple[str, CheckpointKeys, str | None, str | None]:
        configurable = configurable_of(config)
        thread = thread_of(configurable)
        ns = None if "checkpoint_ns" not in configurable else namespace_of(configurable)
        before_id = None if before is None else get_checkpoint_id(before)
        return thread, self._keys(thread), ns, before_id

    def _async(self) -> AsyncCheckpointStore:
        if self.async_store is None:
            raise ValidationError(
                "async_store",
                "this saver was built without one: use MemscribeSaver.from_settings()",
            )
        return self.async_store

    # --- sync -----------------------------------------------------------------------------

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        configurable = configurable_of(config)
        thread = thread_of(configurable)
        found = self.store.get(
            self._keys(thread), namespace_of(configurable), get_checkpoint_id(config)
        )
        return None if found is None else self._tuple(thread, found)

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        thread, keys, ns, before_id = self._list_args(config, before)
        for found in self.store.list(
            keys, ns, before=before_id, limit=limit, metadata_filter=filter
        ):
            yield self._tuple(thread, found)

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        keys, record, blobs, stored = self._prepare_put(config, checkpoint, metadata, new_versions)
        self.store.put(keys, record, blobs)
        return stored

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        keys, ns, checkpoint_id, pending, replace, subject = self._prepare_writes(
            config, writes, task_id, task_path
        )
        if pending:
            self.store.put_writes(
                keys, ns, checkpoint_id, pending, replace=replace, subject_id=subject
            )

    def delete_thread(self, thread_id: str) -> None:
        self.store.delete_thread(self._keys(str(thread_id)))

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        source, target = self._keys(str(source_thread_id)), self._keys(str(target_thread_id))
        threads.copy_thread(self.store, source, target)

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        threads.delete_for_runs(self.store, self.tenant, [str(run) for run in run_ids])

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        for thread_id in thread_ids:
            threads.prune(self.store, self._keys(str(thread_id)), _strategy(strategy))

    # --- async ----------------------------------------------------------------------------

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        configurable = configurable_of(config)
        thread = thread_of(configurable)
        found = await self._async().get(
            self._keys(thread), namespace_of(configurable), get_checkpoint_id(config)
        )
        return None if found is None else self._tuple(thread, found)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        thread, keys, ns, before_id = self._list_args(config, before)
        async for found in self._async().list(
            keys, ns, before=before_id, limit=limit, metadata_filter=filter
        ):
            yield self._tuple(thread, found)

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        keys, record, blobs, stored = self._prepare_put(config, checkpoint, metadata, new_versions)
        await self._async().put(keys, record, blobs)
        return stored

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        keys, ns, checkpoint_id, pending, replace, subject = self._prepare_writes(
            config, writes, task_id, task_path
        )
        if pending:
            await self._async().put_writes(
                keys, ns, checkpoint_id, pending, replace=replace, subject_id=subject
            )

    async def adelete_thread(self, thread_id: str) -> None:
        await self._async().delete_thread(self._keys(str(thread_id)))

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        source, target = self._keys(str(source_thread_id)), self._keys(str(target_thread_id))
        await threads.acopy_thread(self._async(), source, target)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        await threads.adelete_for_runs(self._async(), self.tenant, [str(run) for run in run_ids])

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        for thread_id in thread_ids:
            await threads.aprune(self._async(), self._keys(str(thread_id)), _strategy(strategy))

    def close(self) -> None:
        """Close the sync Redis connections (the async ones: ``aclose``)."""
        self.store.redis.close()

    async def aclose(self) -> None:
        self.store.redis.close()
        if self.async_store is not None:
            await self.async_store.redis.aclose()

    def get_next_version(self, current: str | None, channel: None) -> str:
        """Versions that sort as strings (PostgresSaver's shape): the counter, then noise."""
        if current is None:
            number = 0
        elif isinstance(current, int):
            number = current
        else:
            number = int(str(current).split(".")[0])
        return f"{number + 1:032}.{random.random():016}"


def _strategy(strategy: str) -> str:
    if strategy not in threads.STRATEGIES:
        raise ValidationError("strategy", f"must be one of {', '.join(threads.STRATEGIES)}")
    return strategy
