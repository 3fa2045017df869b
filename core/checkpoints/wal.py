"""Checkpoint entries of the write-ahead log, and how the drainer applies them to the store.

Three kinds (``core/log/entries.py`` sorts entries by kind and version), each with ``t``
tenant, ``s`` thread, ``w`` the Redis time of the write in microseconds:

- ``cp`` 1, a checkpoint: ``d`` = ``{"r": record, "b": blobs}`` (core/checkpoints/model.py);
- ``cw`` 1, pending writes: ``d`` = ``{"ns", "id", "u" replace, "sub" subject, "w": writes}``;
- ``cd`` 1, delete_thread: ``w`` is the thread's new floor.

Exactly once: every row is unique on its primary key and inserted with ``ON CONFLICT DO
NOTHING`` (pending writes of special channels replace, as LangGraph's savers do), so a
replayed batch changes nothing. A row written at or before its thread's floor is not
inserted; the floor itself only grows, so the order of a redelivery cannot bring a deleted
thread back.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Table, func, select, text, tuple_

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
    subject_id: str | None = None
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
        record = CheckpointRecord.from_doc(doc["r"])
    except (KeyError, ValueError, TypeError, OverflowError) as exc:
        raise _malformed(exc) from None
    return CheckpointRow(tenant, thread, written, record, blobs)


def decode_writes(fields: dict[str, str]) -> WritesRow:
    try:
        tenant, thread, written = _head(fields)
        doc = json.loads(fields["d"])
        writes = [PendingWrite.from_list(item) for item in doc["w"]]
        subject = doc.get("sub")
        row = WritesRow(
            tenant,
            thread,
            written,
            str(doc["ns"]),
            str(doc["id"]),
            bool(doc["u"]),
            writes,
            None if subject is None else expect_text(subject),
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


def raise_floor(
    connection: Connection, row: ThreadDeleteRow, *, erased_by: str | None = None
) -> None:
    """The thread's floor in ``checkpoint_threads``, raised to ``row``'s (never lowered);
    ``erased_by``: the erasure receipt whose job deletes the rows (kept once set)."""
    statement = insert_for(connection, checkpoint_threads).values(
        tenant=row.tenant,
        session_id=row.session_id,
        deleted_us=row.written_us,
        deleted_at=_when(row.written_us),
        erased_by=erased_by,
    )
    stored = checkpoint_threads.c
    excluded = statement.excluded
    connection.execute(
        statement.on_conflict_do_update(
            index_elements=["tenant", "session_id"],
            set_={
                "deleted_us": func.max(stored.deleted_us, excluded.deleted_us)
                if connection.dialect.name == "sqlite"
                else func.greatest(stored.deleted_us, excluded.deleted_us),
                "deleted_at": excluded.deleted_at,
                "erased_by": func.coalesce(excluded.erased_by, stored.erased_by),
            },
            where=(stored.deleted_us < excluded.deleted_us) | (excluded.erased_by.is_not(None)),
        )
    )


def _key(table: Table, values: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(values[column.name] for column in table.primary_key.columns)


def _upsert(connection: Connection, table: Table, *, newest_wins: bool) -> Any:
    """Insert, or replace a row that is a deleted thread's residue (written at or before its
    floor: a re-put after delete_thread, prune or delete_for_runs). ``newest_wins`` (special
    pending writes) also replaces an older write. A replayed entry changes nothing."""
    statement = insert_for(connection, table)
    excluded = statement.excluded
    # Text, not a correlated select: SQLAlchemy does not correlate a subquery of an ON
    # CONFLICT clause with the row in conflict. The names are our own tables'.
    name = table.name
    condition = (
        f"{name}.written_us <= (SELECT d.deleted_us FROM checkpoint_threads d "
        f"WHERE d.tenant = {name}.tenant AND d.session_id = {name}.session_id)"
    )
    if newest_wins:
        condition += f" OR {name}.written_us < excluded.written_us"
    stale = text(condition)
    keys = {column.name for column in table.primary_key.columns}
    return statement.on_conflict_do_update(
        index_elements=[column.name for column in table.primary_key.columns],
        set_={c.name: excluded[c.name] for c in table.columns if c.name not in keys},
        where=stale,
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
                raise_floor(connection, row)
    # Per table, by primary key: one statement may not touch a row twice, and of two entries
    # for one row in a batch the later one counts (a re-put after a delete_thread).
    kept: dict[tuple[Any, ...], dict[str, Any]] = {}
    blobs: dict[tuple[Any, ...], dict[str, Any]] = {}
    keep_writes: dict[tuple[Any, ...], dict[str, Any]] = {}
    replace_writes: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        if isinstance(row, ThreadDeleteRow):
            continue
        if row.written_us <= floors.get((row.tenant, row.session_id), 0):
            continue  # written before its thread was deleted
        expires = policy.expires_at(row.tenant, RETENTION_KIND, _when(row.written_us))
        base = {"tenant": row.tenant, "session_id": row.session_id, "written_us": row.written_us}
        base["expires_at"] = expires
        if isinstance(row, CheckpointRow):
            record = row.record
            base["subject_id"] = record.subject_id
            values = {
                **base,
                "checkpoint_ns": record.ns,
                "checkpoint_id": record.checkpoint_id,
                "parent_checkpoint_id": record.parent_id,
                "type": record.type,
                "checkpoint": record.checkpoint,
                "metadata": record.metadata,
                "blobs": [list(pair) for pair in record.blobs],
            }
            kept[_key(checkpoints, values)] = values
            for channel, version, kind, value in row.blobs:
                blob = {**base, "checkpoint_ns": record.ns, "channel": channel}
                blob |= {"version": version, "type": kind, "blob": value}
                blobs[_key(checkpoint_blobs, blob)] = blob
            continue
        base["subject_id"] = row.subject_id
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
            (replace_writes if row.replace else keep_writes)[_key(checkpoint_writes, values)] = (
                values
            )
    inserted = 0
    for table, batch, newest_wins in (
        (checkpoints, kept, False),
        (checkpoint_blobs, blobs, False),
        (checkpoint_writes, keep_writes, False),
        (checkpoint_writes, replace_writes, True),
    ):
        if batch:
            statement = _upsert(connection, table, newest_wins=newest_wins)
            result = connection.execute(statement, list(batch.values()))
            inserted += max(result.rowcount, 0)
    return inserted
