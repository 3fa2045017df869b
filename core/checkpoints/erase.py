"""Erasure of LangGraph checkpoints (``erase_tenant``, ``erase_subject``; core/erasure).

The barrier runs with the request: every thread of the tenant, or of the data subject (the
per-shard indexes ``checkpoint_put.lua`` keeps, and the threads PostgreSQL holds), is deleted
the way ``delete_thread`` deletes it, and the floors are written to ``checkpoint_threads`` at
once, stamped with the receipt. A put still in the WAL meets its thread's floor when it is
drained and is dropped, so nothing in flight comes back; a put after the request is newer than
the floor and is kept (new data). ``empty_erased`` (the ``maintenance.erase`` job) deletes the
rows at or below the floors the receipt stamped.
"""

from __future__ import annotations

from collections.abc import Iterable

import redis
from sqlalchemy import Engine, delete, exists, select

from core.checkpoints import durable
from core.checkpoints.calls import delete_call
from core.checkpoints.keys import checkpoint_keys, subject_threads_key, tenant_threads_key
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


def _indexed(redis_client: redis.Redis, names: Iterable[str]) -> set[str]:
    with redis_errors(), redis_client.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.smembers(name)
        return {str(thread) for members in pipe.execute() for thread in members}


def _bar(
    redis_client: redis.Redis,
    scripts: Scripts,
    engine: Engine,
    keys: Keys,
    tenant: str,
    threads: set[str],
    receipt_id: str,
) -> int:
    floors: dict[str, int] = {}
    with redis_errors():
        for thread in sorted(threads):
            names, args = delete_call(checkpoint_keys(keys, tenant, thread))
            floors[thread] = int(scripts.checkpoint_delete(keys=names, args=args))
    with translate_errors(), engine.begin() as connection:
        for thread, floor in sorted(floors.items()):
            raise_floor(connection, ThreadDeleteRow(tenant, thread, floor), erased_by=receipt_id)
    return len(floors)


def bar_tenant(
    redis_client: redis.Redis,
    scripts: Scripts,
    engine: Engine,
    keys: Keys,
    tenant: str,
    *,
    receipt_id: str,
) -> int:
    """The tenant's barrier; returns how many threads it deleted."""
    threads = _indexed(
        redis_client, (tenant_threads_key(keys, shard, tenant) for shard in range(keys.shards))
    )
    with translate_errors(), engine.connect() as connection:
        threads |= set(
            connection.execute(
                select(checkpoints.c.session_id).where(checkpoints.c.tenant == tenant).distinct()
            ).scalars()
        )
    return _bar(redis_client, scripts, engine, keys, tenant, threads, receipt_id)


def bar_subject(
    redis_client: redis.Redis,
    scripts: Scripts,
    engine: Engine,
    keys: Keys,
    tenant: str,
    subject_id: str,
    *,
    receipt_id: str,
) -> int:
    """The subject's barrier: its threads (whole: a thread is about one subject)."""
    names = [subject_threads_key(keys, shard, tenant, subject_id) for shard in range(keys.shards)]
    threads = _indexed(redis_client, names) | durable.threads_of_subject(engine, tenant, subject_id)
    barred = _bar(redis_client, scripts, engine, keys, tenant, threads, receipt_id)
    with redis_errors(), redis_client.pipeline(transaction=False) as pipe:
        for name in names:  # the index's names hold the subject id: they go too
            pipe.delete(name)
        pipe.execute()
    return barred


def empty_erased(engine: Engine, receipt_id: str) -> dict[str, int]:
    """Deletes the rows at or below the floors ``receipt_id`` stamped; counts per table (the
    tables it deleted from)."""
    counts: dict[str, int] = {}
    with translate_errors(), engine.begin() as connection:
        for table in (checkpoints, checkpoint_blobs, checkpoint_writes):
            barred = exists().where(
                (checkpoint_threads.c.erased_by == receipt_id)
                & (checkpoint_threads.c.tenant == table.c.tenant)
                & (checkpoint_threads.c.session_id == table.c.session_id)
                & (table.c.written_us <= checkpoint_threads.c.deleted_us)
            )
            gone = int(connection.execute(delete(table).where(barred)).rowcount)
            if gone:
                counts[table.name] = gone
    return counts
