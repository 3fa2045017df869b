"""A tenant's checkpoints erased (``erase_tenant``, core/erasure/job.py): Redis and the store.

Every thread in the tenant's per-shard index (``checkpoint_put.lua`` adds each thread it
writes) is deleted the way ``delete_thread`` deletes it, and its floor is written to
``checkpoint_threads`` in the same transaction that deletes the tenant's rows: a put still in
the WAL meets that floor when it is drained and is dropped, so nothing in flight comes back.
"""

from __future__ import annotations

from datetime import UTC, datetime

import redis
from sqlalchemy import Engine, delete

from core.checkpoints.calls import delete_call
from core.checkpoints.keys import checkpoint_keys, tenant_threads_key
from core.store.checkpoint_tables import (
    checkpoint_blobs,
    checkpoint_threads,
    checkpoint_writes,
    checkpoints,
)
from core.store.db import insert_for
from core.store.db_errors import translate_errors
from core.store.keys import Keys
from core.store.redis_errors import redis_errors
from core.store.scripts import Scripts


def erase_tenant_checkpoints(
    redis_client: redis.Redis, scripts: Scripts, engine: Engine, keys: Keys, tenant: str
) -> dict[str, int]:
    """Returns counts: Redis threads deleted and rows per table."""
    floors: dict[str, int] = {}
    with redis_errors():
        for shard in range(keys.shards):
            index = tenant_threads_key(keys, shard, tenant)
            for thread in sorted(redis_client.smembers(index)):
                names, args = delete_call(checkpoint_keys(keys, tenant, str(thread)))
                floors[str(thread)] = int(scripts.checkpoint_delete(keys=names, args=args))
            redis_client.delete(index)
    counts = {"redis_checkpoint_threads": len(floors)}
    now = datetime.now(UTC)
    with translate_errors(), engine.begin() as connection:
        for thread, floor in sorted(floors.items()):
            statement = insert_for(connection, checkpoint_threads).values(
                tenant=tenant, session_id=thread, deleted_us=floor, deleted_at=now
            )
            connection.execute(
                statement.on_conflict_do_update(
                    index_elements=["tenant", "session_id"],
                    set_={"deleted_us": statement.excluded.deleted_us, "deleted_at": now},
                    where=checkpoint_threads.c.deleted_us < statement.excluded.deleted_us,
                )
            )
        for table in (checkpoints, checkpoint_blobs, checkpoint_writes):
            gone = connection.execute(delete(table).where(table.c.tenant == tenant)).rowcount
            counts[table.name] = int(gone)
    return counts
