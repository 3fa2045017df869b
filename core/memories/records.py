"""How a memory travels: the JSON record ``remember`` builds once, and the values of a
subject's Redis view (``SubjectKeys.memories``).

View values (the Lua scripts read only the prefix, never the JSON):

- live:        ``"<priority><pinned>|<json>"``, e.g. ``"20|{...}"`` (MEDIUM, not pinned)
- forgotten:   ``"-"``
- superseded:  ``"><merged id>|<the live value it had>"`` (kept so unconsolidate and a forget
  that races a merge can restore or drop it, and so a re-used id stays a duplicate)
- field ``"~"``: the view is complete (warmed from the store or created empty);
  field ``"^"``: the WAL entry id of the subject's newest remember/forget/pin/priority change
  (consolidation waits until it is durable).

The JSON record: ``id``, ``t`` tenant, ``sub`` subject, ``c`` content, ``tags``, ``ts``
created (µs), ``ttl`` the memory's own decay (s, or null), ``src`` provenance (or null); a
record warmed from the store adds ``la`` last accessed (ms), ``ac`` access count and ``mf``
the ids it was merged from.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from config.settings import Settings
from core.memories.model import Memory, Priority
from core.models import micros_to_datetime

COMPLETE = "~"
NEWEST_CHANGE = "^"
FORGOTTEN = "-"
SUPERSEDED = ">"


def encode_record(
    *,
    memory_id: str,
    tenant: str,
    subject_id: str,
    content: str,
    tags: tuple[str, ...],
    created_us: int,
    ttl_s: int | None,
    provenance: Mapping[str, Any] | None,
    last_accessed_ms: int | None = None,
    access_count: int = 0,
    merged_from: tuple[str, ...] = (),
) -> str:
    record: dict[str, Any] = {
        "id": memory_id,
        "t": tenant,
        "sub": subject_id,
        "c": content,
        "tags": list(tags),
        "ts": created_us,
        "ttl": ttl_s,
        "src": dict(provenance) if provenance is not None else None,
    }
    if last_accessed_ms:
        record["la"] = last_accessed_ms
    if access_count:
        record["ac"] = access_count
    if merged_from:
        record["mf"] = list(merged_from)
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


def prefix(priority: Priority, pinned: bool) -> str:
    return f"{int(priority)}{int(pinned)}"


def live_value(priority: Priority, pinned: bool, record: str) -> str:
    return f"{prefix(priority, pinned)}|{record}"


@dataclass(frozen=True, slots=True, eq=False)
class ViewEntry:
    """One live memory as the Redis view holds it (hashed by identity: ``parse_live`` hands
    out one object per value)."""

    memory_id: str
    priority: Priority
    pinned: bool
    record: dict[str, Any]
    value: str  # the raw view value, for compare-and-set scripts

    def to_memory(self, *, last_accessed_ms: int | None, score: float = 0.0) -> Memory:
        record = self.record
        accessed = max(last_accessed_ms or 0, int(record.get("la") or 0))
        return Memory(
            memory_id=self.memory_id,
            content=record["c"],
            priority=self.priority.name,
            tags=tuple(record.get("tags") or ()),
            subject_id=record["sub"],
            tenant=record["t"],
            pinned=self.pinned,
            created_at=micros_to_datetime(int(record["ts"])),
            last_accessed=micros_to_datetime(accessed * 1000) if accessed else None,
            access_count=int(record.get("ac") or 0),
            ttl_s=record.get("ttl"),
            provenance=record.get("src"),
            score=score,
            merged_from=tuple(record.get("mf") or ()),
        )


@lru_cache(maxsize=131_072)
def parse_live(memory_id: str, value: str) -> ViewEntry | None:
    """The live memory a view value holds, or None (forgotten, superseded, a marker).

    Cached: a recall reads the same values again and again, and decoding a subject's JSON
    records was most of a recall's time. A changed memory is a new value, so a new entry."""
    if len(value) < 4 or value[2] != "|" or not value[0].isdigit():
        return None
    return ViewEntry(
        memory_id=memory_id,
        priority=Priority(int(value[0])),
        pinned=value[1] == "1",
        record=json.loads(value[3:]),
        value=value,
    )


def decay_s(settings: Settings, priority: Priority) -> int:
    """The default decay of a priority (0: never)."""
    if priority is Priority.LOW:
        return settings.memory_ttl_low_s
    if priority is Priority.MEDIUM:
        return settings.memory_ttl_medium_s
    if priority is Priority.HIGH:
        return settings.memory_ttl_high_s
    return settings.memory_ttl_critical_s


def effective_ttl_s(settings: Settings, priority: Priority, pinned: bool, own: int | None) -> int:
    """Seconds a memory lives after its last recall (or creation); 0 = it never decays.
    Pinned memories never decay; a memory's own ``ttl_s`` beats its priority's default."""
    if pinned:
        return 0
    return own if own is not None else decay_s(settings, priority)
