"""While the durable store is down the WAL keeps everything and drainers back off."""

from __future__ import annotations

import socket

from config.settings import Settings
from core.client import MemoryClient
from core.log.drainer import Drainer
from core.store.db import make_engine
from tests.conftest import assert_exactly_once


def _dead_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_outage_backs_off_exponentially_then_recovers(
    client: MemoryClient, make_settings: object, database_url: str
) -> None:
    """Refused connections: nothing is taken from the WAL, waits grow, drain resumes after."""
    settings: Settings = make_settings(store_backoff_base_ms=20, store_backoff_cap_s=5)  # type: ignore[operator]
    appended = {}
    for i in range(300):
        result = client.append(f"s-{i % 5}", "user", f"m{i}")
        appended[result.message_id] = ("default", f"s-{i % 5}", result.seq, f"m{i}")

    down = make_engine(f"postgresql+psycopg2://postgres@127.0.0.1:{_dead_port()}/x")
    drainer = Drainer(redis=client.redis, engine=down, settings=settings, consumer="d")
    delays = []
    for _ in range(6):
        report = drainer.drain_all()
        assert report.error and report.batches == 0
        delays.append(report.retry_in_s)
        skipped = drainer.drain_all()  # inside the backoff window: not even a probe
        assert (skipped.error, skipped.batches) == (None, 0) and skipped.retry_in_s > 0
        client.redis.hset(drainer.backoff.key, "next_ms", 0)  # fast-forward the clock
    # Equal jitter: the n-th wait lies in [c/2, c] for c = base * 2**(n-1), so waits never shrink.
    assert delays == sorted(delays)
    assert delays[-1] > 8 * delays[0]
    # The probe failed before any entry was read: nothing pending, no delivery counted.
    assert all(status.pending == 0 for status in drainer.status())
    assert drainer.backoff.state() is not None and drainer.backoff.state().failures == 6  # type: ignore[union-attr]

    drainer.engine = make_engine(database_url)  # the store is back
    client.redis.hset(drainer.backoff.key, "next_ms", 0)
    assert drainer.flush(timeout_s=30) == 0
    assert drainer.backoff.state() is None
    assert_exactly_once(database_url, appended)
