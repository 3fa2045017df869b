"""Beat that fails over: any number of ``celery beat`` processes, exactly one of them sending.

``LeaderScheduler`` (``beat_scheduler = "worker.leader:LeaderScheduler"``) is Celery's
in-memory scheduler behind two Redis guards:

- **The leader lock** ``<prefix>:beat:leader``: a ``Lease`` holding the owner token
  ``host:pid:random``, taken with ``SET NX PX`` and renewed with ``lease.lua``, which
  compares the token before it extends (RedBeat extended its lock without that check and two
  beats ended up sending, sibson/redbeat#127). Ticks renew it (at most once a second); a tick
  never sleeps longer than a third of the TTL. A beat that does not hold the lock sends
  nothing and tries to take it each tick, so a standby takes over within TTL + TTL/3 of the
  active beat's death (13.3 s with the default 10 s). A leader whose renewal fails stops
  sending at once.
- **The slot claim** ``<prefix>:beat:slot:<entry>:<floor(now / interval)>`` (``SET NX PX``,
  2 x interval, the clock being Redis's): an interval entry is sent only by the beat that
  claims its slot. The lock alone cannot stop a new leader's first tick from repeating the
  old leader's last send (the two heaps do not share their last-run times); the claim does, so
  every periodic task keeps its rate however many beats run and however often they fail over.

Each send is noted in the capped stream ``<prefix>:beat:sends`` (entry, slot, owner) for
operators and the failover test.
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import socket
import time
from typing import Any

import redis
from celery.beat import ScheduleEntry, Scheduler
from celery.schedules import schedule as interval_schedule

from config.settings import Settings
from core.store.keys import Keys
from core.store.lease import Lease
from core.store.scripts import lua_source
from worker.runtime import runtime

log = logging.getLogger("memscribe.beat")

# The send log keeps about this many sends (a day of 1 s flush ticks is 86,400: this is a
# window for looking back minutes, not an audit trail).
SENDS_KEPT = 10_000


def owner_token() -> str:
    """Who holds the lock: ``host:pid:random`` (the random part tells a restarted pid apart)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def owner_pid(token: str) -> int:
    """The pid in an owner token."""
    return int(token.rsplit(":", 2)[1])


def beat_owner(client: redis.Redis, settings: Settings) -> str | None:
    """The token of the beat that sends now, or None when no beat holds the lock."""
    value = client.get(Keys.of(settings).beat_leader())
    if isinstance(value, bytes):
        return value.decode()
    return None if value is None else str(value)


