"""``AsyncMemoryClient``'s state methods: ``StateAPI``'s, each run in a worker thread.

A state call is one EVALSHA and, past the local copy and Redis, a durable read: the sync
method already does that well, so the async twin hands it to ``asyncio.to_thread`` rather
than keep a second implementation. ``tests/integration/test_async_client.py`` checks that
every public method of ``MemoryClient`` has a twin with the same signature.
"""

from __future__ import annotations

import asyncio
from typing import Any

from core.state.api import StateAPI
from core.state.conversation import ConversationState
from core.state.model import AgentResult, StateChange
from core.state.store import DataFn


class AsyncStateAPI:
    sync: StateAPI

    async def state(self, session_id: str, *, tenant: str = "default") -> ConversationState:
        """``MemoryClient.state`` in a worker thread. The ``ConversationState``'s own methods
        (``save``, ``reload``) are synchronous: call them through ``asyncio.to_thread`` too."""
        return await asyncio.to_thread(self.sync.state, session_id, tenant=tenant)

    async def update_state(
        self,
        session_id: str,
        fn: DataFn,
        *,
        tenant: str = "default",
        actor: str | None = None,
    ) -> int:
        """``MemoryClient.update_state`` in a worker thread (``fn`` runs there, maybe twice)."""
        return await asyncio.to_thread(
            self.sync.update_state, session_id, fn, tenant=tenant, actor=actor
        )

    async def state_history(
        self,
        session_id: str,
        *,
        tenant: str = "default",
        limit: int = 50,
        before_version: int | None = None,
    ) -> list[StateChange]:
        """``MemoryClient.state_history`` in a worker thread."""
        return await asyncio.to_thread(
            self.sync.state_history,
            session_id,
            tenant=tenant,
            limit=limit,
            before_version=before_version,
        )

    async def put_result(
        self,
        session_id: str,
        result: Any,
        *,
        tenant: str = "default",
        result_id: str | None = None,
    ) -> str:
        """``MemoryClient.put_result`` in a worker thread."""
        return await asyncio.to_thread(
            self.sync.put_result, session_id, result, tenant=tenant, result_id=result_id
        )

    async def take_unconsumed(
        self, session_id: str, *, tenant: str = "default", limit: int = 10
    ) -> list[AgentResult]:
        """``MemoryClient.take_unconsumed`` in a worker thread."""
        return await asyncio.to_thread(
            self.sync.take_unconsumed, session_id, tenant=tenant, limit=limit
        )

    async def state_stats(self) -> dict[str, Any]:
        """``MemoryClient.state_stats``: counters in this process, read without a thread."""
        return self.sync.state_stats()

    async def inspect_state(self, session_id: str, *, tenant: str = "default") -> dict[str, Any]:
        """``MemoryClient.inspect_state`` in a worker thread."""
        return await asyncio.to_thread(self.sync.inspect_state, session_id, tenant=tenant)
