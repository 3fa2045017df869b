"""``memscribe health``: do Redis, the broker and the store answer, and is the WAL keeping up?

Healthy when all three answer and the WAL's backlog (pending + undelivered over every shard) is
under ``MEMSCRIBE_HEALTH_MAX_LAG``; when ``MEMSCRIBE_HEALTH_MAX_BACKUP_AGE_S`` is above 0, also
when the newest backup is younger than that. The beat owner and the last flush are reported,
never judged: a standby beat or a quiet minute is not a failure.

Every probe has a short timeout and never raises: a health check that hangs or crashes is
itself the outage it should report.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

import redis
from sqlalchemy import text

from config.settings import Settings
from core.log.status import shard_status
from core.observability.collector import last_backup_time_s
from core.store.connections import redis_from_url
from core.store.db import make_engine
from core.store.keys import Keys

log = logging.getLogger(__name__)
PROBE_TIMEOUT_S = 3.0


@dataclass
class Health:
    redis: bool
    broker: bool
    store: bool
    wal_lag: int | None
    wal_lag_bound: int
    beat_owner: str | None
    last_flush_age_s: float | None
    last_backup_age_s: float | None
    ok: bool = False
    reasons: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_health(settings: Settings, *, flush_marker_key: str) -> Health:
    """Probe every dependency once. ``flush_marker_key`` is the progress key each completed
    ``persist.flush`` sets with a TTL of the stall window (worker/progress.py): its remaining
    TTL tells how long ago the last flush was."""
    keys = Keys.of(settings)
    reasons: list[str] = []
    client = redis_from_url(
        settings.redis_url,
        cluster=settings.redis_cluster,
        socket_timeout=PROBE_TIMEOUT_S,
        socket_connect_timeout=PROBE_TIMEOUT_S,
    )
    wal_lag = beat_owner = last_flush_age_s = last_backup_age_s = None
    try:
        client.ping()
        redis_ok = True
        wal_lag = sum(status.backlog for status in shard_status(client, keys))
        owner = client.get(keys.beat_leader())
        beat_owner = None if owner is None else str(owner)
        left_ms = int(client.pttl(flush_marker_key))
        if left_ms >= 0:
            last_flush_age_s = round(max(0.0, settings.worker_stall_after_s - left_ms / 1000), 3)
        completed = last_backup_time_s(client, keys)
        if completed is not None:
            last_backup_age_s = round(max(0.0, time.time() - completed), 3)
    except redis.RedisError as exc:
        redis_ok = False
        reasons.append(f"redis: {exc.__class__.__name__}: {exc}")
    finally:
        client.close()
    broker_ok = _broker_answers(settings.broker_url, reasons)
    store_ok = _store_answers(settings.database_url, reasons)
    bound = settings.health_max_lag
    if wal_lag is not None and wal_lag >= bound:
        reasons.append(f"wal lag {wal_lag} is not under its bound {bound}")
    max_age_s = settings.health_max_backup_age_s
    if max_age_s > 0 and redis_ok:
        if last_backup_age_s is None:
            reasons.append("no backup has completed yet")
        elif last_backup_age_s > max_age_s:
            reasons.append(f"newest backup is {last_backup_age_s:.0f}s old (bound {max_age_s}s)")
    return Health(
        redis=redis_ok,
        broker=broker_ok,
        store=store_ok,
        wal_lag=wal_lag,
        wal_lag_bound=bound,
        beat_owner=beat_owner,
        last_flush_age_s=last_flush_age_s,
        last_backup_age_s=last_backup_age_s,
        ok=not reasons,
        reasons=reasons,
    )


def _broker_answers(url: str, reasons: list[str]) -> bool:
    scheme = urlsplit(url).scheme
    try:
        if scheme in ("redis", "rediss"):
            client = redis_from_url(
                url, socket_timeout=PROBE_TIMEOUT_S, socket_connect_timeout=PROBE_TIMEOUT_S
            )
            try:
                return bool(client.ping())
            finally:
                client.close()
        # RabbitMQ (or any other kombu transport): one connection, no retries.
        from kombu import Connection  # type: ignore[attr-defined]

        with Connection(url, connect_timeout=PROBE_TIMEOUT_S) as connection:  # type: ignore[no-untyped-call]
            connection.ensure_connection(max_retries=1, timeout=PROBE_TIMEOUT_S)
        return True
    except Exception as exc:  # any failure means "does not answer"; say which
        reasons.append(f"broker: {exc.__class__.__name__}: {exc}")
        return False


def _store_answers(url: str, reasons: list[str]) -> bool:
    connect_args: dict[str, Any] = {}
    if url.startswith("postgresql"):
        connect_args["connect_timeout"] = int(PROBE_TIMEOUT_S)
    engine = make_engine(url, connect_args=connect_args)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        return True
    except Exception as exc:  # the driver's errors vary; any of them means "down"
        reasons.append(f"store: {exc.__class__.__name__}")
        return False
    finally:
        engine.dispose()
