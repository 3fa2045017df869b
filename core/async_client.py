"""The public API on asyncio: ``AsyncMemoryClient``, for LangGraph, asyncio chat servers and
the adapters' async paths (docs/sessions.md, "Async client").

The request path is native ``redis.asyncio``: ``append``, ``append_many``, ``context`` and
``is_available`` send the same Lua scripts as ``MemoryClient`` (one EVALSHA for a warm
session), built and parsed by the sync client's own code (``core/log/async_appender.py``);
only a cold session's durable read runs in a worker thread. Every other method of
``MemoryClient`` is here as a coroutine that runs the sync method in ``asyncio.to_thread``:
they read or write the durable store through SQLAlchemy, which is synchronous, and are not on
the request path.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Self

import redis.asyncio
from sqlalchemy import Engine

from config.settings import Settings, get_settings
from core.client import Enqueue, MemoryClient
from core.erasure.async_api import AsyncErasureAPI
from core.errors import ConfigurationError
from core.log import context as session_context
from core.log.async_appender import AsyncAppender
from core.memories.context import memory_count
from core.memories.unconsolidate import Unconsolidated
from core.models import (
    AppendResult,
    Context,
    HistoryPage,
    Memory,
    MemoryStats,
    Priority,
    SessionMemorySettings,
)
from core.state.async_api import AsyncStateAPI
from core.state.model import StateSchema
from core.store.connections import async_redis_client, redis_client
from core.store.scripts import AsyncScripts
from core.store.tokens import TokenCounter
from core.summaries.store import SummaryRecord

_log = logging.getLogger(__name__)


class AsyncMemoryClient(AsyncStateAPI, AsyncErasureAPI):
    """``MemoryClient``'s API as coroutines. Share one per event loop (its ``redis.asyncio``
    connections belong to the loop that opened them).

    ``sync``: a ``MemoryClient`` to share (its durable engine, token counter, state cache and
    breaker); without one, a sync client is built from ``settings`` with ``engine``,
    ``tokens``, ``enqueue`` and ``state_schema``. It serves the methods run in threads.
    """

    sync: MemoryClient

    def __init__(
        self,
        *,
        redis: redis.asyncio.Redis,
        settings: Settings,
        engine: Engine | None = None,
        tokens: TokenCounter | None = None,
        enqueue: Enqueue | None = None,
        state_schema: StateSchema | None = None,
        sync: MemoryClient | None = None,
    ) -> None:
        if sync is None:
            sync = MemoryClient(
                redis=redis_client(settings),
                settings=settings,
                engine=engine,
                tokens=tokens,
                enqueue=enqueue,
                state_schema=state_schema,
            )
            self._owns_sync = True
        else:
            options = {"engine": engine, "tokens": tokens, "enqueue": enqueue}
            given = [name for name, value in options.items() if value is not None]
            if state_schema is not None:
                given.append("state_schema")
            if given:
                # Silently ignoring them would leave the shared client without them.
                raise ConfigurationError(
                    f"{', '.join(given)}: give these to the shared MemoryClient, not here"
                )
            if sync.settings != settings:
                raise ConfigurationError("the shared MemoryClient has other settings")
            self._owns_sync = False
        self.sync = sync
        self.redis = redis
        self.settings = settings
        self.keys = sync.keys
        self.tokens = sync.tokens
        # The sync client loaded every script into the server when it was built, so these
        # EVALSHAs find them; after a Redis restart each reloads itself once.
        self.scripts = AsyncScripts.register(redis)
        self._appender = AsyncAppender(sync=sync._appender, scripts=self.scripts)

    @classmethod
    def from_settings(
        cls,
        settings: Settings | None = None,
        *,
        enqueue: Enqueue | None = None,
        state_schema: StateSchema | None = None,
    ) -> AsyncMemoryClient:
        """A client for the configured stores (``MEMSCRIBE_*``), like
        ``MemoryClient.from_settings``. Connections open on first use, in the running loop."""
        settings = settings or get_settings()
        return cls(
            redis=async_redis_client(settings),
            settings=settings,
            enqueue=enqueue,
            state_schema=state_schema,
        )

    @classmethod
    def from_client(cls, sync: MemoryClient) -> AsyncMemoryClient:
        """An async client for ``sync``'s stores that shares it (closing this one leaves
        ``sync`` open): the usual way to have both in one process."""
        return cls(redis=async_redis_client(sync.settings), settings=sync.settings, sync=sync)

    @property
    def engine(self) -> Engine:
        return self.sync.engine

    # --- the request path, native on redis.asyncio ----------------------------------------

    async def append(
        self,
        session_id: str,
        role: str,
        content: str,
        *,
        tenant: str = "default",
        subject_id: str | None = None,
        message_id: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> AppendResult:
        """``MemoryClient.append``, awaited: one EVALSHA for a warm session; idempotent on
        ``message_id``; ``ValidationError`` (nothing written) for bad input."""
        keys = self.sync._session_keys(tenant, session_id, subject_id)
        message = self._appender.sync.prepare(
            keys,
            role=role,
            content=content,
            message_id=message_id,
            metadata=metadata,
            subject_id=subject_id,
            created_us=time.time_ns() // 1000,
        )
        [result] = await self._appender.send(keys, [message], subject_id=subject_id)
        return result

    async def append_many(
        self,
        session_id: str,
        messages: Sequence[Mapping[str, Any]],
        *,
        tenant: str = "default",
        subject_id: str | None = None,
    ) -> list[AppendResult]:
        """``MemoryClient.append_many``, awaited: 1..1000 messages of one session in one
        EVALSHA, all or nothing."""
        keys = self.sync._session_keys(tenant, session_id, subject_id)
        prepared = self._appender.sync.prepare_many(
            keys, messages, subject_id=subject_id, created_us=time.time_ns() // 1000
        )
        return await self._appender.send(keys, prepared, subject_id=subject_id)

    async def context(
        self, session_id: str, *, tenant: str = "default", memories: int = 0
    ) -> Context:
        """``MemoryClient.context``, awaited: one EVALSHA on a hit; a forgotten session is read
        from the store (in a thread) and re-warmed. ``memories=k`` recalls the subject's
        memories in a thread."""
        k = memory_count(memories)
        keys = self.sync._session_keys(tenant, session_id, None)
        found, subject = await session_context.read_async(self.scripts, self._appender, keys)
        if not k or subject is None:
            return found
        return await asyncio.to_thread(self.sync._with_memories, found, subject, tenant=tenant, k=k)

    async def is_available(self) -> bool:
        """True when Redis answers a PING within 0.5 s; never raises (for health checks). A
        PING still unanswered then is cancelled (redis-py drops its connection)."""
        try:
            return bool(await asyncio.wait_for(self.redis.ping(), timeout=0.5))
        except Exception as exc:  # any failure means "not available"
            _log.info("Redis did not answer PING: %s: %s", type(exc).__name__, exc)
            return False

    # --- everything else: the sync client's method in a worker thread ---------------------

    async def remember(
        self,
        subject_id: str,
        content: str,
        *,
        tenant: str = "default",
        priority: str | Priority = "MEDIUM",
        tags: Iterable[str] = (),
        ttl_s: int | None = None,
        source: Mapping[str, Any] | str | None = None,
        memory_id: str | None = None,
        pinned: bool = False,
    ) -> str:
        """``MemoryClient.remember`` in a worker thread."""
        return await asyncio.to_thread(
            self.sync.remember,
            subject_id,
            content,
            tenant=tenant,
            priority=priority,
            tags=tags,
            ttl_s=ttl_s,
            source=source,
            memory_id=memory_id,
            pinned=pinned,
        )

    async def recall(
        self,
        subject_id: str,
        *,
        tenant: str = "default",
        query: str | None = None,
        tags: Iterable[str] | None = None,
        min_priority: str | Priority | None = None,
        k: int = 10,
    ) -> list[Memory]:
        """``MemoryClient.recall`` in a worker thread."""
        return await asyncio.to_thread(
            self.sync.recall,
            subject_id,
            tenant=tenant,
            query=query,
            tags=tags,
            min_priority=min_priority,
            k=k,
        )

    async def forget(self, memory_id: str, *, tenant: str | None = None) -> bool:
        """``MemoryClient.forget`` in a worker thread."""
        return await asyncio.to_thread(self.sync.forget, memory_id, tenant=tenant)

    async def pin(self, memory_id: str, *, pinned: bool = True, tenant: str | None = None) -> bool:
        """``MemoryClient.pin`` in a worker thread."""
        return await asyncio.to_thread(self.sync.pin, memory_id, pinned=pinned, tenant=tenant)

    async def set_priority(
        self, memory_id: str, priority: str | Priority, *, tenant: str | None = None
    ) -> bool:
        """``MemoryClient.set_priority`` in a worker thread."""
        return await asyncio.to_thread(self.sync.set_priority, memory_id, priority, tenant=tenant)

    async def unconsolidate(self, memory_id: str, *, tenant: str | None = None) -> Unconsolidated:
        """``MemoryClient.unconsolidate`` in a worker thread."""
        return await asyncio.to_thread(self.sync.unconsolidate, memory_id, tenant=tenant)

    async def configure_session(
        self,
        session_id: str,
        *,
        tenant: str = "default",
        summary_trigger_tokens: int | None = None,
        buffer_max_tokens: int | None = None,
        buffer_max_messages: int | None = None,
        keep_recent_tokens: int | None = None,
        reset: bool = False,
    ) -> SessionMemorySettings:
        """``MemoryClient.configure_session`` in a worker thread."""
        return await asyncio.to_thread(
            self.sync.configure_session,
            session_id,
            tenant=tenant,
            summary_trigger_tokens=summary_trigger_tokens,
            buffer_max_tokens=buffer_max_tokens,
            buffer_max_messages=buffer_max_messages,
            keep_recent_tokens=keep_recent_tokens,
            reset=reset,
        )

    async def request_summary(self, session_id: str, *, tenant: str = "default") -> bool:
        """``MemoryClient.request_summary`` in a worker thread."""
        return await asyncio.to_thread(self.sync.request_summary, session_id, tenant=tenant)

    async def memory_stats(self, session_id: str, *, tenant: str = "default") -> MemoryStats:
        """``MemoryClient.memory_stats`` in a worker thread."""
        return await asyncio.to_thread(self.sync.memory_stats, session_id, tenant=tenant)

    async def history(
        self,
        session_id: str,
        *,
        tenant: str = "default",
        before_seq: int | None = None,
        limit: int = 50,
    ) -> HistoryPage:
        """``MemoryClient.history`` in a worker thread."""
        return await asyncio.to_thread(
            self.sync.history, session_id, tenant=tenant, before_seq=before_seq, limit=limit
        )

    async def get_summary_history(
        self, session_id: str, *, tenant: str = "default", limit: int = 10
    ) -> list[SummaryRecord]:
        """``MemoryClient.get_summary_history`` in a worker thread."""
        return await asyncio.to_thread(
            self.sync.get_summary_history, session_id, tenant=tenant, limit=limit
        )

    async def set_daily_token_budget(self, tenant: str, daily_tokens: int | None) -> None:
        """``MemoryClient.set_daily_token_budget`` in a worker thread."""
        await asyncio.to_thread(self.sync.set_daily_token_budget, tenant, daily_tokens)

    # --- closing --------------------------------------------------------------------------

    async def close(self) -> None:
        """Close the ``redis.asyncio`` connections, and the sync client unless it was shared
        (its owner closes it)."""
        await self.redis.aclose()
        if self._owns_sync:
            await asyncio.to_thread(self.sync.close)

    async def aclose(self) -> None:
        """``close``, by the name asyncio libraries use."""
        await self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
