"""A short Redis lease: one holder at a time, renewable, released only by its holder (a WAL
shard's drain, a subject's consolidation)."""

from __future__ import annotations

import secrets

import redis
from redis.commands.core import Script


class Lease:
    """``SET key token NX PX ttl``; renew and release check the token (a Lua compare-and-act),
    so a holder whose lease already expired can never extend or delete its successor's."""

    def __init__(self, client: redis.Redis, script: Script, key: str, ttl_ms: int) -> None:
        """``script``: ``core/lua/lease.lua`` as registered (``Scripts.lease``)."""
        self._redis = client
        self._script = script
        self.key = key
        self.ttl_ms = ttl_ms
        self.token = secrets.token_hex(8)

    def acquire(self) -> bool:
        return bool(self._redis.set(self.key, self.token, nx=True, px=self.ttl_ms))

    def renew(self) -> bool:
        return bool(self._script(keys=[self.key], args=[self.token, self.ttl_ms]))

    def release(self) -> None:
        self._script(keys=[self.key], args=[self.token, 0])
