"""Dead letters: WAL entries the durable store will not take, and tasks out of retries.

WAL dead letters live in a stream per shard (``ms:{shard}:dead``) beside the WAL, so a replay
moves an entry back atomically. Task dead letters live in ``ms:dead:tasks`` and record the task
name and its arguments, which are ids only (tasks never carry message content).
Listings show ids, errors, counts and times, never message content.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis

from core.errors import ValidationError
from core.log.entries import RawFields, printable
from core.store.connections import raw_command
from core.store.keys import Keys
from core.store.scripts import Scripts

ENTRY_ID = r"\d+-\d+"
MALFORMED = "malformed WAL entry"
DEAD_ID = re.compile(rf"wal:(\d+):({ENTRY_ID})|task:({ENTRY_ID})")


@dataclass(frozen=True)
class DeadLetter:
    """One dead letter. ``id`` is what ``memscribe dlq replay|drop`` take."""

    id: str
    kind: str  # "wal" or "task"
    error: str
    attempts: int  # deliveries of a WAL entry, or runs of a task
    first_failed_ms: int
    last_failed_ms: int
    detail: dict[str, Any] = field(default_factory=dict)


# The fields a WAL dead letter adds to the entry's own (replay.lua copies all the others back).
# WAL kinds of conversation state (core/state/wal.py): their "d" is the app's data.
STATE_KINDS = ("st", "ar", "ac")
RECORD_FIELDS = ("entry_id", "error", "deliveries", "first_failed_ms", "last_failed_ms", "raw")


def wal_record(
    fields: RawFields,
    *,
    entry_id: str,
    error: str,
    deliveries: int,
    first_failed_ms: int,
    now_ms: int,
) -> dict[bytes | str, bytes | str | int]:
    """The dead-letter stream fields for a WAL entry: its own fields, byte for byte (kept for
    replay and for inspection), then what went wrong. ``raw`` = 1 marks an entry no worker
    can decode (listings show its fields, safely encoded)."""
    record: dict[bytes | str, bytes | str | int] = {}
    record.update(fields.items())
    if error.startswith(MALFORMED):
        record["raw"] = 1
    return record | {
        "entry_id": entry_id,
        "error": error[:1000],
        "deliveries": deliveries,
        "first_failed_ms": first_failed_ms,
        "last_failed_ms": now_ms,
    }


def record_task(
    client: redis.Redis,
    keys: Keys,
    *,
    task: str,
    args: list[Any],
    kwargs: dict[str, Any],
    error: str,
    runs: int,
    first_failed_ms: int | None = None,
) -> str:
    """Record a task that will not be retried again; returns its dead-letter id."""
    now_ms = int(time.time() * 1000)
    entry_id = client.xadd(
        keys.task_dead_letters(),
        {
            "task": task,
            "args": json.dumps(args),
            "kwargs": json.dumps(kwargs),
            "error": error[:1000],
            "runs": runs,
            "first_failed_ms": first_failed_ms or now_ms,
            "last_failed_ms": now_ms,
        },
    )
    return f"task:{entry_id!s}"


def _wal_dead_letter(shard: int, entry_id: str, raw: RawFields) -> DeadLetter:
    """One WAL dead letter, read raw: its own fields may not be text (a malformed entry)."""

    def meta(name: str, default: str = "") -> str:
        value = raw.get(name.encode())
        return default if value is None else value.decode("utf-8", "replace")

    detail: dict[str, Any] = {"shard": shard, "entry_id": meta("entry_id") or None}
    if meta("k") in STATE_KINDS:
        # State entries carry the app's data in "d": only the ids are shown, never the content.
        detail |= {"kind": meta("k"), "tenant": meta("t"), "session_id": meta("s")}
        if meta("n"):
            detail["version" if meta("k") == "st" else "position"] = meta("n")
        return _letter(shard, entry_id, meta, detail)
    try:
        record = json.loads(raw.get(b"d", b"").decode())
        detail |= {
            "message_id": record.get("id"),
            "tenant": record.get("t"),
            "session_id": record.get("s"),
            "seq": int(raw.get(b"q", b"0").decode()),
        }
        if record.get("sub") is not None and record.get("s") is None:
            detail["subject_id"] = record["sub"]  # a memory's entry (kind r): no session
    except (ValueError, AttributeError, TypeError):
        detail["unparsable"] = True
    if meta("raw") == "1" or detail.get("unparsable"):
        # Its own fields, for inspection; bytes that are not UTF-8 as {"base64": ...}.
        own = {
            name: value
            for name, value in raw.items()
            if name.decode("latin-1") not in RECORD_FIELDS
        }
        detail["fields"] = printable(own)
    return _letter(shard, entry_id, meta, detail)


def _letter(
    shard: int, entry_id: str, meta: Callable[..., str], detail: dict[str, Any]
) -> DeadLetter:
    return DeadLetter(
        id=f"wal:{shard}:{entry_id}",
        kind="wal",
        error=meta("error"),
        attempts=int(meta("deliveries", "1")),
        first_failed_ms=int(meta("first_failed_ms", "0")),
        last_failed_ms=int(meta("last_failed_ms", "0")),
        detail=detail,
    )


def _task_dead_letter(entry_id: str, fields: dict[str, str]) -> DeadLetter:
    return DeadLetter(
        id=f"task:{entry_id}",
        kind="task",
        error=fields.get("error", ""),
        attempts=int(fields.get("runs", 1)),
        first_failed_ms=int(fields.get("first_failed_ms", 0)),
        last_failed_ms=int(fields.get("last_failed_ms", 0)),
        detail={
            "task": fields.get("task"),
            "args": json.loads(fields.get("args", "[]")),
            "kwargs": json.loads(fields.get("kwargs", "{}")),
        },
    )


def list_dead_letters(client: redis.Redis, keys: Keys, *, limit: int = 1000) -> list[DeadLetter]:
    """Every dead letter (up to ``limit`` per stream), oldest first within each stream."""
    with client.pipeline(transaction=False) as pipe:
        for shard in range(keys.shards):
            raw_command(pipe, "XRANGE", keys.dead_letters(shard), "-", "+", "COUNT", limit)
        pipe.xrange(keys.task_dead_letters(), count=limit)
        replies = pipe.execute()
    letters = [
        _wal_dead_letter(shard, entry_id.decode(), fields)
        for shard, entries in enumerate(replies[:-1])
        for entry_id, fields in entries
    ]
    letters += [_task_dead_letter(entry_id, fields) for entry_id, fields in replies[-1]]
    return letters


def counts(client: redis.Redis, keys: Keys) -> dict[str, int]:
    with client.pipeline(transaction=False) as pipe:
        for shard in range(keys.shards):
            pipe.xlen(keys.dead_letters(shard))
        pipe.xlen(keys.task_dead_letters())
        replies = [int(n) for n in pipe.execute()]
    return {"wal": sum(replies[:-1]), "task": replies[-1]}


def parse_id(dead_id: str, keys: Keys) -> tuple[str, int | None, str]:
    """("wal", shard, entry id) or ("task", None, entry id); ValidationError otherwise."""
    match = DEAD_ID.fullmatch(dead_id)
    if match is None:
        raise ValidationError(
            "id", f"must look like wal:<shard>:<ms>-<n> or task:<ms>-<n>; got {dead_id!r}"
        )
    if match.group(3):
        return "task", None, match.group(3)
    shard = int(match.group(1))
    if shard >= keys.shards:
        raise ValidationError("id", f"shard {shard} does not exist (there are {keys.shards})")
    return "wal", shard, match.group(2)


def replay_wal(client: redis.Redis, keys: Keys, scripts: Scripts, dead_id: str) -> bool:
    """Put a WAL dead letter back into its WAL (atomic move). False if it is already gone."""
    kind, shard, entry_id = parse_id(dead_id, keys)
    if kind != "wal" or shard is None:
        raise ValidationError("id", f"{dead_id} is not a WAL dead letter")
    moved = scripts.replay(
        keys=[keys.dead_letters(shard), keys.wal(shard)], args=[entry_id, *RECORD_FIELDS]
    )
    return bool(moved)


def get_task(client: redis.Redis, keys: Keys, dead_id: str) -> DeadLetter | None:
    kind, _, entry_id = parse_id(dead_id, keys)
    if kind != "task":
        raise ValidationError("id", f"{dead_id} is not a task dead letter")
    found: Any = client.xrange(keys.task_dead_letters(), entry_id, entry_id)
    return _task_dead_letter(entry_id, found[0][1]) if found else None


def drop(client: redis.Redis, keys: Keys, dead_id: str) -> bool:
    """Delete a dead letter for good. False if it is already gone."""
    _kind, shard, entry_id = parse_id(dead_id, keys)
    stream = keys.task_dead_letters() if shard is None else keys.dead_letters(shard)
    return bool(client.xdel(stream, entry_id))
