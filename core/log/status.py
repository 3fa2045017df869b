"""Every WAL shard's backlog, read without ever decoding an entry's fields.

``XINFO STREAM`` also returns the first and last entries; their bytes are not always text (a
malformed entry is still in the stream until the drainer dead-letters it), so the reply is
read raw and only the counters and ids are decoded.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis

from core.store.connections import as_text, is_cluster, raw_command
from core.store.keys import CONSUMER_GROUP, Keys


@dataclass(frozen=True)
class ShardStatus:
    shard: int
    length: int
    pending: int
    undelivered: int
    oldest_pending_age_s: float | None
    dead_letters: int

    @property
    def backlog(self) -> int:
        return self.pending + self.undelivered


def id_ms(entry_id: str) -> int:
    return int(entry_id.split("-", 1)[0])


def shard_status(client: redis.Redis, keys: Keys) -> list[ShardStatus]:
    """Every shard's backlog, read in one pipelined round trip."""
    with client.pipeline(transaction=False) as pipe:
        for shard in range(keys.shards):
            wal = keys.wal(shard)
            raw_command(pipe, "XINFO STREAM", wal)
            pipe.xinfo_groups(wal)
            pipe.xpending(wal, CONSUMER_GROUP)
            pipe.xlen(keys.dead_letters(shard))
        replies = pipe.execute(raise_on_error=False)
    now_ms = time.time() * 1000
    result = []
    for shard in range(keys.shards):
        stream, groups, pending, dead = replies[shard * 4 : shard * 4 + 4]
        if isinstance(stream, Exception):  # no stream yet
            result.append(ShardStatus(shard, 0, 0, 0, None, _int(dead)))
            continue
        length = int(stream["length"])
        group = (
            next((g for g in groups if g["name"] == CONSUMER_GROUP), None)
            if not isinstance(groups, Exception)
            else None
        )
        if group is None:
            result.append(ShardStatus(shard, length, 0, length, None, _int(dead)))
            continue
        if group["last-delivered-id"] == as_text(stream["last-generated-id"]):
            undelivered = 0
        elif group.get("lag") is not None:
            undelivered = int(group["lag"])
        else:
            undelivered = max(1, int(stream["entries-added"]) - int(group["entries-read"] or 0))
        pending_count = 0 if isinstance(pending, Exception) else int(pending["pending"])
        oldest = None
        if pending_count:
            oldest = max(0.0, (now_ms - id_ms(pending["min"])) / 1000)
        result.append(ShardStatus(shard, length, pending_count, undelivered, oldest, _int(dead)))
    return result


def _int(value: object) -> int:
    return 0 if isinstance(value, Exception) else int(value)  # type: ignore[call-overload]


def busy_shards(client: redis.Redis, keys: Keys) -> tuple[list[int], dict[str, str]]:
    """The shards with entries to drain, in one pipelined ``XINFO GROUPS`` per shard (a third
    of ``shard_status``: the idle check runs many times a second). Also returns, for an idle
    wait, each quiet WAL's position (the group's last-delivered id)."""
    with client.pipeline(transaction=False) as pipe:
        for shard in range(keys.shards):
            pipe.xinfo_groups(keys.wal(shard))
        replies = pipe.execute(raise_on_error=False)
    busy: list[int] = []
    positions: dict[str, str] = {}
    for shard, groups in enumerate(replies):
        wal = keys.wal(shard)
        if isinstance(groups, Exception):  # no stream yet: wait from its beginning
            positions[wal] = "0-0"
            continue
        group = next((g for g in groups if g["name"] == CONSUMER_GROUP), None)
        # No group yet, or a lag Redis cannot compute: look closer by draining.
        if group is None or group.get("lag") is None or group["lag"] or group["pending"]:
            busy.append(shard)
        else:
            positions[wal] = group["last-delivered-id"]
    return busy, positions


def wait_for_entries(client: redis.Redis, positions: dict[str, str], *, timeout_s: float) -> None:
    """Block until any WAL gets an entry past its position, or ``timeout_s`` passes: one
    command while idle instead of polling every shard. Reads nothing for any consumer group.
    A cluster cannot block across slots, so there it simply sleeps."""
    if timeout_s <= 0:
        return
    if is_cluster(client) or not positions:
        time.sleep(timeout_s)
        return
    streams = list(positions)
    block_ms = max(1, int(timeout_s * 1000))
    raw_command(
        client,
        "XREAD",
        "COUNT",
        1,
        "BLOCK",
        block_ms,
        "STREAMS",
        *streams,
        *(positions[wal] for wal in streams),
    )
