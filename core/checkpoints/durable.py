"""Reads of checkpoints from the durable store: the fall-through when Redis does not hold
what a reader asks for (expired, evicted, a restart without AOF, or older than Redis's copy).

Every query hides rows written at or before the thread's floor: the larger of the floor
Redis reported (a delete_thread not drained yet) and the store's ``checkpoint_threads`` row.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, Engine, func, select, tuple_

from core.checkpoints.model import CheckpointRecord, PendingWrite
from core.store.checkpoint_tables import (
    checkpoint_blobs,
    checkpoint_threads,
    checkpoint_writes,
    checkpoints,
)
from core.store.db_errors import translate_errors

_RECORD_COLUMNS = (
    checkpoints.c.checkpoint_ns,
    checkpoints.c.checkpoint_id,
    checkpoints.c.parent_checkpoint_id,
    checkpoints.c.type,
    checkpoints.c.checkpoint,
    checkpoints.c.metadata,
    checkpoints.c.blobs,
    checkpoints.c.subject_id,
)


def _floor(connection: Connection, tenant: str, thread: str, floor: int) -> int:
    stored = connection.execute(
        select(checkpoint_threads.c.deleted_us).where(
            (checkpoint_threads.c.tenant == tenant) & (checkpoint_threads.c.session_id == thread)
        )
    ).scalar()
    return max(floor, int(stored or 0))


def _of(table: Any, tenant: str, thread: str, floor: int) -> Any:
    return (
        (table.c.tenant == tenant) & (table.c.session_id == thread) & (table.c.written_us > floor)
    )


def _record(row: Any) -> CheckpointRecord:
    ns, checkpoint_id, parent_id, kind, checkpoint, metadata, blobs, subject_id = row
    return CheckpointRecord(
        ns=ns,
        checkpoint_id=checkpoint_id,
        parent_id=parent_id,
        type=kind,
        checkpoint=checkpoint,
        metadata=dict(metadata),
        blobs=tuple((str(channel), str(version)) for channel, version in blobs),
        subject_id=subject_id,
    )


def load_record(
    engine: Engine, tenant: str, thread: str, ns: str, checkpoint_id: str | None, floor: int
) -> CheckpointRecord | None:
    """The checkpoint ``checkpoint_id`` of ``ns`` (None: the newest), or None."""
    with translate_errors(), engine.connect() as connection:
        floor = _floor(connection, tenant, thread, floor)
        query = select(*_RECORD_COLUMNS).where(
            _of(checkpoints, tenant, thread, floor) & (checkpoints.c.checkpoint_ns == ns)
        )
        if checkpoint_id is not None:
            query = query.where(checkpoints.c.checkpoint_id == checkpoint_id)
        row = connection.execute(
            query.order_by(checkpoints.c.checkpoint_id.desc()).limit(1)
        ).first()
    return None if row is None else _record(row)


def load_blobs(
    engine: Engine,
    tenant: str,
    thread: str,
    ns: str,
    wanted: Iterable[tuple[str, str]],
    floor: int,
) -> dict[tuple[str, str], tuple[str, str | None]]:
    """(channel, version) -> (type, base64) for the blobs of ``wanted`` the store holds."""
    pairs = sorted(set(wanted))
    if not pairs:
        return {}
    table = checkpoint_blobs
    with translate_errors(), engine.connect() as connection:
        floor = _floor(connection, tenant, thread, floor)
        found = connection.execute(
            select(table.c.channel, table.c.version, table.c.type, table.c.blob).where(
                _of(table, tenant, thread, floor)
                & (table.c.checkpoint_ns == ns)
                # The pairs asked for, not every version of those channels: a long thread
                # holds one blob per step of its messages channel.
                & tuple_(table.c.channel, table.c.version).in_(pairs)
            )
        )
        return {(channel, version): (kind, blob) for channel, version, kind, blob in found}


def load_writes(
    engine: Engine, tenant: str, thread: str, ns: str, checkpoint_id: str, floor: int
) -> list[PendingWrite]:
    table = checkpoint_writes
    with translate_errors(), engine.connect() as connection:
        floor = _floor(connection, tenant, thread, floor)
        found = connection.execute(
            select(
                table.c.task_id,
                table.c.idx,
                table.c.channel,
                table.c.type,
                table.c.blob,
                table.c.task_path,
            )
            .where(
                _of(table, tenant, thread, floor)
                & (table.c.checkpoint_ns == ns)
                & (table.c.checkpoint_id == checkpoint_id)
            )
            .order_by(table.c.task_id, table.c.idx)
        )
        return [PendingWrite.from_list(row) for row in found]


def list_ids(
    engine: Engine,
    tenant: str,
    thread: str,
    ns: str | None,
    *,
    before: str | None,
    floor: int,
) -> list[tuple[str, str]]:
    """(ns, checkpoint_id) of the thread's stored checkpoints (in ``ns`` when given), newest
    first, older than ``before`` when given."""
    with translate_errors(), engine.connect() as connection:
        floor = _floor(connection, tenant, thread, floor)
        query = select(checkpoints.c.checkpoint_ns, checkpoints.c.checkpoint_id).where(
            _of(checkpoints, tenant, thread, floor)
        )
        if ns is not None:
            query = query.where(checkpoints.c.checkpoint_ns == ns)
        if before is not None:
            query = query.where(checkpoints.c.checkpoint_id < before)
        rows = connection.execute(query.order_by(checkpoints.c.checkpoint_id.desc()))
        return [(str(found_ns), str(found_id)) for found_ns, found_id in rows]


def threads_of_runs(engine: Engine, tenant: str, run_ids: Sequence[str]) -> set[str]:
    """The tenant's threads with stored checkpoints of any of ``run_ids`` (delete_for_runs).
    A scan of the tenant's checkpoints: an operator's call, not a request path."""
    run_id = checkpoints.c.metadata["run_id"].as_string()
    with translate_errors(), engine.connect() as connection:
        return set(
            connection.execute(
                select(checkpoints.c.session_id)
                .where((checkpoints.c.tenant == tenant) & run_id.in_(list(run_ids)))
                .distinct()
            ).scalars()
        )


def threads_of_subject(engine: Engine, tenant: str, subject_id: str) -> set[str]:
    """The tenant's threads with stored checkpoints about ``subject_id`` (on its index)."""
    with translate_errors(), engine.connect() as connection:
        return set(
            connection.execute(
                select(checkpoints.c.session_id)
                .where((checkpoints.c.tenant == tenant) & (checkpoints.c.subject_id == subject_id))
                .distinct()
            ).scalars()
        )


def count_rows(engine: Engine, tenant: str, thread: str) -> dict[str, int]:
    """Rows the store holds of a thread, hidden or not, per table (for tests and operators)."""
    counts: dict[str, int] = {}
    with translate_errors(), engine.connect() as connection:
        for table in (checkpoints, checkpoint_blobs, checkpoint_writes):
            counts[table.name] = int(
                connection.execute(
                    select(func.count()).where(
                        (table.c.tenant == tenant) & (table.c.session_id == thread)
                    )
                ).scalar_one()
            )
    return counts
