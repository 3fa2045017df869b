"""Undo a merge: the sources come back exactly as they were, the merged memory goes.

Only ``superseded_by`` of each source changes (back to NULL); ``examined_at`` stays set, so
the next pass does not redo the merge just undone (a new memory joining them reopens their
cluster). The merged memory and its lineage rows are deleted; in the view the merged memory
becomes forgotten ("-") and each source gets its live value back. A merged memory that a later
merge folded again must be unconsolidated from the top.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import redis
from redis import RedisError
from sqlalchemy import Engine, delete, select, update

from config.settings import Settings
from core.errors import PermanentError, TransientError, ValidationError
from core.memories import lineage, records
from core.memories.view_merge import ViewScripts, stored_value
from core.models import validate_id
from core.store.db import memories, memory_lineage
from core.store.db_errors import translate_errors
from core.store.keys import Keys, SubjectKeys
from core.store.lease import Lease
from core.store.redis_errors import redis_errors

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Unconsolidated:
    """What ``unconsolidate`` did."""

    memory_id: str
    tenant: str
    subject_id: str
    restored: tuple[str, ...]  # the sources, live again


def unconsolidate(
    redis: redis.Redis,
    engine: Engine,
    settings: Settings,
    memory_id: str,
    *,
    tenant: str | None = None,
) -> Unconsolidated:
    """Restore the sources of the merged memory ``memory_id`` and delete it.

    Raises ``ValidationError`` when ``memory_id`` is unknown (in ``tenant``, when given), is
    not a merged memory, or was folded into a later merge (unconsolidate that one first);
    ``TransientError`` while the subject is being consolidated.
    """
    validate_id("memory_id", memory_id)
    if tenant is not None:
        validate_id("tenant", tenant)
    with translate_errors(), engine.connect() as connection:
        found = lineage.load(connection, [memory_id])
    merged = found[0] if found else None
    if merged is None or (tenant is not None and merged.tenant != tenant):
        raise ValidationError("memory_id", f"no memory {memory_id!r} in the durable store")
    if merged.superseded_by is not None:
        raise ValidationError(
            "memory_id",
            f"{memory_id} is folded into {merged.superseded_by} (a later merge); "
            f"unconsolidate {merged.superseded_by} first",
        )
    keys = Keys.of(settings).subject(merged.tenant, merged.subject_id)
    scripts = ViewScripts.register(redis)
    lease = Lease(redis, scripts.lease, keys.lease, int(settings.consolidate_lease_s * 1000))
    with redis_errors():
        if not lease.acquire():
            raise TransientError(
                f"subject {merged.subject_id} is being consolidated; try again shortly"
            )
    try:
        return _undo(redis, engine, scripts, keys, merged.memory_id)
    finally:
        try:
            lease.release()
        except RedisError as exc:
            log.warning("could not release %s (it expires): %s", keys.lease, exc)


def _undo(
    client: redis.Redis,
    engine: Engine,
    scripts: ViewScripts,
    keys: SubjectKeys,
    memory_id: str,
) -> Unconsolidated:
    with translate_errors(), engine.connect() as connection:
        transaction = connection.begin()
        # Lock the merged row: a concurrent unconsolidate or merge of it waits here.
        row = connection.execute(
            select(memories).where(memories.c.memory_id == memory_id).with_for_update()
        ).one_or_none()
        merged = next(iter(lineage.from_rows(engine, [row])), None) if row is not None else None
        if merged is None or merged.superseded_by is not None:
            transaction.rollback()
            raise ValidationError("memory_id", f"{memory_id} changed meanwhile; try again")
        source_ids = sorted(
            connection.execute(
                select(memory_lineage.c.source_id).where(memory_lineage.c.merged_id == memory_id)
            ).scalars()
        )
        if not source_ids:
            transaction.rollback()
            raise ValidationError("memory_id", f"{memory_id} is not a merged memory")
        restored = connection.execute(
            update(memories)
            .where(memories.c.memory_id.in_(source_ids), memories.c.superseded_by == memory_id)
            .values(superseded_by=None)
        ).rowcount
        if restored != len(source_ids):
            transaction.rollback()
            raise PermanentError(
                f"{memory_id}: {restored} of {len(source_ids)} lineage sources point at it"
            )
        connection.execute(delete(memory_lineage).where(memory_lineage.c.merged_id == memory_id))
        connection.execute(delete(memories).where(memories.c.memory_id == memory_id))
        sources = lineage.load(connection, source_ids)
        with redis_errors():
            done = scripts.unmerge(
                keys,
                merged_id=memory_id,
                require_live=True,
                becomes=records.FORGOTTEN,
                sources=sources,
            )
        if done == -1:
            transaction.rollback()
            raise ValidationError(
                "memory_id", f"{memory_id} was forgotten or changed in Redis meanwhile"
            )
        try:
            transaction.commit()
        except BaseException:
            if done == 1:
                # The view shows the undo the store refused: show the merge again.
                with client.pipeline(transaction=True) as pipe:
                    pipe.hset(keys.memories, memory_id, stored_value(merged))
                    for source in sources:
                        value = stored_value(source)
                        pipe.hset(keys.memories, source.memory_id, f">{memory_id}|{value}")
                    pipe.execute()
            raise
    return Unconsolidated(
        memory_id=memory_id,
        tenant=merged.tenant,
        subject_id=merged.subject_id,
        restored=tuple(source_ids),
    )
