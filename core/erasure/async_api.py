"""``AsyncMemoryClient``'s clearing and erasure methods: ``ErasureAPI``'s, each run in a
worker thread (they write the durable store through SQLAlchemy, which is synchronous).
``tests/integration/test_async_client.py`` checks the twins' signatures against the sync ones.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

from core.erasure.api import ErasureAPI
from core.erasure.receipts import Receipt
from core.erasure.sessions import Cleared


class AsyncErasureAPI:
    sync: ErasureAPI

    async def clear_session(self, session_id: str, *, tenant: str = "default") -> Cleared:
        """``MemoryClient.clear_session`` in a worker thread."""
        return await asyncio.to_thread(self.sync.clear_session, session_id, tenant=tenant)

    async def clear_buffer(self, session_id: str, *, tenant: str = "default") -> Cleared:
        """``MemoryClient.clear_buffer`` in a worker thread."""
        return await asyncio.to_thread(self.sync.clear_buffer, session_id, tenant=tenant)

    async def clear_summaries(self, session_id: str, *, tenant: str = "default") -> Cleared:
        """``MemoryClient.clear_summaries`` in a worker thread."""
        return await asyncio.to_thread(self.sync.clear_summaries, session_id, tenant=tenant)

    async def erase_subject(
        self, subject_id: str, *, tenant: str = "default", request_id: str
    ) -> Receipt:
        """``MemoryClient.erase_subject`` in a worker thread."""
        return await asyncio.to_thread(
            self.sync.erase_subject, subject_id, tenant=tenant, request_id=request_id
        )

    async def erase_tenant(self, tenant: str, *, request_id: str) -> Receipt:
        """``MemoryClient.erase_tenant`` in a worker thread."""
        return await asyncio.to_thread(self.sync.erase_tenant, tenant, request_id=request_id)

    async def delete_message(
        self, message_id: str, *, tenant: str = "default", session_id: str | None = None
    ) -> bool:
        """``MemoryClient.delete_message`` in a worker thread."""
        return await asyncio.to_thread(
            self.sync.delete_message, message_id, tenant=tenant, session_id=session_id
        )

    async def export_subject(self, subject_id: str, *, tenant: str = "default") -> Iterator[str]:
        """``MemoryClient.export_subject``: checked in a worker thread, returned as the same
        lazy iterator. Its pieces are read as it is iterated, synchronously, so that a long
        history never sits in memory whole: iterate it off the event loop, e.g.
        ``await asyncio.to_thread(write_all, pieces, file)``."""
        return await asyncio.to_thread(self.sync.export_subject, subject_id, tenant=tenant)

    async def erasure_status(self, receipt_id: str) -> Receipt:
        """``MemoryClient.erasure_status`` in a worker thread."""
        return await asyncio.to_thread(self.sync.erasure_status, receipt_id)
