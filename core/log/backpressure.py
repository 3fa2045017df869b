"""The drain side of backpressure: giving back what drained, and flagging a Redis that is full.

append.lua refuses work (``BackpressureError``) before Redis itself would: past a shard's WAL
backlog limit, past a tenant's quota of not-yet-durable bytes, or while this module's memory
flag is up. The drainer settles every durable batch in the script that acks it (the high
water of each session and each tenant's bytes go down, ``settle_args``), and calls
``MemoryGuard.check`` at most once a second.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import redis

from core.store.keys import Keys

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Drained:
    """One entry that left the WAL for good (persisted, replayed or dead-lettered)."""

    tenant: str
    session_id: str
    seq: int
    body_bytes: int
    # A remembered memory's id: it leaves the shard's index of memories not yet durable.
    memory_id: str = ""
    # A state patch: "<tenant>/<session_id>" and its version, for the state high water.
    state_member: str = ""
    state_version: int = 0


def settle_args(
    keys: Keys, shard: int, drained: Iterable[Drained]
) -> tuple[list[str], list[str | int]]:
    """The keys and arguments with which ``ack_trim.lua`` settles a batch after its ack: the
    high water of sessions whose newest entry drained, tenants' bytes, durable memory ids.
    Empty when there is nothing to settle."""
    highest: dict[str, int] = {}
    states: dict[str, int] = {}
    held: dict[str, int] = {}
    memory_ids: list[str] = []
    for entry in drained:
        if entry.session_id:
            member = f"{entry.tenant}/{entry.session_id}"
            highest[member] = max(highest.get(member, 0), entry.seq)
        if entry.memory_id:
            memory_ids.append(entry.memory_id)
        if entry.state_member:
            states[entry.state_member] = max(states.get(entry.state_member, 0), entry.state_version)
        held[entry.tenant] = held.get(entry.tenant, 0) + entry.body_bytes
    if not held:
        return [], []
    args: list[str | int] = [len(highest), len(held), len(memory_ids)]
    for member, seq in highest.items():
        args += [member, seq]
    for tenant, size in held.items():
        args += [tenant, size]
    args += memory_ids
    for member, version in states.items():
        args += [member, version]
    settle_keys = [
        keys.high_water(shard),
        keys.tenant_bytes(shard),
        keys.pending_memory_ids(shard),
        keys.state_high_water(shard),
    ]
    return settle_keys, args


def _memory_ratio(client: redis.Redis) -> float:
    """used_memory / maxmemory of the fullest server (0 when no maxmemory is set)."""
    reply: Any = client.info("memory")
    # A cluster client answers per node: {node: info}; a plain one answers with one info.
    infos = list(reply.values()) if "used_memory" not in reply else [reply]
    ratios = [
        int(info["used_memory"]) / int(info["maxmemory"])
        for info in infos
        if isinstance(info, dict) and int(info.get("maxmemory", 0))
    ]
    return max(ratios, default=0.0)


class MemoryGuard:
    """Raises every shard's pressure flag while Redis is fuller than ``high_ratio``."""

    def __init__(
        self, client: redis.Redis, keys: Keys, *, high_ratio: float, every_s: float = 1.0
    ) -> None:
        self._redis = client
        self._keys = keys
        self._high = high_ratio
        self._every_s = every_s
        self._next = 0.0
        self.flagged = False

    def check(self) -> bool:
        """Look at Redis memory if the last look is older than ``every_s``; True when full."""
        now = time.monotonic()
        if now < self._next:
            return self.flagged
        self._next = now + self._every_s
        ratio = _memory_ratio(self._redis)
        full = ratio >= self._high
        if full or self.flagged:
            # The flags expire on their own, so a drainer that dies never leaves them up.
            ttl_ms = int(self._every_s * 5000)
            with self._redis.pipeline(transaction=False) as pipe:
                for shard in range(self._keys.shards):
                    if full:
                        pipe.set(self._keys.pressure(shard), f"{ratio:.3f}", px=ttl_ms)
                    else:
                        pipe.delete(self._keys.pressure(shard))
                pipe.execute()
        if full != self.flagged:
            log.warning(
                "Redis memory at %.0f%% of maxmemory: appends %s",
                ratio * 100,
                "refused until it drains" if full else "accepted again",
            )
        self.flagged = full
        return full
