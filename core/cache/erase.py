"""A tenant's cache namespaces erased (``erase_tenant``, core/erasure/request.py).

Every namespace the tenant wrote (the set ``cache_mset.lua`` keeps) is walked through its own
index, by rank, and its values, stamps and index are deleted. A process holding a local copy
finds its stamp gone at its next read (core/cache), so nothing erased is served again.
"""

from __future__ import annotations

import redis

from core.cache.plans import Namespace
from core.store.keys import Keys
from core.store.redis_errors import redis_errors

_PAGE = 500


def erase_tenant_namespaces(client: redis.Redis, keys: Keys, tenant: str) -> int:
    """Returns how many entries were deleted."""
    namespaces = keys.cache_tenant_namespaces(tenant)
    deleted = 0
    with redis_errors():
        for name in sorted(client.smembers(namespaces)):
            ns = Namespace.of(keys, tenant=tenant, name=str(name))
            while True:
                members = client.zrange(ns.index, 0, _PAGE - 1)
                if not members:
                    break
                names = [key for member in members for key in ns.entry_keys(str(member))]
                with client.pipeline(transaction=False) as pipe:
                    pipe.delete(*names)
                    pipe.zrem(ns.index, *members)
                    pipe.execute()
                deleted += len(members)
            client.delete(ns.index)
        client.delete(namespaces)
    return deleted
