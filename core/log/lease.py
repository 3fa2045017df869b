"""A short Redis lease: one holder at a time, renewable, released only by its holder."""

from __future__ import annotations

import secrets

import redis

from core.store.scripts import Scripts


class Lease:
    """``SET key token NX PX ttl``; renew and release check the token (a Lua compare-and-act),
    so a holder whose lease already expired can never extend or delete its successor's."""

    def __init__(self, client: redis.Redis, scripts: Scripts, key: str, ttl_ms: int) -> None:
        self._redis = client
        self._scripts = scripts
        self.key = key
        self.ttl_ms = ttl_ms
        self.token = secrets.token_hex(8)

    def acquire(self) -> bool:
        return bool(self._redis.set(self.key, self.token, nx=True, px=self.ttl_ms))

    def renew(self) -> bool:
        return bool(self._scripts.lease(keys=[self.key], args=[self.token, self.ttl_ms]))

    def release(self) -> None:
        self._scripts.lease(keys=[self.key], args=[self.token, 0])
