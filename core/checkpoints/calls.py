"""The checkpoint scripts' arguments and replies, as pure functions shared by the sync and the
asyncio store (core/checkpoints/store.py): only the I/O differs between them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from config.settings import Settings
from core.checkpoints.keys import CLOCK_TTL_S, CheckpointKeys
from core.checkpoints.model import (
    EMPTY,
    Blob,
    CheckpointRecord,
    Loaded,
    PendingWrite,
    check_size,
    encode_json,
)
from core.errors import PermanentError
from core.retention.policy import RetentionPolicy

Call = tuple[list[str], list[str | int | float]]


@dataclass(frozen=True, slots=True)
class Limits:
    """What every write script checks, per deployment (the same checks as append's)."""

    ttl_s: int
    max_bytes: int
    max_wal_backlog: int
    tenant_budget: int
    reserve: float
    retention: RetentionPolicy

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        return cls(
            ttl_s=settings.checkpoint_ttl_s,
            max_bytes=settings.checkpoint_max_bytes,
            max_wal_backlog=settings.max_wal_backlog,
            tenant_budget=settings.tenant_budget_per_shard,
            reserve=settings.tenant_backlog_reserve,
            retention=RetentionPolicy.of(settings),
        )

    def tail(self, tenant: str) -> list[str | int | float]:
        # Redis never holds a tenant's checkpoints longer than its retention of state allows.
        ttl = self.retention.redis_ttl_s(tenant, self.ttl_s, "state")
        return [ttl, max(CLOCK_TTL_S, ttl), self.max_wal_backlog, self.tenant_budget, self.reserve]


def put_call(
    keys: CheckpointKeys, record: CheckpointRecord, blobs: Sequence[Blob], limits: Limits
) -> Call:
    record_json = record.as_json()
    blob_json = encode_json([[b.channel, b.version, b.type, b.value] for b in blobs])
    check_size("checkpoint", len(record_json) + len(blob_json), limits.max_bytes)
    head: list[str | int | float] = [keys.tenant, keys.thread_id, record.ns, record.checkpoint_id]
    run_id, subject = run_of(record), record.subject_id or ""
    names = [*keys.all(), keys.run_threads(run_id), keys.subject_threads(subject)]
    return names, [*head, record_json, blob_json, *limits.tail(keys.tenant), run_id, subject]


def run_of(record: CheckpointRecord) -> str:
    """The checkpoint's run id ('' for none): LangGraph puts it in the metadata."""
    run_id = record.metadata.get("run_id")
    return run_id if isinstance(run_id, str) else ""


def writes_call(
    keys: CheckpointKeys,
    ns: str,
    checkpoint_id: str,
    writes: Sequence[PendingWrite],
    *,
    replace: bool,
    limits: Limits,
    subject_id: str | None = None,
) -> Call:
    writes_json = encode_json([write.as_list() for write in writes])
    check_size("writes", len(writes_json), limits.max_bytes)
    head: list[str | int | float] = [keys.tenant, keys.thread_id, ns, checkpoint_id, writes_json]
    tail = [*limits.tail(keys.tenant), subject_id or ""]
    return keys.all(), [*head, "1" if replace else "0", *tail]


def read_call(keys: CheckpointKeys, ns: str, checkpoint_id: str | None) -> Call:
    return keys.all()[:6], [ns, checkpoint_id or ""]


def delete_call(keys: CheckpointKeys) -> Call:
    return keys.all(), [keys.tenant, keys.thread_id, CLOCK_TTL_S]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(slots=True)
class RedisRead:
    """What checkpoint_read.lua found."""

    floor: int
    checkpoint_id: str | None  # the id it looked at (None: the namespace is empty in Redis)
    record: CheckpointRecord | None
    values: dict[tuple[str, str], tuple[str, str | None]] = field(default_factory=dict)
    missing: list[tuple[str, str]] = field(default_factory=list)
    writes: list[PendingWrite] = field(default_factory=list)


def parse_read(reply: Sequence[Any], ns: str) -> RedisRead:
    floor_raw, member, record_raw, blob_values, write_values = reply
    try:
        floor = int(_text(floor_raw))
        checkpoint_id = None if not member else _text(member)[len(ns) + 1 :]
        record = None if not record_raw else CheckpointRecord.from_json(record_raw)
        writes = sorted(
            (PendingWrite.from_list(json.loads(value)) for value in write_values if value),
            key=lambda write: (write.task_id, write.idx),
        )
    except (ValueError, TypeError, KeyError) as exc:
        # Our own bytes in Redis that do not parse: say so plainly rather than guess.
        raise PermanentError(f"unreadable checkpoint in Redis: {exc}") from None
    read = RedisRead(floor, checkpoint_id, record, writes=writes)
    if record is not None:
        for pair, value in zip(record.blobs, blob_values or [], strict=False):
            if not value:
                read.missing.append(pair)
                continue
            kind, _, data = _text(value).partition("|")
            read.values[pair] = (kind, data)
        read.missing += list(record.blobs[len(blob_values or []) :])
    return read


def merge_writes(*groups: Sequence[PendingWrite]) -> list[PendingWrite]:
    """One list in (task_id, idx) order; a later group wins a tie (Redis after the store)."""
    merged: dict[tuple[str, int], PendingWrite] = {}
    for group in groups:
        for write in group:
            merged[(write.task_id, write.idx)] = write
    return [merged[key] for key in sorted(merged)]


def loaded(
    record: CheckpointRecord,
    values: dict[tuple[str, str], tuple[str, str | None]],
    writes: list[PendingWrite],
) -> Loaded:
    return Loaded(
        record=record,
        values={
            channel: values[(channel, version)]
            for channel, version in record.blobs
            if (channel, version) in values and values[(channel, version)][0] != EMPTY
        },
        writes=writes,
    )


def redis_ids(members: Sequence[Any]) -> list[tuple[str, str]]:
    """Index members "<ns>\\0<id>" as (ns, id)."""
    found = []
    for member in members:
        ns, _, checkpoint_id = _text(member).partition("\x00")
        found.append((ns, checkpoint_id))
    return found


def merge_ids(
    stored: Sequence[tuple[str, str]], members: Sequence[Any], before: str | None
) -> list[tuple[str, str]]:
    """The store's (ns, id) pairs and Redis's index members, once each, newest first (ids are
    time-ordered), older than ``before`` when given."""
    found = set(stored) | set(redis_ids(members))
    newest_first = sorted(found, key=lambda pair: (pair[1], pair[0]), reverse=True)
    return [pair for pair in newest_first if before is None or pair[1] < before]


def index_range(ns: str | None) -> tuple[str, str]:
    """ZREVRANGEBYLEX bounds (max, min) of a namespace's members (every member: None)."""
    if ns is None:
        return "+", "-"
    return f"({ns}\x01", f"[{ns}\x00"
