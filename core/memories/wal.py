"""Memory entries of the write-ahead log, and how the drainer applies them to the store.

Three kinds (each entry names its kind and version, see ``core/log/entries.py``):

- ``r`` 1, remember: ``p`` priority and pinned, ``e`` decay seconds, ``d`` the JSON record;
- ``u`` 1, a change: ``o`` = ``forget`` or ``set`` (``p`` new priority and pin, ``e`` decay);
- ``a`` 1, accesses counted by recall: ``ms`` when, ``d`` JSON ``[[memory_id, decay_s]]``.

They are applied in WAL order inside the batch's transaction, so a forget that follows its
remember in the same batch finds the row. Every apply is idempotent except access counting
(a replayed batch may count a recall twice; counts are a ranking signal, not a ledger).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, case, delete, or_, select, text, update

from core.errors import PermanentError
from core.memories.model import Priority
from core.memories.similarity import content_hash
from core.models import micros_to_datetime
from core.retention.policy import MEMORY_KINDS, NO_RETENTION, RetentionPolicy
from core.store.codec import expect_count, expect_text
from core.store.db import insert_for, memories, memory_lineage, memory_tombstones

REMEMBER = ("r", "1")
CHANGE = ("u", "1")
ACCESS = ("a", "1")


@dataclass(frozen=True, slots=True)
class RememberRow:
    memory_id: str
    tenant: str
    subject_id: str
    content: str
    priority: int
    pinned: bool
    tags: list[str]
    ttl_s: int | None
    provenance: dict[str, Any] | None
    created_at: datetime
    decay_s: int
    # Not a session's entry: nothing for the sessions' high water.
    session_id: str = ""
    seq: int = 0
    # Set when the drainer sealed ``content`` (core/log/sealing.py): the data key, and the
    # keyed hash of the plaintext (a plain sha-256 of short facts is dictionary-attackable).
    key_id: str | None = None
    content_hash: str | None = None


@dataclass(frozen=True, slots=True)
class ChangeRow:
    op: str  # "forget" | "set"
    memory_id: str
    tenant: str
    subject_id: str
    priority: int = 0
    pinned: bool = False
    decay_s: int = 0
    session_id: str = ""
    seq: int = 0


@dataclass(frozen=True, slots=True)
class AccessRow:
    tenant: str
    subject_id: str
    at: datetime
    accesses: list[tuple[str, int]]
    session_id: str = ""
    seq: int = 0


MemoryRow = RememberRow | ChangeRow | AccessRow


def _malformed(exc: Exception) -> PermanentError:
    return PermanentError(f"malformed WAL entry: {exc.__class__.__name__}: {exc}")


def _prefix(text: str) -> tuple[int, bool]:
    if len(text) != 2 or text[1] not in "01":
        raise ValueError(f"bad priority/pin {text[:8]!r}")
    return int(Priority(int(text[0]))), text[1] == "1"


def decode_remember(fields: dict[str, str]) -> RememberRow:
    try:
        record = json.loads(fields["d"])
        priority, pinned = _prefix(fields["p"])
        tags = record["tags"]
        if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
            raise TypeError("tags must be a list of strings")
        provenance = record.get("src")
        if provenance is not None and not isinstance(provenance, dict):
            raise TypeError("src must be an object")
        ttl = record.get("ttl")
        return RememberRow(
            memory_id=expect_text(record["id"]),
            tenant=expect_text(record["t"]),
            subject_id=expect_text(record["sub"]),
            content=expect_text(record["c"]),
            priority=priority,
            pinned=pinned,
            tags=tags,
            ttl_s=None if ttl is None else expect_count(ttl),
            provenance=provenance,
            created_at=micros_to_datetime(expect_count(record["ts"])),
            decay_s=expect_count(fields["e"]),
        )
    except (KeyError, ValueError, TypeError, OverflowError, OSError) as exc:
        raise _malformed(exc) from None


def decode_change(fields: dict[str, str]) -> ChangeRow:
    try:
        op = fields["o"]
        memory_id, tenant, subject_id = (
            expect_text(fields["i"]),
            expect_text(fields["t"]),
            fields["s"],
        )
        if op == "forget":
            return ChangeRow(op, memory_id, tenant, subject_id)
        if op != "set":
            raise ValueError(f"unknown change {op[:16]!r}")
        priority, pinned = _prefix(fields["p"])
        return ChangeRow(
            op, memory_id, tenant, subject_id, priority, pinned, expect_count(fields["e"])
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise _malformed(exc) from None


def decode_access(fields: dict[str, str]) -> AccessRow:
    try:
        pairs = json.loads(fields["d"])
        if not isinstance(pairs, list):
            raise TypeError("accesses must be a list")
        accesses = [(expect_text(pair[0]), expect_count(pair[1])) for pair in pairs]
        return AccessRow(
            tenant=expect_text(fields["t"]),
            subject_id=expect_text(fields["s"]),
            at=micros_to_datetime(expect_count(fields["ms"]) * 1000),
            accesses=accesses,
        )
    except (KeyError, IndexError, ValueError, TypeError, OverflowError, OSError) as exc:
        raise _malformed(exc) from None


DECODERS: dict[tuple[str, str], Callable[[dict[str, str]], MemoryRow]] = {
    REMEMBER: decode_remember,
    CHANGE: decode_change,
    ACCESS: decode_access,
}


def apply_memory_rows(
    connection: Connection, rows: Sequence[MemoryRow], *, policy: RetentionPolicy = NO_RETENTION
) -> int:
    """Apply ``rows`` in order; returns how many changed the store (a replayed remember
    inserts nothing and counts 0).

    ``expires_at`` is the earlier of the decay (last recall + decay) and the tenant's
    retention of the memory's priority counted from its creation (``policy``)."""
    changed = 0
    run: list[RememberRow] = []
    for row in rows:
        if isinstance(row, RememberRow):
            run.append(row)
            continue
        changed += _insert(connection, run, policy)
        run = []
        if isinstance(row, AccessRow):
            changed += _count_accesses(connection, row)
            _cap_retention(connection, row.tenant, [m for m, _ in row.accesses], policy)
        elif row.op == "set":
            changed += _set(connection, row, policy)
        else:
            changed += _forget(connection, row)
    return changed + _insert(connection, run, policy)


