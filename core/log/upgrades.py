"""Rolling upgrades: a shard that holds a WAL entry of a kind or version an older worker does
not know waits, marked ``ms:{<shard>}:newer``, for a worker that knows it.

The entry and everything after it stay pending, never acked: a newer worker reclaims them
after the lease and persists them in order. Meanwhile every worker that does not know the
kind skips the shard, so the entry's delivery count does not climb toward the dead-letter
limit.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import redis

from core.store.keys import Keys

log = logging.getLogger(__name__)


def leave_for_newer(client: redis.Redis, keys: Keys, shard: int, kind: str) -> None:
    client.set(keys.needs_newer(shard), kind)
    log.warning(
        "shard %s holds a WAL entry of kind/version %s that this worker does not know; "
        "leaving the shard to a newer worker (rolling upgrade)",
        shard,
        kind,
    )


def waiting_for_newer(
    client: redis.Redis, keys: Keys, shard: int, known: Mapping[tuple[str, str], object]
) -> str | None:
    """The kind/version the shard waits for, when this worker does not know it; a worker that
    knows it clears the mark and takes over (None)."""
    kind = client.get(keys.needs_newer(shard))
    if kind is None:
        return None
    if tuple(str(kind).split("/", 1)) in known:
        client.delete(keys.needs_newer(shard))
        return None
    return str(kind)
