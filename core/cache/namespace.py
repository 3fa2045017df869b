"""A namespace of the cache: batches of arbitrary string keys, values with or without expiry,
and a prefix walk over an index of its own; sync (``CacheNamespace``) and async
(``AsyncCacheNamespace``, on ``redis.asyncio``). The LangChain store is built on these
(docs/langchain-store.md).

Both share the ``Cache``'s levels: its local LRU (one budget per process), its breaker (one per
Redis) and its key layout, and they keep the cache's rule for the local level: a local copy is
served only after Redis confirmed its stamp. Here that check rides in the read itself
(``cache_mget.lua`` answers "still current" instead of resending the value), so a batch is one
round trip whether its keys are held locally or not. Every write replaces or deletes the
stamps before it returns, so another process's next read is never stale.

Each batch is one EVALSHA (a batch past ``plans.CHUNK_ENTRIES`` / ``CHUNK_BYTES``: one per
chunk, each atomic). Calls and replies are built and parsed by ``core/cache/plans.py``; the
two classes below differ only in how they send a ``Call``.

While the breaker is open a read is answered from the local level when every key of it is
held there (marked in ``stats.degraded_reads``); otherwise it raises ``TransientError``: a
store must not report a key missing only because Redis did not answer. Writes raise at once.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from core.cache.codec import decode_tagged, utf8_size
from core.cache.local import LocalEntry
from core.cache.multilevel import CacheStats
from core.cache.plans import (
    CURRENT,
    MAX_VALUE_BYTES,
    PAGE_SIZE,
    Call,
    Encoded,
    Fresh,
    Namespace,
    after,
    check_keys,
    delete_calls,
    encode_pairs,
    lex_range,
    page_call,
    parse_page,
    parse_read,
    read_calls,
    write_calls,
)
from core.errors import TransientError
from core.store.redis_errors import redis_errors
from core.store.scripts import lua_source

if TYPE_CHECKING:
    import redis.asyncio
    from redis.commands.core import AsyncScript, Script

    from core.cache.multilevel import Cache

SCRIPTS = ("cache_mget", "cache_mset", "cache_mdelete", "cache_index_page")


class _Levels:
    """What the sync and async namespaces share: the spec, the local level and the steps of
    each operation around its Redis calls."""

    def __init__(
        self,
        *,
        cache: Cache,
        tenant: str,
        namespace: str,
        ttl_s: float | None,
        max_value_bytes: int,
        page_size: int,
    ) -> None:
        self.spec = Namespace.of(
            cache.keys,
            tenant=tenant,
            name=namespace,
            ttl_s=ttl_s,
            max_value_bytes=max_value_bytes,
        )
        self.local = cache.local
        self.breaker = cache.breaker
        # A value without expiry is kept locally this long at most (every local hit is checked
        # against Redis anyway; the bound is for memory and for degraded reads).
        self.local_ttl_s = ttl_s or cache.default_ttl_s
        self.page_size = max(1, page_size)
        self.stats = CacheStats()

    # --- reads ----------------------------------------------------------------------------
    def _begin_read(self, keys: Sequence[str]) -> tuple[list[str], list[LocalEntry | None]]:
        unique = check_keys(keys)
        return unique, [self.local.get(self.spec.entry(key)) for key in unique]

    def _read_calls(self, unique: list[str], held: list[LocalEntry | None]) -> list[Call]:
        return read_calls(self.spec, unique, [e.stamp if e is not None else "" for e in held])

    def _end_read(
        self,
        keys: Sequence[str],
        unique: list[str],
        held: list[LocalEntry | None],
        replies: list[Any],
    ) -> list[Any]:
        found = [item for reply in replies for item in parse_read(reply)]
        values: dict[str, Any] = {}
        for key, entry, item in zip(unique, held, found, strict=True):
            self.stats.reads += 1
            if item == CURRENT and entry is not None:
                self.stats.local.hits += 1
                self.stats.hits += 1
                values[key] = entry.value
                continue
            self.stats.local.misses += 1
            name = self.spec.entry(key)
            if entry is not None:  # another process set or deleted it since we kept it
                self.stats.stale += 1
                self.local.delete(name)
            if not isinstance(item, Fresh):
                self.stats.redis.misses += 1
                continue
            self.stats.redis.hits += 1
            self.stats.hits += 1
            values[key] = self._keep(name, item.text, item.stamp, item.ttl_ms)
        return [values.get(key) for key in keys]

    def _degraded_read(
        self, keys: Sequence[str], unique: list[str], held: list[LocalEntry | None]
    ) -> list[Any] | None:
        """The answer while Redis is unavailable: every key held locally, else None (the
        caller raises)."""
        if any(entry is None for entry in held):
            return None
        values = {key: entry.value for key, entry in zip(unique, held, strict=True) if entry}
        self.stats.reads += len(unique)
        self.stats.hits += len(unique)
        self.stats.degraded_reads += len(unique)
        return [values[key] for key in keys]

    def _keep(self, name: str, text: str, stamp: str, ttl_ms: int | None) -> Any:
        # The local copy is decoded from the JSON, so both levels return the same shapes.
        value = decode_tagged(text)
        ttl_s = ttl_ms / 1000 if ttl_ms else self.local_ttl_s
        if self.local.put(
            name, value, size_bytes=utf8_size("value", text), ttl_s=ttl_s, stamp=stamp
        ):
            self.stats.local.writes += 1
        return value

    # --- writes ---------------------------------------------------------------------------
    def _begin_write(self, pairs: Iterable[tuple[str, Any]]) -> tuple[list[Encoded], list[str]]:
        entries = encode_pairs(pairs, max_value_bytes=self.spec.max_value_bytes)
        # Drop first: a failed write must not leave this process reading its own old copy.
        for entry in entries:
            self.local.delete(self.spec.entry(entry.key))
        return entries, [uuid.uuid4().hex for _ in entries]

    def _end_write(self, entries: list[Encoded], stamps: list[str]) -> None:
        self.stats.redis.writes += len(entries)
        ttl_ms = self.spec.ttl_ms or None
        for entry, stamp in zip(entries, stamps, strict=True):
            self._keep(self.spec.entry(entry.key), entry.text, stamp, ttl_ms)

    def _begin_delete(self, keys: Sequence[str]) -> list[Call]:
        unique = check_keys(keys)
        for key in unique:
            self.local.delete(self.spec.entry(key))
        return delete_calls(self.spec, unique)


class CacheNamespace(_Levels):
    """A namespace of ``cache`` on its (sync) Redis client. Thread-safe."""

    def __init__(
        self,
        *,
        cache: Cache,
        tenant: str = "default",
        namespace: str = "default",
        ttl_s: float | None = None,
        max_value_bytes: int = MAX_VALUE_BYTES,
        page_size: int = PAGE_SIZE,
    ) -> None:
        super().__init__(
            cache=cache,
            tenant=tenant,
            namespace=namespace,
            ttl_s=ttl_s,
            max_value_bytes=max_value_bytes,
            page_size=page_size,
        )
        self._scripts: dict[str, Script] = {
            name: cache.redis.register_script(lua_source(name)) for name in SCRIPTS
        }

    def _run(self, call: Call) -> Any:
        script = self._scripts[call.script]
        with redis_errors():
            return self.breaker.call(lambda: script(keys=call.keys, args=call.args))

    def get_many(self, keys: Sequence[str]) -> list[Any]:
        """The values of ``keys`` in order, None for a missing key."""
        unique, held = self._begin_read(keys)
        try:
            replies = [self._run(call) for call in self._read_calls(unique, held)]
        except TransientError:
            answer = self._degraded_read(keys, unique, held)
            if answer is None:
                raise
            return answer
        return self._end_read(keys, unique, held, replies)

    def set_many(self, pairs: Iterable[tuple[str, Any]]) -> None:
        """Write every (key, value) and its index member; nothing when any pair is invalid."""
        entries, stamps = self._begin_write(pairs)
        for call in write_calls(self.spec, entries, stamps):
            self._run(call)
        self._end_write(entries, stamps)

    def delete_many(self, keys: Sequence[str]) -> None:
        """Delete ``keys`` (missing ones are no error)."""
        for call in self._begin_delete(keys):
            self._run(call)

    def iter_keys(self, prefix: str | None = None) -> Iterator[str]:
        """The keys starting with ``prefix`` (every key: None or ""), in UTF-8 byte order,
        one index page per round trip."""
        low, high = lex_range(prefix)
        while True:
            page = parse_page(self._run(page_call(self.spec, low, high, page_size=self.page_size)))
            yield from page.live
            if page.read < self.page_size or page.last is None:
                return
            low = after(page.last)


class AsyncCacheNamespace(_Levels):
    """``CacheNamespace`` on a ``redis.asyncio`` client (use it from one event loop)."""

    def __init__(
        self,
        *,
        cache: Cache,
        redis: redis.asyncio.Redis,
        tenant: str = "default",
        namespace: str = "default",
        ttl_s: float | None = None,
        max_value_bytes: int = MAX_VALUE_BYTES,
        page_size: int = PAGE_SIZE,
    ) -> None:
        super().__init__(
            cache=cache,
            tenant=tenant,
            namespace=namespace,
            ttl_s=ttl_s,
            max_value_bytes=max_value_bytes,
            page_size=page_size,
        )
        self.redis = redis
        self._scripts: dict[str, AsyncScript] = {
            name: redis.register_script(lua_source(name)) for name in SCRIPTS
        }

    async def _run(self, call: Call) -> Any:
        script = self._scripts[call.script]
        with redis_errors():
            return await self.breaker.acall(lambda: script(keys=call.keys, args=call.args))

    async def get_many(self, keys: Sequence[str]) -> list[Any]:
        """The values of ``keys`` in order, None for a missing key."""
        unique, held = self._begin_read(keys)
        try:
            replies = [await self._run(call) for call in self._read_calls(unique, held)]
        except TransientError:
            answer = self._degraded_read(keys, unique, held)
            if answer is None:
                raise
            return answer
        return self._end_read(keys, unique, held, replies)

    async def set_many(self, pairs: Iterable[tuple[str, Any]]) -> None:
        """Write every (key, value) and its index member; nothing when any pair is invalid."""
        entries, stamps = self._begin_write(pairs)
        for call in write_calls(self.spec, entries, stamps):
            await self._run(call)
        self._end_write(entries, stamps)

    async def delete_many(self, keys: Sequence[str]) -> None:
        """Delete ``keys`` (missing ones are no error)."""
        for call in self._begin_delete(keys):
            await self._run(call)

    async def iter_keys(self, prefix: str | None = None) -> AsyncIterator[str]:
        """The keys starting with ``prefix`` (every key: None or ""), in UTF-8 byte order."""
        low, high = lex_range(prefix)
        while True:
            reply = await self._run(page_call(self.spec, low, high, page_size=self.page_size))
            page = parse_page(reply)
            for key in page.live:
                yield key
            if page.read < self.page_size or page.last is None:
                return
            low = after(page.last)
