"""``MemscribeStore``: a LangChain key-value store (``BaseStore[str, V]``) over memscribe's cache
(docs/langchain-store.md).

A store is one namespace of the cache (``core.cache.CacheNamespace``) of one tenant: values
live in Redis under the cache's key layout and version stamps, this process keeps recent ones
in the cache's local level (served only after Redis confirmed the stamp), and the keys sit in
an index of the namespace's own, so ``yield_keys(prefix=...)`` is a ``ZRANGEBYLEX`` walk and
never a ``SCAN MATCH`` pattern built from input. The async methods run on ``redis.asyncio``
(``AsyncCacheNamespace``), not in an executor.

Values are JSON types and ``bytes`` (at any depth), in JSON with bytes as tagged base64:
data only, no code runs on loading. Like the cache, the store lives in Redis only: there is
no write-behind to PostgreSQL, so its durability is Redis's (AOF).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any, Generic, TypeVar

import redis
import redis.asyncio
from langchain_core.stores import BaseStore

from config.settings import Settings, get_settings
from core.cache import AsyncCacheNamespace, Cache, CacheNamespace, CacheStats
from core.cache.plans import MAX_VALUE_BYTES
from core.errors import ValidationError
from core.store.connections import async_redis_client, redis_client

V = TypeVar("V")


class MemscribeStore(BaseStore[str, V], Generic[V]):
    """A LangChain ``BaseStore`` in Redis, isolated by ``tenant`` and ``namespace``.

    ``MemscribeStore[bytes]`` is a ``ByteStore`` (``CacheBackedEmbeddings``, a
    ``LocalFileStore`` replacement); any JSON value works too. ``ttl_s``: every value written
    expires after it (None: never). A key is a non-empty string of at most 1,000 bytes of
    UTF-8; a value at most ``max_value_bytes`` as tagged JSON; None is not storable (``mget``
    says "missing" with it). A bad batch raises ``ValidationError`` and writes nothing.

    ``cache``: share a process's ``Cache`` (its local level and breaker); it must be built over
    ``redis``. ``async_redis``: the client of the async methods (default: one from
    ``settings``; a ``redis.asyncio`` client belongs to the event loop that first uses it).
    """

    def __init__(
        self,
        *,
        redis: redis.Redis,
        settings: Settings,
        async_redis: redis.asyncio.Redis | None = None,
        namespace: str = "default",
        tenant: str = "default",
        ttl_s: float | None = None,
        cache: Cache | None = None,
        max_value_bytes: int = MAX_VALUE_BYTES,
    ) -> None:
        if cache is not None and cache.redis is not redis:
            raise ValidationError("cache", "must be built over the same redis client")
        self.cache = cache or Cache(redis=redis, settings=settings)
        self.settings = settings
        self.namespace = namespace
        self.tenant = tenant
        options: dict[str, Any] = {
            "tenant": tenant,
            "namespace": namespace,
            "ttl_s": ttl_s,
            "max_value_bytes": max_value_bytes,
        }
        self._sync = CacheNamespace(cache=self.cache, **options)
        self._owns_async = async_redis is None
        self.async_redis = async_redis or async_redis_client(settings)
        self._async = AsyncCacheNamespace(cache=self.cache, redis=self.async_redis, **options)
        self._async.stats = self._sync.stats  # one store, one set of counters
        self._owns_sync = False

    @classmethod
    def from_settings(
        cls,
        settings: Settings | None = None,
        *,
        namespace: str = "default",
        tenant: str = "default",
        ttl_s: float | None = None,
    ) -> MemscribeStore[Any]:
        """A store on the configured Redis (``MEMSCRIBE_REDIS_URL``, ``MEMSCRIBE_REDIS_CLUSTER``),
        with a sync and an async client of its own (``close`` / ``aclose`` them)."""
        settings = settings or get_settings()
        store: MemscribeStore[Any] = cls(
            redis=redis_client(settings),
            settings=settings,
            async_redis=async_redis_client(settings),
            namespace=namespace,
            tenant=tenant,
            ttl_s=ttl_s,
        )
        store._owns_sync = store._owns_async = True
        return store

    @property
    def stats(self) -> CacheStats:
        """Reads per level (local, redis), hits, stale local copies and degraded reads, of the
        sync and async methods together (``stats.as_dict()``)."""
        return self._sync.stats

    # --- sync -----------------------------------------------------------------------------
    def mget(self, keys: Sequence[str]) -> list[V | None]:
        """The values of ``keys`` in order; None for a key that is not stored."""
        return self._sync.get_many(keys)

    def mset(self, key_value_pairs: Sequence[tuple[str, V]]) -> None:
        """Write (or overwrite) every pair, each value with its index entry atomically."""
        self._sync.set_many(key_value_pairs)

    def mdelete(self, keys: Sequence[str]) -> None:
        """Delete ``keys``; a key that is not stored is no error."""
        self._sync.delete_many(keys)

    def yield_keys(self, *, prefix: str | None = None) -> Iterator[str]:
        """Every stored key starting with ``prefix`` (all: None), in UTF-8 byte order."""
        yield from self._sync.iter_keys(prefix)

    def close(self) -> None:
        """Close the sync client when the store built it (``from_settings``)."""
        if self._owns_sync:
            self.cache.redis.close()

    # --- async ----------------------------------------------------------------------------
    async def amget(self, keys: Sequence[str]) -> list[V | None]:
        """``mget`` on ``redis.asyncio``."""
        return await self._async.get_many(keys)

    async def amset(self, key_value_pairs: Sequence[tuple[str, V]]) -> None:
        """``mset`` on ``redis.asyncio``."""
        await self._async.set_many(key_value_pairs)

    async def amdelete(self, keys: Sequence[str]) -> None:
        """``mdelete`` on ``redis.asyncio``."""
        await self._async.delete_many(keys)

    async def ayield_keys(self, *, prefix: str | None = None) -> AsyncIterator[str]:
        """``yield_keys`` on ``redis.asyncio``."""
        async for key in self._async.iter_keys(prefix):
            yield key

    async def aclose(self) -> None:
        """Close the async client when the store built it."""
        if self._owns_async:
            await self.async_redis.aclose()
