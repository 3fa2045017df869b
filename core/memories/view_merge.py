"""Consolidation's Redis side: the subject lease, the "is the newest change durable?" check,
the view values of stored memories, and the compare-and-set scripts that make the view follow
a merge (``core/lua/memory_merge.lua``, ``memory_unmerge.lua``).

A cold view is warmed by ``core.memories.view.warm`` first, so the view always exists while a
merge runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis
from redis.commands.core import Script

from core.memories import records
from core.memories.lineage import MergedMemory, StoredMemory
from core.store.keys import CONSUMER_GROUP, SubjectKeys
from core.store.scripts import lua_source


def _ms(when: Any) -> int | None:
    return int(when.timestamp() * 1000) if when is not None else None


def stored_record(memory: StoredMemory) -> str:
    """The JSON record of a stored memory, as a warm-up writes it."""
    return records.encode_record(
        memory_id=memory.memory_id,
        tenant=memory.tenant,
        subject_id=memory.subject_id,
        content=memory.content,
        tags=memory.tags,
        created_us=int(memory.created_at.timestamp() * 1_000_000),
        ttl_s=memory.ttl_s,
        provenance=memory.provenance,
        last_accessed_ms=_ms(memory.last_accessed),
        access_count=memory.access_count,
        merged_from=memory.merged_from,
    )


def stored_value(memory: StoredMemory) -> str:
    """The view value of a stored memory: live, or superseded by the memory named."""
    live = records.live_value(memory.priority, memory.pinned, stored_record(memory))
    if memory.superseded_by:
        return f"{records.SUPERSEDED}{memory.superseded_by}|{live}"
    return live


def merged_value(merged: MergedMemory) -> str:
    record = records.encode_record(
        memory_id=merged.memory_id,
        tenant=merged.sources[0].tenant,
        subject_id=merged.sources[0].subject_id,
        content=merged.content,
        tags=merged.tags,
        created_us=int(merged.created_at.timestamp() * 1_000_000),
        ttl_s=merged.ttl_s,
        provenance=merged.provenance,
        last_accessed_ms=_ms(merged.last_accessed),
        access_count=merged.access_count,
        merged_from=merged.source_ids,
    )
    return records.live_value(merged.priority, False, record)


def _stream_id(value: str) -> tuple[int, int]:
    ms, _, seq = value.partition("-")
    return int(ms), int(seq or 0)


def newest_change(client: redis.Redis, keys: SubjectKeys) -> tuple[bool, str]:
    """(whether the view is complete, its "^": the WAL id of the newest change, or "")."""
    complete, newest = client.hmget(keys.memories, [records.COMPLETE, records.NEWEST_CHANGE])
    return complete is not None, str(newest or "")


def is_durable(client: redis.Redis, keys: SubjectKeys, entry_id: str) -> bool:
    """Whether the WAL entry ``entry_id`` (and so every change before it) is in the durable
    store: the drainers' group has delivered past it and nothing at or before it is pending."""
    if not entry_id:
        return True
    wanted = _stream_id(entry_id)
    try:
        groups = client.xinfo_groups(keys.wal)
    except redis.ResponseError:
        return False  # no WAL yet: the entry cannot have been drained
    group = next((g for g in groups if g.get("name") == CONSUMER_GROUP), None)
    if group is None or _stream_id(str(group["last-delivered-id"])) < wanted:
        return False
    pending = client.xpending(keys.wal, CONSUMER_GROUP)
    if not pending or not pending.get("pending"):
        return True
    return _stream_id(str(pending["min"])) > wanted


@dataclass(frozen=True, slots=True)
class ViewScripts:
    memory_merge: Script
    memory_unmerge: Script
    lease: Script

    @classmethod
    def register(cls, client: redis.Redis) -> ViewScripts:
        return cls(
            memory_merge=client.register_script(lua_source("memory_merge")),
            memory_unmerge=client.register_script(lua_source("memory_unmerge")),
            lease=client.register_script(lua_source("lease")),
        )

    def merge(
        self,
        keys: SubjectKeys,
        *,
        newest: str,
        merged: MergedMemory,
        expected: Sequence[tuple[str, str]],
    ) -> int:
        args = [newest, merged.memory_id, merged_value(merged)]
        for memory_id, value in expected:
            args += [memory_id, value]
        return int(self.memory_merge(keys=[keys.memories], args=args))

    def unmerge(
        self,
        keys: SubjectKeys,
        *,
        merged_id: str,
        require_live: bool,
        becomes: str,
        sources: Sequence[StoredMemory],
    ) -> int:
        args = [merged_id, "live" if require_live else "", becomes]
        for source in sources:
            live = records.live_value(source.priority, source.pinned, stored_record(source))
            args += [source.memory_id, live]
        return int(self.memory_unmerge(keys=[keys.memories], args=args))