class LeaderScheduler(Scheduler):  # type: ignore[misc]
    """Celery's in-memory scheduler that sends only while it holds the leader lock, and each
    interval entry at most once per slot."""

    max_interval: float  # Celery's longest sleep between ticks (capped at TTL/3 below)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        current = runtime()
        self._redis = current.redis
        self._keys = current.keys
        ttl_s = current.settings.beat_lock_ttl_s
        self.renew_every_s = ttl_s / 3
        script = self._redis.register_script(lua_source("lease"))
        self._script = script
        self.lock = Lease(
            self._redis, script, self._keys.beat_leader(), int(ttl_s * 1000), token=owner_token()
        )
        # Renew at most this often (every tick would be two EVALSHA a second at a 0.5 s flush
        # interval) and at least every TTL/3 (ticks never sleep longer).
        self.renew_gap_s = min(1.0, self.renew_every_s / 3)
        self._renewed_at = -math.inf
        self.leading = False
        self._said = ""
        super().__init__(*args, **kwargs)
        self.max_interval = min(self.max_interval, self.renew_every_s)

    def tick(self, *args: Any, **kwargs: Any) -> float:
        """Renew (or take) the lock, then run Celery's tick only if we hold it; never sleep
        past the next renewal."""
        if not self._hold():
            return self.renew_every_s
        return float(min(super().tick(*args, **kwargs), self.renew_every_s))

    def _hold(self) -> bool:
        now = time.monotonic()
        if self.leading and now - self._renewed_at < self.renew_gap_s:
            return True  # renewed under a second ago: the lock is ours for most of its TTL
        try:
            if self.leading:
                if self.lock.renew():
                    self._renewed_at = now
                    return True
                # Expired (a pause longer than the TTL) or taken: either way another beat may
                # be sending now, so nothing more goes out until we hold the lock again.
                self.leading = False
                log.error("beat %s lost the leader lock: it stops sending", self.lock.token)
            # renew(): after a Redis outage the lock may still hold our own token.
            if self.lock.renew() or self.lock.acquire():
                self.leading = True
                self._renewed_at = now
                self._say("leading", "beat %s holds the leader lock: it sends", self.lock.token)
                return True
            self._say("standby", "beat %s is standby: another beat holds the lock", self.lock.token)
            return False
        except redis.RedisError as exc:
            if self.leading:
                log.error("beat %s cannot renew its lock, stops sending: %s", self.lock.token, exc)
            self.leading = False
            self._say("redis", "beat cannot reach Redis for its leader lock: %s", exc)
            return False

    def _say(self, kind: str, message: str, *args: object) -> None:
        """Log a change of role, not every tick in it."""
        if kind != self._said:
            log.warning(message, *args)
        self._said = kind

    def apply_entry(self, entry: ScheduleEntry, producer: Any = None) -> None:
        """Send ``entry`` if its slot is ours (claimed now), and note the send."""
        if not self.leading:
            return
        try:
            slot = self._claim(entry)
        except redis.RedisError as exc:
            log.error("not sending %s: cannot claim its slot: %s", entry.name, exc)
            return
        if slot is False:
            log.info("%s: this slot was already sent (by another beat); skipped", entry.name)
            return
        log.info("Scheduler: Sending due task %s (%s)", entry.name, entry.task)
        try:
            self.apply_async(entry, producer=producer, advance=False)
        except Exception as exc:
            log.error("could not send %s: %s", entry.name, exc)
            self._unclaim(entry, slot)
            return
        self._note(entry, slot)

    def _claim(self, entry: ScheduleEntry) -> int | bool:
        """The slot number claimed for an interval entry, True for another schedule (not
        slotted), False when the slot is taken."""
        if not isinstance(entry.schedule, interval_schedule):
            return True
        interval_s = max(entry.schedule.seconds, 0.001)
        slot = math.floor(self._now_s() / interval_s)
        claimed = self._redis.set(
            self._keys.beat_slot(entry.name, slot),
            self.lock.token,
            nx=True,
            px=max(1, int(interval_s * 2000)),
        )
        return slot if claimed else False

    def _unclaim(self, entry: ScheduleEntry, slot: int | bool) -> None:
        # A send that failed gives its slot back (token checked), so another beat may send it.
        if slot is True or slot is False:
            return
        try:
            self._script(keys=[self._keys.beat_slot(entry.name, slot)], args=[self.lock.token, 0])
        except redis.RedisError as exc:
            log.warning("could not give back the slot of %s: %s", entry.name, exc)

    def _note(self, entry: ScheduleEntry, slot: int | bool) -> None:
        try:
            self._redis.xadd(
                self._keys.beat_sends(),
                {"entry": entry.name, "slot": str(slot), "owner": self.lock.token},
                maxlen=SENDS_KEPT,
                approximate=True,
            )
        except redis.RedisError as exc:
            # The task went out; only the note of it is missing.
            log.warning("could not note the send of %s: %s", entry.name, exc)

    def _now_s(self) -> float:
        """Redis's clock: every beat numbers slots alike, whatever its host's clock skew."""
        reply: Any = self._redis.time()
        if isinstance(reply, dict):  # Redis Cluster: one reply per node
            reply = next(iter(reply.values()))
        seconds, micros = reply
        return float(seconds) + float(micros) / 1e6

    def close(self) -> None:
        """On shutdown: give up the lock (only ours: the token is checked), so a standby takes
        over at its next tick instead of after the TTL."""
        if self.leading:
            try:
                self.lock.release()
                log.warning("beat %s released the leader lock", self.lock.token)
            except redis.RedisError as exc:
                log.warning("could not release the leader lock (it expires): %s", exc)
            self.leading = False
        super().close()


def sends(client: redis.Redis, settings: Settings) -> list[dict[str, str]]:
    """Beat's recent sends, oldest first: entry, slot, owner (the capped stream)."""
    entries: Any = client.xrange(Keys.of(settings).beat_sends())
    return [{str(k): str(v) for k, v in fields.items()} for _id, fields in entries]
