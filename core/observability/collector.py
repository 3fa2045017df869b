"""What /metrics reads live from Redis at each scrape: the WAL, dead letters, the store's backoff.

These are state, not events: read where they are kept, they are right whichever processes run,
and no worker has to be up for the backlog to be seen growing. One pipelined round trip for the
shards (``shard_status``, the same reading as ``memscribe status``), a few commands besides.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime

import redis
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from config.settings import Settings
from core.log import deadletters
from core.log.backoff import Backoff
from core.log.status import shard_status
from core.store.keys import Keys

log = logging.getLogger(__name__)

# name -> help; every gauge this collector can yield.
LIVE_GAUGES = {
    "memscribe_up": "1 when Redis answered this scrape",
    "memscribe_wal_length": "Entries in the shard's WAL stream (XLEN)",
    "memscribe_wal_backlog": "Entries not yet durable: pending + undelivered",
    "memscribe_wal_pending": "Entries delivered to a drainer, not yet acknowledged (XPENDING)",
    "memscribe_wal_consumer_lag": "Entries not yet delivered to the consumer group (XINFO GROUPS "
    "lag)",
    "memscribe_wal_oldest_pending_age_seconds": "Age of the shard's oldest pending entry",
    "memscribe_dead_letters": "Dead letters by kind (wal: entries, task: tasks)",
    "memscribe_store_backoff_active": "1 while the durable store fails and drainers back off",
    "memscribe_store_backoff_failures": "Consecutive failures of the durable store",
    "memscribe_store_backoff_retry_in_seconds": "Seconds until the next attempt on the store",
    "memscribe_backup_last_success_timestamp_seconds": "Unix time the newest backup completed",
    "memscribe_beat_leader_present": "1 when a beat holds the scheduler lock",
}


def _gauge(name: str, labels: tuple[str, ...] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, LIVE_GAUGES[name], labels=list(labels))


class RedisCollector(Collector):
    """A prometheus-client collector over memscribe's Redis state."""

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self._redis = client
        self._settings = settings
        self._keys = Keys.of(settings)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = _gauge("memscribe_up")
        try:
            families = list(self._read())
        except redis.RedisError as exc:
            # Say so in the series (memscribe_up 0) rather than fail the whole scrape: the
            # workers' counters are still worth having.
            log.warning("metrics: Redis did not answer: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _read(self) -> Iterator[GaugeMetricFamily]:
        shards = shard_status(self._redis, self._keys)
        length = _gauge("memscribe_wal_length", ("shard",))
        backlog = _gauge("memscribe_wal_backlog", ("shard",))
        pending = _gauge("memscribe_wal_pending", ("shard",))
        lag = _gauge("memscribe_wal_consumer_lag", ("shard",))
        oldest = _gauge("memscribe_wal_oldest_pending_age_seconds", ("shard",))
        for status in shards:
            shard = [str(status.shard)]
            length.add_metric(shard, status.length)
            backlog.add_metric(shard, status.backlog)
            pending.add_metric(shard, status.pending)
            lag.add_metric(shard, status.undelivered)
            oldest.add_metric(shard, status.oldest_pending_age_s or 0.0)
        yield from (length, backlog, pending, lag, oldest)

        dead = _gauge("memscribe_dead_letters", ("kind",))
        for kind, count in sorted(deadletters.counts(self._redis, self._keys).items()):
            dead.add_metric([kind], count)
        yield dead

        state = Backoff(
            self._redis,
            self._keys.backoff("store"),
            base_ms=self._settings.store_backoff_base_ms,
            cap_s=self._settings.store_backoff_cap_s,
        ).state()
        for name, value in (
            ("memscribe_store_backoff_active", 0 if state is None else 1),
            ("memscribe_store_backoff_failures", 0 if state is None else state.failures),
            (
                "memscribe_store_backoff_retry_in_seconds",
                0.0 if state is None else state.retry_in_s,
            ),
        ):
            gauge = _gauge(name)
            gauge.add_metric([], value)
            yield gauge

        completed = last_backup_time_s(self._redis, self._keys)
        if completed is not None:
            gauge = _gauge("memscribe_backup_last_success_timestamp_seconds")
            gauge.add_metric([], completed)
            yield gauge
        leader = _gauge("memscribe_beat_leader_present")
        leader.add_metric([], 1 if self._redis.exists(self._keys.beat_leader()) else 0)
        yield leader


def last_backup_time_s(client: redis.Redis, keys: Keys) -> float | None:
    """Unix time of the newest completed backup (core/backups records it), or None."""
    completed = client.hget(keys.backup_last(), "completed_at")
    if not completed:
        return None
    text = completed.decode() if isinstance(completed, bytes) else str(completed)
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None
