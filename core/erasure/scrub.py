"""Erased data still inside Redis streams: the WALs (entries not yet drained, and drained but
not yet trimmed) and the dead letters (which hold message content).

Each entry is sorted by the drainer's own decoders (``core/log/entries.py``) and matched
against what an erasure removed: a session's floors, or a tombstoned memory id. The erasure job
deletes the matches (XDEL); verify only counts them. Entries are read raw in pages of
``PAGE``, never with a pattern.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import redis

from core.log.entries import Known, sort_entry
from core.log.repository import MessageRow
from core.memories.wal import AccessRow, ChangeRow, RememberRow
from core.state.wal import ResultRow, StatePatchRow
from core.store.connections import as_text, raw_command
from core.store.keys import Keys

PAGE = 1000


@dataclass(frozen=True, slots=True)
class Floors:
    seq: int
    state: int
    results: int


@dataclass(slots=True)
class Erased:
    """What one or more erasures removed: floors per session, and memory ids."""

    sessions: dict[tuple[str, str], Floors] = field(default_factory=dict)
    memory_ids: set[str] = field(default_factory=set)
    # Single messages (delete_message).
    message_ids: set[str] = field(default_factory=set)

    def matches(self, known: Known) -> bool:
        row = known.row
        if isinstance(row, MessageRow) and row.message_id in self.message_ids:
            return True
        if isinstance(row, MessageRow | StatePatchRow | ResultRow):
            floors = self.sessions.get((row.tenant, row.session_id))
            if floors is None:
                return False
            if isinstance(row, MessageRow):
                return row.seq <= floors.seq
            if isinstance(row, StatePatchRow):
                return row.version <= floors.state
            return row.position <= floors.results
        if isinstance(row, RememberRow | ChangeRow):
            return row.memory_id in self.memory_ids
        if isinstance(row, AccessRow):
            return any(memory_id in self.memory_ids for memory_id, _ in row.accesses)
        return False


def _entries(client: redis.Redis, stream: str) -> Iterator[tuple[str, dict[bytes, bytes]]]:
    start = "-"
    while True:
        page = raw_command(client, "XRANGE", stream, start, "+", "COUNT", PAGE)
        if not page:
            return
        for entry_id, raw in page:
            fields = raw if isinstance(raw, dict) else dict(zip(raw[::2], raw[1::2], strict=True))
            yield as_text(entry_id), fields
        last = as_text(page[-1][0])
        milliseconds, sequence = last.split("-")
        start = f"{milliseconds}-{int(sequence) + 1}"
        if len(page) < PAGE:
            return


def known_entries(client: redis.Redis, stream: str) -> Iterator[tuple[str, Known]]:
    """The entries of ``stream`` this worker can decode, oldest first."""
    for entry_id, raw in _entries(client, stream):
        sorted_entry = sort_entry(raw)
        if isinstance(sorted_entry, Known):
            yield entry_id, sorted_entry


def find(client: redis.Redis, stream: str, erased: Erased) -> list[str]:
    """Ids of the entries of ``stream`` that hold erased data."""
    return [entry_id for entry_id, known in known_entries(client, stream) if erased.matches(known)]


def streams(keys: Keys) -> list[tuple[str, str]]:
    """(store name, stream key) of every WAL and WAL dead-letter stream."""
    return [("wal", keys.wal(shard)) for shard in range(keys.shards)] + [
        ("dead_letters", keys.dead_letters(shard)) for shard in range(keys.shards)
    ]


def scrub(client: redis.Redis, keys: Keys, erased: Erased, *, delete: bool) -> dict[str, int]:
    """Per store ("wal", "dead_letters"): entries holding erased data (deleted when
    ``delete``). An XDELed WAL entry still pending is dropped from its group by the next
    XAUTOCLAIM (Redis 7); the drainer skips it, and its data never reaches the store."""
    counts = {"wal": 0, "dead_letters": 0}
    for store, stream in streams(keys):
        found = find(client, stream, erased)
        if found and delete:
            for start in range(0, len(found), PAGE):
                client.xdel(stream, *found[start : start + PAGE])
        counts[store] += len(found)
    return counts
