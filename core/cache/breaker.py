"""A circuit breaker on the cache's Redis: closed, open, half-open.

- closed: every call goes to Redis; ``failures`` consecutive connection failures or timeouts
  open it (any success resets the count; other errors, e.g. a WRONGTYPE, are not outages).
- open: calls fail fast with ``CircuitOpenError`` (a ``TransientError``) without touching the
  socket, so nothing blocks on a dead Redis. After ``cooldown_s`` the breaker is half-open.
- half-open: one call at a time is let through as the probe; its success closes the breaker,
  its failure opens it for another cooldown.

``call`` runs a sync round trip, ``acall`` a ``redis.asyncio`` one: one breaker per Redis,
whichever client a process uses.

Nothing runs in the background: the probe is the next call (``Cache.get`` while degraded, or
``Breaker.probe``). ``cooldown_s`` is capped at 4 s in the settings, so a breaker whose owner
keeps reading closes within 5 s of Redis answering again.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Literal, TypeVar

import redis

from core.errors import TransientError
from core.store.redis_errors import translate

State = Literal["closed", "open", "half_open"]
T = TypeVar("T")

# The failures that mean "Redis is not there"; anything else is the caller's problem.
OUTAGES = (redis.ConnectionError, redis.TimeoutError, ConnectionError, TimeoutError)


class CircuitOpenError(TransientError):
    """The breaker is open: Redis was not asked (it failed too often just now)."""


class Breaker:
    """Counts consecutive Redis outages and stops calling Redis while they last."""

    def __init__(
        self,
        *,
        failures: int,
        cooldown_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failures = failures
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._lock = threading.Lock()
        self._consecutive = 0
        self._opened_at: float | None = None
        self._probing = False
        self.opened_count = 0

    @property
    def state(self) -> State:
        with self._lock:
            return self._state()

    def _state(self) -> State:
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at >= self.cooldown_s:
            return "half_open"
        return "open"

    def reset(self) -> None:
        """Close the breaker and forget the failures (an operator who knows Redis is back)."""
        with self._lock:
            self._consecutive = 0
            self._opened_at = None
            self._probing = False

    def call(self, operation: Callable[[], T]) -> T:
        """Run ``operation`` (one Redis round trip) through the breaker. Raises
        ``CircuitOpenError`` while open, ``TransientError`` for an outage, and lets any other
        error through untouched."""
        probing = self._admit()
        try:
            result = operation()
        except OUTAGES as exc:
            raise self._outage(exc) from None
        except BaseException:
            if probing:  # not an outage: the probe reached Redis
                self._succeeded()
            raise
        self._succeeded()
        return result

    async def acall(self, operation: Callable[[], Awaitable[T]]) -> T:
        """``call`` for a coroutine (a ``redis.asyncio`` round trip): the same states and
        counts, so a process's sync and async clients of one Redis share one breaker."""
        probing = self._admit()
        try:
            result = await operation()
        except OUTAGES as exc:
            raise self._outage(exc) from None
        except asyncio.CancelledError:
            # A cancelled probe learned nothing; free the probe slot, or half-open would
            # refuse every later call.
            if probing:
                with self._lock:
                    self._probing = False
            raise
        except BaseException:
            if probing:
                self._succeeded()
            raise
        self._succeeded()
        return result

    def _admit(self) -> bool:
        """Raise ``CircuitOpenError`` unless a call may go to Redis; True for the probe."""
        with self._lock:
            state = self._state()
            if state == "open" or (state == "half_open" and self._probing):
                raise CircuitOpenError("Redis circuit is open: the cache's Redis level is off")
            probing = state == "half_open"
            self._probing = probing
            return probing

    def _outage(self, exc: BaseException) -> Exception:
        self._failed()
        if isinstance(exc, redis.RedisError):
            return translate(exc)
        return TransientError(f"Redis unavailable: {exc}")

    def probe(self, ping: Callable[[], object]) -> State:
        """Try ``ping`` when half-open (a no-op otherwise); the state afterwards."""
        if self.state == "half_open":
            with contextlib.suppress(TransientError):
                self.call(ping)
        return self.state

    def _failed(self) -> None:
        with self._lock:
            self._probing = False
            self._consecutive += 1
            if self._opened_at is not None or self._consecutive >= self.failures:
                if self._opened_at is None:
                    self.opened_count += 1
                # Open again from now: a failed probe restarts the cooldown.
                self._opened_at = self._clock()

    def _succeeded(self) -> None:
        with self._lock:
            self._probing = False
            self._consecutive = 0
            self._opened_at = None
