"""Checkpoint entries of the write-ahead log, and how the drainer applies them to the store.

Three kinds (``core/log/entries.py`` sorts entries by kind and version), each with ``t``
tenant, ``s`` thread, ``w`` the Redis time of the write in microseconds:

- ``cp`` 1, a checkpoint: ``d`` = ``{"r": record, "b": blobs}`` (core/checkpoints/model.py);
- ``cw`` 1, pending writes: ``d`` = ``{"ns", "id", "u" replace, "w": writes}``;
- ``cd`` 1, delete_thread: ``w`` is the thread's new floor.

Exactly once: every row is unique on its primary key and inserted with ``ON CONFLICT DO
NOTHING`` (pending writes of special channels replace, as LangGraph's savers do), so a
replayed batch changes nothing. A row written at or before its thread's floor is not
inserted; the floor itself only grows, so the order of a redelivery cannot bring a deleted
thread back. A row written after the floor replaces a stored row of the same key at or below
it (``prune`` re-puts the kept checkpoint with its ids after the delete).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, Connection, Table, bindparam, select, tuple_

from core.checkpoints.model import CheckpointRecord, PendingWrite
from core.errors import PermanentError
from core.retention.policy import NO_RETENTION, RetentionPolicy
from core.store.checkpoint_tables import (
    checkpoint_blobs,
    checkpoint_threads,
    checkpoint_writes,
    checkpoints,
)
from core.store.codec import expect_count, expect_text
from core.store.db import insert_for

CHECKPOINT = ("cp", "1")
WRITES = ("cw", "1")
DELETE = ("cd", "1")
# Checkpoints are agent state: they follow the tenant's retention of state.
RETENTION_KIND = "state"


@dataclass(frozen=True, slots=True)
class CheckpointRow:
    tenant: str
    session_id: str
    written_us: int
    record: CheckpointRecord
    blobs: list[list[Any]]
    seq: int = 0  # not a message


@dataclass(frozen=True, slots=True)
class WritesRow:
    tenant: str
    session_id: str
    written_us: int
    ns: str
    checkpoint_id: str
    replace: bool
    writes: list[PendingWrite]
    seq: int = 0


@dataclass(frozen=True, slots=True)
class ThreadDeleteRow:
    tenant: str
    session_id: str
    written_us: int
    seq: int = 0


CheckpointWalRow = CheckpointRow | WritesRow | ThreadDeleteRow


def _head(fields: dict[str, str]) -> tuple[str, str, int]:
    return expect_text(fields["t"]), expect_text(fields["s"]), expect_count(fields["w"])


def _malformed(exc: Exception) -> PermanentError:
    return PermanentError(f"malformed WAL entry: {exc.__class__.__name__}: {exc}")


def decode_checkpoint(fields: dict[str, str]) -> CheckpointRow:
    try:
        tenant, thread, written = _head(fields)
        doc = json.loads(fields["d"])
        blobs = [list(item) for item in doc["b"]]
        if any(len(item) != 4 for item in blobs):
            raise ValueError("a blob is not [channel, version, type, value]")
        record = CheckpointRecord.from_json(json.dumps(doc["r"]))
    except (KeyError, ValueError, TypeError, OverflowError) as exc:
        raise _malformed(exc) from None
    return CheckpointRow(tenant, thread, written, record, blobs)


def decode_writes(fields: dict[str, str]) -> WritesRow:
    try:
        tenant, thread, written = _head(fields)
        doc = json.loads(fields["d"])
        writes = [PendingWrite.from_list(item) for item in doc["w"]]
        row = WritesRow(
            tenant, thread, written, str(doc["ns"]), str(doc["id"]), bool(doc["u"]), writes
        )
    except (KeyError, ValueError, TypeError, OverflowError) as exc:
        raise _malformed(exc) from None
    return row


def decode_delete(fields: dict[str, str]) -> ThreadDeleteRow:
    try:
        tenant, thread, written = _head(fields)
    except (KeyError, ValueError, TypeError, OverflowError) as exc:
        raise _malformed(exc) from None
    return ThreadDeleteRow(tenant, thread, written)


DECODERS: dict[tuple[str, str], Callable[[dict[str, str]], CheckpointWalRow]] = {
    CHECKPOINT: decode_checkpoint,
    WRITES: decode_writes,
    DELETE: decode_delete,
}


def _when(micros: int) -> datetime:
    return datetime.fromtimestamp(micros / 1_000_000, UTC)


def _floors(connection: Connection, rows: Sequence[CheckpointWalRow]) -> dict[tuple[str, str], int]:
    threads = sorted({(row.tenant, row.session_id) for row in rows})
    found = connection.execute(
        select(
            checkpoint_threads.c.tenant,
            checkpoint_threads.c.session_id,
            checkpoint_threads.c.deleted_us,
        ).where(tuple_(checkpoint_threads.c.tenant, checkpoint_threads.c.session_id).in_(threads))
    )
    return {(tenant, thread): int(floor) for tenant, thread, floor in found}


def _raise_floor(connection: Connection, row: ThreadDeleteRow) -> None:
    statement = insert_for(connection, checkpoint_threads).values(
        tenant=row.tenant,
        session_id=row.session_id,
        deleted_us=row.written_us,
        deleted_at=_when(row.written_us),
    )
    current = checkpoint_threads.c.deleted_us
    connection.execute(
        statement.on_conflict_do_update(
            index_elements=["tenant", "session_id"],
            set_={"deleted_us": statement.excluded.deleted_us, "deleted_at": _when(row.written_us)},
            where=current < statement.excluded.deleted_us,
        )
    )


def _insert_or_revive(connection: Connection, table: Table) -> Any:
    """Insert; on a key the store holds, do nothing unless the stored row is at or below its
    thread's floor (each row's ``floor_us``). Such a row is deleted for readers but not purged
    yet, and a put of the same key after the delete (prune's kept checkpoint, a thread copied
    again) must replace it: left alone, the new write would stay hidden behind the floor and
    be purged with it. A replayed entry finds its own row above the floor: nothing changes."""
    statement = insert_for(connection, table)
    key = [column.name for column in table.primary_key.columns]
    return statement.on_conflict_do_update(
        index_elements=key,
        set_={
            column.name: statement.excluded[column.name]
            for column in table.columns
            if column.name not in key
        },
        where=table.c.written_us <= bindparam("floor_us", type_=BigInteger),
    )


def apply_checkpoint_rows(
    connection: Connection,
    rows: Sequence[CheckpointWalRow],
    *,
    policy: RetentionPolicy = NO_RETENTION,
) -> int:
    """Apply ``rows`` (WAL order) in the batch's transaction; returns rows inserted."""
    floors = _floors(connection, rows)
    for row in rows:
        if isinstance(row, ThreadDeleteRow):
            key = (row.tenant, row.session_id)
            if row.written_us > floors.get(key, 0):
                floors[key] = row.written_us
                _raise_floor(connection, row)
    # Keyed by primary key, the first write kept: one upsert statement may not touch a row
    # twice (the same checkpoint put twice, a thread copied twice).
    kept: dict[tuple[Any, ...], dict[str, Any]] = {}
    blobs: dict[tuple[Any, ...], dict[str, Any]] = {}
    keep_writes: dict[tuple[Any, ...], dict[str, Any]] = {}
    replace_writes: dict[tuple[str, ...], dict[str, Any]] = {}
    for row in rows:
        if isinstance(row, ThreadDeleteRow):
            continue
        if row.written_us <= floors.get((row.tenant, row.session_id), 0):
            continue  # written before its thread was deleted
        expires = policy.expires_at(row.tenant, RETENTION_KIND, _when(row.written_us))
        base = {"tenant": row.tenant, "session_id": row.session_id, "written_us": row.written_us}
        base["expires_at"] = expires
        revive = {"floor_us": floors.get((row.tenant, row.session_id), 0)}
        if isinstance(row, CheckpointRow):
            record = row.record
            thread = (row.tenant, row.session_id, record.ns)
            kept.setdefault(
                (*thread, record.checkpoint_id),
                {
                    **base,
                    **revive,
                    "checkpoint_ns": record.ns,
                    "checkpoint_id": record.checkpoint_id,
                    "parent_checkpoint_id": record.parent_id,
                    "type": record.type,
                    "checkpoint": record.checkpoint,
                    "metadata": record.metadata,
                    "blobs": [list(pair) for pair in record.blobs],
                },
            )
            for channel, version, kind, value in row.blobs:
                blobs.setdefault(
                    (*thread, channel, version),
                    {**base, **revive, "checkpoint_ns": record.ns, "channel": channel}
                    | {"version": version, "type": kind, "blob": value},
                )
            continue
        for write in row.writes:
            values = {
                **base,
                "checkpoint_ns": row.ns,
                "checkpoint_id": row.checkpoint_id,
                "task_id": write.task_id,
                "idx": write.idx,
                "channel": write.channel,
                "type": write.type,
                "blob": write.value,
                "task_path": write.task_path,
            }
            if row.replace:
                # The newest wins, and one statement may not touch a row twice.
                where = (row.tenant, row.session_id, row.ns, row.checkpoint_id)
                replace_writes[(*where, write.task_id, str(write.idx))] = values
            else:
                where = (row.tenant, row.session_id, row.ns, row.checkpoint_id)
                keep_writes.setdefault((*where, write.task_id, write.idx), values | revive)
    inserted = 0
    for table, batch in (
        (checkpoints, kept),
        (checkpoint_blobs, blobs),
        (checkpoint_writes, keep_writes),
    ):
        if batch:
            result = connection.execute(_insert_or_revive(connection, table), list(batch.values()))
            inserted += max(result.rowcount, 0)
    if replace_writes:
        statement = insert_for(connection, checkpoint_writes)
        excluded = statement.excluded
        result = connection.execute(
            statement.on_conflict_do_update(
                index_elements=[column.name for column in checkpoint_writes.primary_key.columns],
                set_={
                    "channel": excluded.channel,
                    "type": excluded.type,
                    "blob": excluded.blob,
                    "written_us": excluded.written_us,
                },
            ),
            list(replace_writes.values()),
        )
        inserted += max(result.rowcount, 0)
    return inserted
