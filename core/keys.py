"""Every Redis key shape memscribe uses, in one place.

A session's keys and its shard's write-ahead stream share one hash tag, ``{<shard>}``, so each
Lua script touches a single slot and Redis Cluster works unchanged.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

CONSUMER_GROUP = "persist"


def shard_of(tenant: str, session_id: str, shards: int) -> int:
    """The WAL shard of a session: stable across processes and languages (CRC-32)."""
    return zlib.crc32(f"{tenant}/{session_id}".encode()) % shards


@dataclass(frozen=True, slots=True)
class SessionKeys:
    shard: int
    meta: str
    buffer: str
    recent_ids: str
    wal: str

    def all(self) -> list[str]:
        return [self.meta, self.buffer, self.recent_ids, self.wal]


@dataclass(frozen=True, slots=True)
class Keys:
    """Key builder for one deployment (prefix and shard count)."""

    prefix: str
    shards: int

    def tag(self, shard: int) -> str:
        return f"{self.prefix}:{{{shard}}}"

    def session(self, tenant: str, session_id: str) -> SessionKeys:
        # tenant and session_id are validated to a charset without ':' '{' '}' or glob
        # characters, so these keys can neither collide nor be matched by another session.
        shard = shard_of(tenant, session_id, self.shards)
        base = f"{self.tag(shard)}:s:{tenant}:{session_id}"
        return SessionKeys(
            shard=shard,
            meta=f"{base}:meta",
            buffer=f"{base}:buf",
            recent_ids=f"{base}:ids",
            wal=self.wal(shard),
        )

    def wal(self, shard: int) -> str:
        return f"{self.tag(shard)}:wal"

    def lease(self, shard: int) -> str:
        return f"{self.tag(shard)}:lease"

    def dead_letters(self, shard: int) -> str:
        return f"{self.tag(shard)}:dead"

    def failing(self, shard: int) -> str:
        """Hash: WAL entry id -> when it was first found failing (for dead-letter records)."""
        return f"{self.tag(shard)}:failing"

    def task_dead_letters(self) -> str:
        return f"{self.prefix}:dead:tasks"

    def backoff(self, name: str) -> str:
        return f"{self.prefix}:backoff:{name}"

    def all_wals(self) -> list[str]:
        return [self.wal(shard) for shard in range(self.shards)]
