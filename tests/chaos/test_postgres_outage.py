"""Fault: PostgreSQL refuses connections for 20 s while appends go on."""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy.engine import make_url

from config.settings import Settings
from core.client import MemoryClient
from tests.chaos.load import Appenders, wait_until_durable
from tests.conftest import assert_exactly_once
from tests.helpers.tcp_proxy import TcpProxy
from worker import processes

OUTAGE_S = 20


@pytest.fixture
def proxy(pg_database: str) -> Iterator[TcpProxy]:
    url = make_url(pg_database)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    yield proxy
    proxy.close()


def _attempts(times: list[float], *, gap_s: float = 0.05) -> list[float]:
    """Connection attempts, counting a burst of connects within ``gap_s`` as one attempt."""
    grouped: list[float] = []
    for when in times:
        if not grouped or when - grouped[-1] > gap_s:
            grouped.append(when)
    return grouped


def test_outage_keeps_appends_working_and_drains_after(
    redis_client: object,
    make_settings: Callable[..., Settings],
    proxy: TcpProxy,
    pg_database: str,
    spawn: Callable[..., object],
) -> None:
    """Appends go on; the drainer backs off exponentially; the backlog drains after recovery."""
    through_proxy = make_url(pg_database).set(port=proxy.port).render_as_string(hide_password=False)
    settings = make_settings(
        database_url=through_proxy,
        store_backoff_base_ms=200,
        store_backoff_cap_s=5,
        flush_interval_s=0.5,
    )
    client = MemoryClient(redis=redis_client, settings=settings)  # type: ignore[arg-type]
    spawn(
        processes.worker_command(["persist"], concurrency=2, loglevel="WARNING"),
        settings=settings,
        name="worker",
    )
    spawn(processes.beat_command(loglevel="WARNING"), settings=settings, name="beat")

    with Appenders(client) as load:
        time.sleep(3)
        before = load.count()
        cut_at = time.monotonic()
        proxy.cut()
        time.sleep(OUTAGE_S)
        proxy.restore()
        restored_at = time.monotonic()
        during = load.count() - before
        time.sleep(2)
    assert wait_until_durable(client, timeout_s=120) == 0

    # Appends never noticed: they kept being acknowledged, none failed.
    assert during > 1000 and load.failed == 0
    calm = [took for when, took in load.latencies_s if when < cut_at]
    outage = [took for when, took in load.latencies_s if cut_at <= when < restored_at]
    print(
        f"\nappend p50 before {statistics.median(calm) * 1000:.3f} ms, "
        f"during the outage {statistics.median(outage) * 1000:.3f} ms"
    )

    # The drainers probed the store at growing intervals instead of spinning.
    tries = _attempts([t for t in proxy.refused_at if t < restored_at])
    gaps = [later - earlier for earlier, later in itertools.pairwise(tries)]
    print(f"probes during the outage: {len(tries)}, gaps {[round(g, 2) for g in gaps]}")
    # Spinning would be hundreds of probes (two processes polling every 50 ms); a backoff that
    # doubles from 0.2 s to a 5 s cap makes about ten. The waits grew from the first one
    # towards the cap (how fast depends on how many processes failed at once: each failure
    # doubles the shared wait).
    assert 3 <= len(tries) <= 15
    assert max(gaps) >= 1.5 and gaps[0] < max(gaps) / 2
    assert statistics.mean(gaps[len(gaps) // 2 :]) > statistics.mean(gaps[: len(gaps) // 2])

    assert_exactly_once(pg_database, load.acknowledged)
    print(f"postgres outage {OUTAGE_S}s: written={len(load.acknowledged)} lost=0 duplicated=0")
