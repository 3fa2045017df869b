"""The cache: an in-process LRU in front of Redis, with an optional loader behind it,
cross-process invalidation by version stamps, tags, ``@cached``, warming, health, and a circuit
breaker that serves the local level (degraded) while Redis is down; namespaces of arbitrary
keys with batch reads and writes and a prefix index, sync and async (the LangChain store's
base). Imports only core.store (docs/cache.md)."""

from core.cache.breaker import Breaker, CircuitOpenError
from core.cache.decorator import cached
from core.cache.local import LocalLRU
from core.cache.multilevel import Cache, CacheResult, CacheStats
from core.cache.namespace import AsyncCacheNamespace, CacheNamespace

__all__ = [
    "AsyncCacheNamespace",
    "Breaker",
    "Cache",
    "CacheNamespace",
    "CacheResult",
    "CacheStats",
    "CircuitOpenError",
    "LocalLRU",
    "cached",
]
