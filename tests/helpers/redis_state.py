"""Every key of a Redis database, DUMPed: equal snapshots mean nothing was written."""

from __future__ import annotations

import redis


def redis_snapshot(client: redis.Redis) -> dict[str, bytes | None]:
    raw = redis.Redis(
        connection_pool=redis.ConnectionPool(
            **client.connection_pool.connection_kwargs | {"decode_responses": False}
        )
    )
    keys = sorted(raw.scan_iter(count=1000))
    state = {key.decode(): raw.dump(key) for key in keys}
    raw.close()
    return state  # type: ignore[return-value]
