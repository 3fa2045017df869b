"""The request path on ``redis.asyncio``: ``Appender``'s append.lua calls, awaited.

Only the I/O is here. Validation, token counting, the call's arguments and the reply's parsing
are the sync ``Appender``'s (``core/log/appender.py``), so both clients write the same bytes
and read the same results. A warm append is one EVALSHA; a cold one reads the durable store
in a worker thread (SQLAlchemy is synchronous) between its two calls, as the sync one does.
"""

from __future__ import annotations

import asyncio
from typing import Any

from core.log.appender import Appender, Prepared, is_cold, results
from core.models import AppendResult
from core.sessions.restore import DurableContext
from core.store.keys import SessionKeys
from core.store.redis_errors import redis_errors
from core.store.scripts import AsyncScripts


class AsyncAppender:
    """Sends the calls ``sync`` builds through ``scripts`` (registered on ``redis.asyncio``)."""

    def __init__(self, *, sync: Appender, scripts: AsyncScripts) -> None:
        self.sync = sync
        self._scripts = scripts

    async def send(
        self, keys: SessionKeys, messages: list[Prepared], *, subject_id: str | None
    ) -> list[AppendResult]:
        """``Appender.send``, awaited: all or nothing, one EVALSHA warm."""
        header, body = self.sync.append_args(keys, messages, subject_id)
        reply = await self._call(keys, [*header, "", *body], subject_id)
        if is_cold(reply):
            # Redis has forgotten the session (or never had it): read the store, call again.
            durable = await asyncio.to_thread(self.sync.durable, keys)
            args, bound = self.sync.cold_args(keys, header, body, durable, subject_id)
            reply = await self._call(keys, args, bound)
        return results(messages, reply)

    async def restore(self, keys: SessionKeys, durable: DurableContext) -> None:
        """Re-warm a cold session from ``durable`` unless an append re-created it meanwhile."""
        args = self.sync.rewarm_args(keys, durable)
        await self._call(keys, args, durable.subject_id)

    async def _call(self, keys: SessionKeys, args: list[str | int], subject_id: str | None) -> Any:
        with redis_errors():
            return await self._scripts.append(
                keys=self.sync.script_keys(keys, subject_id), args=args
            )