def subject_lock_key(tenant: str, subject_id: str) -> int:
    """The advisory lock of a subject's memories: drainers take it shared, erasure exclusive
    (a signed 64-bit int, as PostgreSQL wants it)."""
    digest = hashlib.sha256(f"{tenant}/{subject_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _not_erased(connection: Connection, rows: list[RememberRow]) -> list[RememberRow]:
    """``rows`` without the memories an erasure removed (``memory_tombstones``).

    On PostgreSQL the subjects' advisory locks are taken first (shared; erasure takes them
    exclusive), so a remember checked before an erasure commits is written before the
    erasure deletes, and one checked after it sees the tombstone: none comes back.
    """
    if connection.dialect.name == "postgresql":
        locks = sorted({subject_lock_key(row.tenant, row.subject_id) for row in rows})
        connection.execute(
            text("SELECT pg_advisory_xact_lock_shared(k) FROM unnest(CAST(:keys AS bigint[])) k"),
            {"keys": locks},
        )
    erased = set(
        connection.execute(
            select(memory_tombstones.c.memory_id).where(
                memory_tombstones.c.memory_id.in_([row.memory_id for row in rows])
            )
        ).scalars()
    )
    return [row for row in rows if row.memory_id not in erased]


def _expires(base: datetime, decay_s: int) -> datetime | None:
    return base + timedelta(seconds=decay_s) if decay_s else None


def _earlier(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else min(a, b)


def _retained(
    policy: RetentionPolicy, tenant: str, priority: int, created_at: datetime
) -> datetime | None:
    return policy.expires_at(tenant, policy.memory_kind(priority), created_at)


def _cap_retention(
    connection: Connection, tenant: str, ids: list[str], policy: RetentionPolicy
) -> None:
    """A recall moved the decay of ``ids`` later: keep it within their retention. Costs a
    statement only for a tenant with a finite retention of memories (none by default)."""
    if not ids or not any(policy.seconds(tenant, kind) for kind in MEMORY_KINDS):
        return
    found = connection.execute(
        select(
            memories.c.memory_id, memories.c.priority, memories.c.created_at, memories.c.expires_at
        ).where(memories.c.memory_id.in_(ids))
    ).all()
    for row in found:
        limit = _retained(policy, tenant, row.priority, row.created_at)
        capped = _earlier(row.expires_at, limit)
        if capped != row.expires_at:
            connection.execute(
                update(memories)
                .where(memories.c.memory_id == row.memory_id)
                .values(expires_at=capped)
            )


def _insert(connection: Connection, rows: list[RememberRow], policy: RetentionPolicy) -> int:
    if not rows:
        return 0
    rows = _not_erased(connection, rows)
    if not rows:
        return 0
    values = [
        {
            "memory_id": row.memory_id,
            "tenant": row.tenant,
            "subject_id": row.subject_id,
            "content": row.content,
            "content_hash": row.content_hash or content_hash(row.content),
            "key_id": row.key_id,
            "priority": row.priority,
            "pinned": row.pinned,
            "tags": row.tags,
            "provenance": row.provenance,
            "ttl_s": row.ttl_s,
            "access_count": 0,
            "created_at": row.created_at,
            "updated_at": row.created_at,
            "expires_at": _earlier(
                _expires(row.created_at, row.decay_s),
                _retained(policy, row.tenant, row.priority, row.created_at),
            ),
        }
        for row in rows
    ]
    statement = (
        insert_for(connection, memories)
        .on_conflict_do_nothing(index_elements=["memory_id"])
        .returning(memories.c.memory_id)
    )
    return len(connection.execute(statement, values).all())


def _set(connection: Connection, row: ChangeRow, policy: RetentionPolicy) -> int:
    found = connection.execute(
        select(memories.c.created_at, memories.c.last_accessed).where(
            memories.c.memory_id == row.memory_id
        )
    ).first()
    if found is None:
        return 0
    base = max(filter(None, (found.created_at, found.last_accessed)))
    result = connection.execute(
        update(memories)
        .where(memories.c.memory_id == row.memory_id)
        .values(
            priority=row.priority,
            pinned=row.pinned,
            # A new priority moves both the decay and the retention limit.
            expires_at=_earlier(
                _expires(base, row.decay_s),
                _retained(policy, row.tenant, row.priority, found.created_at),
            ),
            updated_at=datetime.now(base.tzinfo),
        )
    )
    return result.rowcount


def forget_closure(target: str, parent: dict[str, str | None]) -> tuple[set[str], set[str]]:
    """What forgetting ``target`` removes, and which memories come back.

    ``parent``: memory -> the memory it was merged into. Removed: the target, every memory
    above it (they hold its content) and everything below it (what it folded). Back: the other
    sources of the memories above it. The same rule as ``core/lua/memory_change.lua``.
    """
    doomed = {target}
    above: set[str] = set()
    cursor = parent.get(target)
    while cursor is not None and cursor not in doomed:
        above.add(cursor)
        doomed.add(cursor)
        cursor = parent.get(cursor)
    for memory_id in parent:
        walk: str | None = memory_id
        for _ in range(64):
            if walk is None:
                break
            if walk == target:
                doomed.add(memory_id)
                break
            walk = parent.get(walk)
    restored = {m for m, up in parent.items() if up in above and m not in doomed}
    return doomed, restored


def _forget(connection: Connection, row: ChangeRow) -> int:
    subject = connection.execute(
        select(memories.c.memory_id, memories.c.superseded_by).where(
            memories.c.tenant == row.tenant, memories.c.subject_id == row.subject_id
        )
    ).all()
    parent = {found.memory_id: found.superseded_by for found in subject}
    if row.memory_id not in parent:
        return 0
    doomed, restored = forget_closure(row.memory_id, parent)
    connection.execute(
        delete(memory_lineage).where(
            or_(memory_lineage.c.merged_id.in_(doomed), memory_lineage.c.source_id.in_(doomed))
        )
    )
    if restored:
        connection.execute(
            update(memories).where(memories.c.memory_id.in_(restored)).values(superseded_by=None)
        )
    return connection.execute(delete(memories).where(memories.c.memory_id.in_(doomed))).rowcount


def _count_accesses(connection: Connection, row: AccessRow) -> int:
    if not row.accesses:
        return 0
    newer = or_(memories.c.last_accessed.is_(None), memories.c.last_accessed < row.at)
    changed = 0
    for decay_s, ids in _by_decay(row.accesses):
        result = connection.execute(
            update(memories)
            .where(memories.c.memory_id.in_(ids))
            .values(
                access_count=memories.c.access_count + 1,
                last_accessed=case((newer, row.at), else_=memories.c.last_accessed),
                expires_at=case((newer, _expires(row.at, decay_s)), else_=memories.c.expires_at),
            )
        )
        changed += result.rowcount
    return changed


def _by_decay(accesses: Iterable[tuple[str, int]]) -> list[tuple[int, list[str]]]:
    grouped: dict[int, list[str]] = {}
    for memory_id, decay_s in accesses:
        grouped.setdefault(decay_s, []).append(memory_id)
    return sorted(grouped.items())
