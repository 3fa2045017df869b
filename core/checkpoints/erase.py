"""A tenant's checkpoints erased (``erase_tenant``; core/erasure): the barrier, then the rest.

``bar_tenant`` runs with the request: every thread of the tenant (the per-shard index
``checkpoint_put.lua`` keeps, and the threads the store holds) is deleted the way
``delete_thread`` deletes it, and the floors are written to ``checkpoint_threads`` at once. A
put still in the WAL meets its thread's floor when it is drained and is dropped, so nothing in
flight comes back; a put after the request is newer than the floor and is kept (new data).
``empty_tenant`` (the ``maintenance.erase`` job) deletes the rows at or below the floors.
"""

from __future__ import annotations

import redis
from sqlalchemy import Engine, delete, select

from core.checkpoints.calls import delete_call
from core.checkpoints.keys import checkpoint_keys, tenant_threads_key
from core.checkpoints.wal import ThreadDeleteRow, raise_floor
from core.store.checkpoint_tables import (
    checkpoint_blobs,
    checkpoint_threads,
    checkpoint_writes,
    checkpoints,
)
from core.store.db_errors import translate_errors
from core.store.keys import Keys
from core.store.redis_errors import redis_errors
from core.store.scripts import Scripts


def _threads(redis_client: redis.Redis, engine: Engine, keys: Keys, tenant: str) -> set[str]:
    found: set[str] = set()
    with redis_errors():
        for shard in range(keys.shards):
            found |= {
                str(thread)
                for thread in redis_client.smembers(tenant_threads_key(keys, shard, tenant))
            }
    with translate_errors(), engine.connect() as connection:
        found |= set(
            connection.execute(
                select(checkpoints.c.session_id).where(checkpoints.c.tenant == tenant).distinct()
            ).scalars()
        )
    return found


def bar_tenant(
    redis_client: redis.Redis, scripts: Scripts, engine: Engine, keys: Keys, tenant: str
) -> int:
    """The barrier; returns how many threads it deleted."""
    floors: dict[str, int] = {}
    with redis_errors():
        for thread in sorted(_threads(redis_client, engine, keys, tenant)):
            names, args = delete_call(checkpoint_keys(keys, tenant, thread))
            floors[thread] = int(scripts.checkpoint_delete(keys=names, args=args))
    with translate_errors(), engine.begin() as connection:
        for thread, floor in sorted(floors.items()):
            raise_floor(connection, ThreadDeleteRow(tenant, thread, floor))
    return len(floors)


def empty_tenant(engine: Engine, tenant: str) -> dict[str, int]:
    """Deletes the tenant's rows at or below their thread's floor; counts per table."""
    counts: dict[str, int] = {}
    with translate_errors(), engine.begin() as connection:
        for table in (checkpoints, checkpoint_blobs, checkpoint_writes):
            below = (
                select(checkpoint_threads.c.deleted_us)
                .where(
                    (checkpoint_threads.c.tenant == table.c.tenant)
                    & (checkpoint_threads.c.session_id == table.c.session_id)
                )
                .scalar_subquery()
            )
            gone = connection.execute(
                delete(table).where((table.c.tenant == tenant) & (table.c.written_us <= below))
            ).rowcount
            counts[table.name] = int(gone)
    return counts
