"""A short Redis lease: one holder at a time, renewable, released only by its holder (a WAL
shard's drain, a subject's consolidation)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import redis
from redis.commands.core import Script


class Lease:
    """``SET key token NX PX ttl``; renew and release check the token (a Lua compare-and-act),
    so a holder whose lease already expired can never extend or delete its successor's."""

    def __init__(
        self,
        client: redis.Redis,
        script: Script,
        key: str,
        ttl_ms: int,
        *,
        token: str | None = None,
    ) -> None:
        """``script``: ``core/lua/lease.lua`` as registered (``Scripts.lease``); ``token``:
        who holds it (random unless given; beat's names its host and pid)."""
        self._redis = client
        self._script = script
        self.key = key
        self.ttl_ms = ttl_ms
        self.token = token or secrets.token_hex(8)

    def acquire(self) -> bool:
        return bool(self._redis.set(self.key, self.token, nx=True, px=self.ttl_ms))

    def renew(self) -> bool:
        return bool(self._script(keys=[self.key], args=[self.token, self.ttl_ms]))

    def release(self) -> None:
        self._script(keys=[self.key], args=[self.token, 0])


@contextmanager
def alone(lease: Lease) -> Iterator[bool]:
    """Hold ``lease`` for the block if nobody else does: yields whether we got it, and
    releases it (only if still ours) on the way out. For a periodic task that must not run
    twice at once: ``with alone(lease) as mine: if not mine: skip``."""
    mine = lease.acquire()
    try:
        yield mine
    finally:
        if mine:
            lease.release()
