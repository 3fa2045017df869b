"""Fault: Redis (AOF, appendfsync everysec) is killed with SIGKILL and restarted under load."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from config.settings import Settings
from core.client import MemoryClient, redis_from_url
from tests.chaos.load import Appenders, wait_until_durable
from tests.conftest import assert_commit_order, assert_exactly_once
from tests.helpers.private_redis import PrivateRedis
from worker import processes

FSYNC_WINDOW_S = 1.0  # appendfsync everysec


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


def test_redis_restart_loses_nothing_older_than_the_fsync_window(
    private_redis: PrivateRedis,
    make_settings: Callable[..., Settings],
    pg_database: str,
    spawn: Callable[..., object],
) -> None:
    """Acked appends older than 1 s survive a kill -9; worker and beat reconnect or are
    restarted by their supervisors."""
    settings = make_settings(
        redis_url=private_redis.url(0),
        broker_url=private_redis.url(1),
        drain_lease_ms=1000,
        worker_stall_intervals=6,
        worker_check_interval_s=1.0,
    )
    client = MemoryClient(redis=redis_from_url(settings.redis_url), settings=settings)
    # Supervised, as deployed: a plain worker sometimes dies on this restart (kombu's
    # "'NoneType' object has no attribute 'hostname'"), and nothing would drain.
    spawn(
        processes.supervised_worker_command(["persist"], concurrency=2, loglevel="INFO"),
        settings=settings,
        name="worker",
    )
    spawn(processes.supervised_beat_command(loglevel="INFO"), settings=settings, name="beat")

    with Appenders(client) as before:
        time.sleep(4)
    # Nothing is appended in the last window before the crash, so every acknowledged append
    # is older than the fsync window: the promise under test.
    time.sleep(FSYNC_WINDOW_S * 2)
    private_redis.kill()
    time.sleep(1)
    private_redis.start()  # replays the AOF

    with Appenders(client) as after:
        time.sleep(4)
    assert before.count() > 1000 and after.count() > 1000
    # Only the worker drains here: a zero backlog with every "after" row stored proves the
    # Celery worker (or its replacement) and beat consume again.
    assert wait_until_durable(client, timeout_s=120) == 0
    written = before.acknowledged | after.acknowledged
    assert_exactly_once(pg_database, written)
    assert assert_commit_order(pg_database)
    print(f"\nredis kill -9 + restart: written={len(written)} lost=0 duplicated=0")
