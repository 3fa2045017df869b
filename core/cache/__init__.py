"""The cache: an in-process LRU in front of Redis, with an optional loader behind it,
cross-process invalidation by version stamps, tags, ``@cached``, warming, health, and a circuit
breaker that serves the local level (degraded) while Redis is down. Imports only core.store
(docs/cache.md)."""

from core.cache.breaker import Breaker, CircuitOpenError
from core.cache.decorator import cached
from core.cache.local import LocalLRU
from core.cache.multilevel import Cache, CacheResult, CacheStats

__all__ = [
    "Breaker",
    "Cache",
    "CacheResult",
    "CacheStats",
    "CircuitOpenError",
    "LocalLRU",
    "cached",
]
