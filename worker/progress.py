"""Progress markers: proof that the pipeline moves, cheap enough to write on every tick.

A Celery worker can stay alive yet stop consuming after its broker restarts (kombu's Redis
transport has a long history of such reconnect bugs, e.g. celery/kombu#582, celery/celery#8030),
and then nothing drains until someone notices. So each completed ``persist.flush`` sets one key
with a TTL of the stall window, and beat sets another each time it sends a flush tick. The
supervisor (``worker.supervisor``) only asks whether the key still exists: a missing flush key
while the write-ahead log has a backlog means the worker is stuck. TTLs instead of timestamps
keep the check free of clock skew between hosts.

Cost when idle: one SET per flush (about one a second), one SET per beat tick, one EXISTS per
supervisor check (every ``worker_check_interval_s``).
"""

from __future__ import annotations

import logging
import os
import socket
from enum import Enum

import redis

from config.settings import Settings
from core.log.status import shard_status
from core.store.keys import Keys

log = logging.getLogger(__name__)


class Marker(Enum):
    FLUSH = "flush"  # a persist.flush completed
    BEAT = "beat"  # beat sent a persist.flush tick


def marker_key(settings: Settings, marker: Marker) -> str:
    # Not per shard and never touched by a script, so no hash tag is needed.
    return f"{settings.key_prefix}:progress:{marker.value}"


def record(client: redis.Redis, settings: Settings, marker: Marker) -> None:
    """Note that ``marker`` happened now; forgotten after the stall window."""
    who = f"{socket.gethostname()}:{os.getpid()}"
    ttl_ms = int(settings.worker_stall_after_s * 1000)
    try:
        client.set(marker_key(settings, marker), who, px=ttl_ms)
    except redis.RedisError as exc:
        # Never fail the flush over its progress note: the next one writes it again.
        log.warning("could not record %s progress: %s", marker.value, exc)


def recent(client: redis.Redis, settings: Settings, marker: Marker) -> bool:
    """Whether ``marker`` happened within the stall window (raises redis.RedisError)."""
    return bool(client.exists(marker_key(settings, marker)))


def backlog(client: redis.Redis, settings: Settings) -> int:
    """Entries waiting in the write-ahead log (one pipelined round trip over every shard)."""
    keys = Keys.of(settings)
    return sum(status.backlog for status in shard_status(client, keys))
