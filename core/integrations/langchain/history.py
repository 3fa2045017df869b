"""``MemscribeChatMessageHistory``: LangChain's chat message history on memscribe
(docs/langchain-history.md).

Reading is ``context()``: one Redis call for a warm session, the summary first as a
``SystemMessage``. Adding a batch is one ``append_many``: one Redis call, all or nothing,
idempotent on each message's id, durable once the drainers have run. The async methods
(``aget_messages``, ``aadd_messages``, ``aclear``) go through ``AsyncMemoryClient``, natively
on ``redis.asyncio`` for reads and adds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from langchain_core.chat_history import BaseChatMessageHistory
from langchain_core.messages import BaseMessage

from config.settings import Settings
from core.async_client import AsyncMemoryClient
from core.client import MemoryClient
from core.integrations.langchain.messages import (
    as_langchain,
    is_summary,
    named_as_given,
    to_append,
)
from core.models import Context, new_message_id, validate_id


class MemscribeChatMessageHistory(BaseChatMessageHistory):
    """The messages of one memscribe session as a LangChain chat history.

    ``messages`` is what a prompt needs: the session's rolling summary (when there is one) as
    a leading ``SystemMessage``, then the buffered messages after it, each with its
    ``message_id`` as ``id``. ``summary`` is that summary's text alone. ``add_messages`` sends
    one ``append_many`` for the whole batch; a message without an ``id`` is given one (a
    UUIDv7, set on the object before sending), so adding the same objects again stores
    nothing new. ``clear`` removes the session's history everywhere (``clear_session``).

    ``async_client``: an ``AsyncMemoryClient`` for the async methods (share one per event
    loop, with ``client`` as its ``sync``). Without one they run the sync client's calls in
    a worker thread.
    """

    def __init__(
        self,
        session_id: str,
        *,
        client: MemoryClient,
        async_client: AsyncMemoryClient | None = None,
        tenant: str = "default",
        subject_id: str | None = None,
    ) -> None:
        super().__init__()
        # Checked now, so a chain with a bad session id fails before its model call.
        self.session_id = validate_id("session_id", session_id)
        self.tenant = validate_id("tenant", tenant)
        self.subject_id = None if subject_id is None else validate_id("subject_id", subject_id)
        self.client = client
        self.async_client = async_client

    @classmethod
    def from_settings(
        cls,
        session_id: str,
        settings: Settings | None = None,
        *,
        tenant: str = "default",
        subject_id: str | None = None,
    ) -> MemscribeChatMessageHistory:
        """A history on new clients for the configured stores (``MEMSCRIBE_*``), a sync one
        and an async one sharing it. For a server, build the clients once and pass them in:
        each call of this opens connection pools of its own."""
        client = MemoryClient.from_settings(settings)
        return cls(
            session_id,
            client=client,
            async_client=AsyncMemoryClient.from_client(client),
            tenant=tenant,
            subject_id=subject_id,
        )

    # --- reading ------------------------------------------------------------------------------

    @property
    def messages(self) -> list[BaseMessage]:  # type: ignore[override]
        """The summary (a ``SystemMessage``, when there is one), then the recent messages."""
        return self.get_messages()

    def get_messages(self) -> list[BaseMessage]:
        """``messages``, as a method."""
        return as_langchain(self._context())

    async def aget_messages(self) -> list[BaseMessage]:
        """``messages``, awaited: one EVALSHA on ``redis.asyncio`` for a warm session."""
        return as_langchain(await self._acontext())

    @property
    def summary(self) -> str | None:
        """The session's rolling summary (what ``messages`` starts with), None before one."""
        return self._context().summary

    async def aget_summary(self) -> str | None:
        """``summary``, awaited."""
        return (await self._acontext()).summary

    def _context(self) -> Context:
        return self.client.context(self.session_id, tenant=self.tenant)

    async def _acontext(self) -> Context:
        if self.async_client is None:
            return await asyncio.to_thread(self._context)
        return await self.async_client.context(self.session_id, tenant=self.tenant)

    # --- writing ------------------------------------------------------------------------------

    def add_message(self, message: BaseMessage) -> None:
        """One message: ``add_messages([message])``."""
        self.add_messages([message])

    def add_messages(self, messages: Sequence[BaseMessage]) -> None:
        """Append the batch in one Redis round trip, all or nothing (1..1000 messages).

        Raises ``ValidationError`` naming ``messages[i].<field>`` and the limit (nothing is
        written) for a message memscribe cannot store."""
        batch, given = self._batch(messages)
        if batch:
            with named_as_given(given):
                self.client.append_many(
                    self.session_id, batch, tenant=self.tenant, subject_id=self.subject_id
                )

    async def aadd_messages(self, messages: Sequence[BaseMessage]) -> None:
        """``add_messages``, awaited: one EVALSHA on ``redis.asyncio`` for a warm session."""
        if self.async_client is None:
            await asyncio.to_thread(self.add_messages, messages)
            return
        batch, given = self._batch(messages)
        if batch:
            with named_as_given(given):
                await self.async_client.append_many(
                    self.session_id, batch, tenant=self.tenant, subject_id=self.subject_id
                )

    def _batch(self, messages: Sequence[BaseMessage]) -> tuple[list[dict[str, Any]], list[int]]:
        """``append_many``'s mappings, and each one's index in ``messages``."""
        batch, given = [], []
        for index, message in enumerate(messages):
            if is_summary(message):
                continue  # our own summary read back: the summary is kept, not a message
            if message.id is None:
                # On the caller's object: a retry of the same objects is then a duplicate
                # (the same message_id), never a second copy.
                message.id = new_message_id()
            batch.append(to_append(message, field=f"messages[{index}]"))
            given.append(index)
        return batch, given

    def clear(self) -> None:
        """Remove the session's messages, summaries and state everywhere (Redis, the WAL, the
        durable store); the session id stays usable and its seq continues."""
        self.client.clear_session(self.session_id, tenant=self.tenant)

    async def aclear(self) -> None:
        """``clear``, awaited (the durable deletes run in a worker thread)."""
        if self.async_client is None:
            await asyncio.to_thread(self.clear)
            return
        await self.async_client.clear_session(self.session_id, tenant=self.tenant)
